//! An anomaly past the exact counts: the filters, per-process fairness, and
//! the event written to the ring buffer.
//!
//! `emit` is a global function (its own BTF `FUNC`, linkage global): the
//! verifier checks it once per program, on its own, instead of once for every
//! path that reaches it, which keeps each program far below the verifier's
//! limits (docs/kernels.md has the figures). Its arguments can only be
//! scalars, so the open itself is handed over in the per-CPU `PENDING` slot.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_user,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_ns,
            bpf_probe_read_kernel as probe_read_kernel_raw,
        },
    },
};
use exporter_common::{
    Config, Counters, EventBuffer, Inflight, KernelOffsets, Loss, Stream, CGROUP_FILTER_IGNORE,
    CGROUP_FILTER_MAX_DEPTH, CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH, CONFIG_TRACKED_ONLY, DIR_MAX, DIR_NOT_ATTEMPTED,
    DIR_READ_FAILED, DIR_RESOLVED, DIR_TRUNCATED, EVENT_HEADER_SIZE, EVENT_PATH_TRUNCATED, EVENT_PATH_UNREADABLE,
    EUID_UNKNOWN, FILTER_ANY, INFLIGHT_PATH_IN_KERNEL, PATH_MAX, TaskOffsets, WAKEUP_MIN_INTERVAL_NS,
};

use crate::{
    counters::{count_loss, count_stream, counters},
    dir_walk::{badfd_dir_walk, read_u32, read_u64},
    fairness::{self, Source},
    kernel_path,
    maps::{frozen, CGROUP_ANCESTORS, CGROUP_FILTER, CONFIG, DIR_SCRATCH, EVENTS, LAST_WAKEUP, PENDING, SCRATCH, TRACKED},
};

/// The path of the open being streamed, if it was already read into
/// `SCRATCH.path` (by `found_later`), and its basename hash.
#[derive(Clone, Copy)]
pub struct PathRead {
    /// What reading it returned (`kernel_path::read_path`); 0: not read.
    pub read: i64,
    /// `basename_hash` of the path; 0: none.
    pub name_hash: u32,
}

impl PathRead {
    pub const NONE: PathRead = PathRead { read: 0, name_hash: 0 };
}

/// The filters, then the event (`badfd_emit`, which applies fairness).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn stream_anomaly(
    c: &mut Counters,
    config: &Config,
    entry: &Inflight,
    pid_tgid: u64,
    ret: i64,
    latency_ns: u64,
    event_flags: u8,
    path: PathRead,
) {
    let pid = (pid_tgid >> 32) as u32;
    let uid = bpf_get_current_uid_gid() as u32;
    let excluded = (config.filter_pid != FILTER_ANY && config.filter_pid != pid)
        || (config.filter_uid != FILTER_ANY && config.filter_uid != uid)
        || (config.flags & CONFIG_TRACKED_ONLY != 0 && unsafe { TRACKED.get(pid) }.is_none())
        || (config.filter_comm[0] != 0 && !comm_is(&config.filter_comm))
        || cgroup_excluded(config.cgroup_filter);
    if excluded {
        count_stream(c, Stream::Filtered);
        return;
    }
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    emit_pending(entry, ret, latency_ns, event_flags, waiting, path);
}

/// Hands `entry` over in `PENDING` and emits it.
#[inline(always)]
pub fn emit_pending(entry: &Inflight, ret: i64, latency_ns: u64, event_flags: u8, waiting: u64, path: PathRead) {
    let Some(pending) = PENDING.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot, see `counters`.
    unsafe {
        (*pending).entry = *entry;
        (*pending).path_read = path.read;
    }
    badfd_emit(ret, latency_ns, event_flags as u64, waiting, path.name_hash as u64);
}

/// Whether the cgroup filter keeps this task out: in `WATCH` mode unless its
/// cgroup or an ancestor is listed, in `IGNORE` mode if one is.
#[inline(always)]
fn cgroup_excluded(mode: u32) -> bool {
    if mode == CGROUP_FILTER_OFF {
        return false;
    }
    let mut listed = unsafe { CGROUP_FILTER.get(&bpf_get_current_cgroup_id()) }.is_some();
    // Ancestors from the root down; 0 past the task's own level.
    let ancestors = frozen(&CGROUP_ANCESTORS) != 0;
    let mut level = 0;
    while ancestors && !listed && level < CGROUP_FILTER_MAX_DEPTH {
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        listed = unsafe { CGROUP_FILTER.get(&id) }.is_some();
        level += 1;
    }
    match mode {
        CGROUP_FILTER_WATCH => !listed,
        CGROUP_FILTER_IGNORE => listed,
        _ => false,
    }
}

/// Whether the current task's comm is exactly `want` (both NUL-padded), as two
/// 8-byte compares rather than a byte loop.
#[inline(always)]
fn comm_is(want: &[u8; 16]) -> bool {
    let have = bpf_get_current_comm().unwrap_or([0; 16]);
    // SAFETY: both are 16 plain bytes; unaligned reads.
    let (h, w) = unsafe {
        (core::ptr::read_unaligned(have.as_ptr().cast::<[u64; 2]>()), core::ptr::read_unaligned(want.as_ptr().cast::<[u64; 2]>()))
    };
    h[0] == w[0] && h[1] == w[1]
}

/// The inode number of the mount namespace of `task` (the current task), or 0.
#[inline(always)]
fn mnt_ns_inum(o: &KernelOffsets, task: u64) -> u32 {
    if o.mnt_ns_valid == 0 {
        return 0;
    }
    let Some(nsproxy) = read_u64(task + o.task_nsproxy as u64).filter(|&p| p != 0) else { return 0 };
    let Some(mnt_ns) = read_u64(nsproxy + o.nsproxy_mnt_ns as u64).filter(|&p| p != 0) else { return 0 };
    read_u32(mnt_ns + o.mnt_ns_inum as u64).unwrap_or(0)
}

/// The process id of the parent of `task` (`real_parent->tgid`), or 0.
#[inline(always)]
fn parent_tgid(o: &TaskOffsets, task: u64) -> u32 {
    if o.parent_valid == 0 {
        return 0;
    }
    let Some(parent) = read_u64(task + o.task_real_parent as u64).filter(|&p| p != 0) else { return 0 };
    read_u32(parent + o.task_tgid as u64).unwrap_or(0)
}

/// The effective uid of `task` (`task->cred->euid`; kuids are the initial
/// user namespace's ids, as `bpf_get_current_uid_gid` reports), or
/// `EUID_UNKNOWN`.
#[inline(always)]
fn current_euid(o: &TaskOffsets, task: u64) -> u32 {
    if o.cred_valid == 0 {
        return EUID_UNKNOWN;
    }
    let Some(cred) = read_u64(task + o.task_cred as u64).filter(|&p| p != 0) else { return EUID_UNKNOWN };
    read_u32(cred + o.cred_euid as u64).unwrap_or(EUID_UNKNOWN)
}

/// The event of the open in `PENDING` (its path read now, from the pointer
/// saved at entry, unless already read, and the directory of a relative
/// path), written to the ring buffer if its sources have credit (`fairness`);
/// `waiting` is the bytes the ring buffer held before it. Returns the bytes
/// written, 0 when none were.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn badfd_emit(ret: i64, latency_ns: u64, event_flags: u64, waiting: u64, name_hash: u64) -> i64 {
    let (Some(c), Some(config), Some(pending), Some(buf)) =
        (counters(), CONFIG.get(0), PENDING.get(0), SCRATCH.get_ptr_mut(0))
    else {
        return 1;
    };
    let entry = &pending.entry;
    // SAFETY: per-CPU scratch, see `counters`.
    let buf: &mut EventBuffer = unsafe { &mut *buf };
    let mut event_flags = event_flags as u8;
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let source = Source { pid: (pid_tgid >> 32) as u32, uid: uid_gid as u32, cgroup: unsafe { bpf_get_current_cgroup_id() } };
    let now = unsafe { bpf_ktime_get_ns() };
    if !fairness::may_stream(config, source, now, waiting) {
        count_loss(c, Loss::SourceThrottled);
        return 0;
    }

    // The path, unless found_later already read it into the scratch event.
    let src = entry.path_ptr as *const u8;
    let in_kernel = entry.flags & INFLIGHT_PATH_IN_KERNEL != 0;
    let read = if pending.path_read != 0 {
        pending.path_read
    } else {
        kernel_path::read_path(buf.path.as_mut_ptr(), entry.path_ptr, in_kernel)
    };
    let mut path_len: usize = 0;
    if read <= 0 {
        event_flags |= EVENT_PATH_UNREADABLE;
        count_loss(c, Loss::PathReadFailed);
    } else {
        // `read` counts the NUL. A full buffer is a truncation only if the
        // string goes on past it (never for the kernel's own copy, which is
        // at most PATH_MAX bytes with its NUL).
        path_len = (read as usize - 1) & (PATH_MAX - 1);
        if read as usize == PATH_MAX && !in_kernel {
            let next: u8 = unsafe { bpf_probe_read_user(src.wrapping_add(PATH_MAX - 1)) }.unwrap_or(0);
            if next != 0 {
                event_flags |= EVENT_PATH_TRUNCATED;
                count_loss(c, Loss::PathTruncated);
            }
        }
    }

    // A relative path: the directory it is relative to, found now, while the
    // process and its cwd or dirfd still exist (userspace reads events later).
    let mut dir_len: usize = 0;
    let mut dir_status = DIR_NOT_ATTEMPTED;
    if config.offsets.valid != 0 && path_len > 0 && buf.path[0] != b'/' {
        if let Some(dir_buf) = DIR_SCRATCH.get_ptr_mut(0) {
            // SAFETY: per-CPU scratch, see `counters`.
            let dir_buf = unsafe { &mut *dir_buf };
            let walked = badfd_dir_walk(entry.dirfd as i64) as u64;
            let (status, start) = ((walked & 0xff) as u8, (walked >> 8) as usize);
            dir_status = status;
            match status {
                DIR_RESOLVED => {
                    let start = start & (DIR_MAX - 1);
                    let len = (DIR_MAX - start) & (DIR_MAX - 1);
                    let dst = buf.path.as_mut_ptr().wrapping_add(path_len & (PATH_MAX - 1));
                    let src = dir_buf.bytes.as_ptr().wrapping_add(start);
                    // SAFETY: dst + len stays inside path + dir of the scratch event.
                    if unsafe { probe_read_kernel_raw(dst.cast(), len as u32, src.cast()) } == 0 {
                        dir_len = len;
                    } else {
                        dir_status = DIR_READ_FAILED;
                        count_loss(c, Loss::DirReadFailed);
                    }
                }
                DIR_TRUNCATED => count_loss(c, Loss::DirTruncated),
                DIR_READ_FAILED => count_loss(c, Loss::DirReadFailed),
                _ => {}
            }
        }
    }

    let h = &mut buf.header;
    h.start_ns = entry.start_ns;
    h.latency_ns = latency_ns;
    h.cgroup_id = source.cgroup;
    h.ret = ret;
    h.open_flags = entry.open_flags;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.mode = entry.mode;
    h.dirfd = entry.dirfd;
    h.path_len = path_len as u16;
    h.syscall = entry.syscall;
    h.event_flags = event_flags;
    h.name_hash = name_hash as u32;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.dir_len = dir_len as u16;
    h.dir_status = dir_status;
    h._reserved2 = [0; 5];
    let task = unsafe { bpf_get_current_task() };
    h.mnt_ns = mnt_ns_inum(&config.offsets, task);
    h.euid = current_euid(&config.task, task);
    h.ppid = parent_tgid(&config.task, task);
    h._reserved4 = 0;

    // Wake the reader only when a batch is waiting (it also polls on a timer),
    // and from each CPU at most once per WAKEUP_MIN_INTERVAL_NS.
    let wake = if waiting >= config.wakeup_bytes as u64 && wakeup_due() { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };

    let len = EVENT_HEADER_SIZE + (path_len & (PATH_MAX - 1)) + (dir_len & (DIR_MAX - 1));
    // SAFETY: `len` <= size_of::<EventBuffer>() since path_len < PATH_MAX and dir_len < DIR_MAX.
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const EventBuffer).cast::<u8>(), len) };
    match EVENTS.output::<[u8]>(bytes, wake as u64) {
        Ok(()) => {
            count_stream(c, Stream::Submitted);
            fairness::charge(config, source, now, waiting, len as u64);
            len as i64
        }
        Err(_) => {
            count_loss(c, Loss::RingbufFull);
            0
        }
    }
}

/// Whether this CPU may wake the reader now (and if so, records that it did).
#[inline(always)]
fn wakeup_due() -> bool {
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else { return true };
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, see `counters`.
    let last = unsafe { &mut *last };
    if now.wrapping_sub(*last) < WAKEUP_MIN_INTERVAL_NS {
        return false;
    }
    *last = now;
    true
}

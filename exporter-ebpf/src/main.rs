//! badfd's kernel side: time every open, count every open in per-CPU counters,
//! and stream only anomalies (failed or slow opens) to userspace.
//!
//! Two program pairs share one body: syscall tracepoints (open, openat, openat2,
//! creat) and fentry/fexit on `do_sys_openat2`, the function all four reach.
//! Userspace loads whichever the kernel allows.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_task,
            bpf_get_current_task_btf,
            bpf_ktime_get_ns, bpf_probe_read_kernel as probe_read_kernel_raw,
            bpf_probe_read_kernel_str as probe_read_kernel_str_raw,
            bpf_probe_read_user_str, bpf_task_pt_regs,
        },
    },
    macros::{fentry, fexit, map, tracepoint},
    EbpfContext,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use exporter_common::{
    Config, Counters, DirBuffer, EventBuffer, Inflight, KernelOffsets, Loss, Stream, Syscall,
    AT_FDCWD, CGROUP_FILTER_CAPACITY, CGROUP_FILTER_IGNORE, CGROUP_FILTER_MAX_DEPTH, CGROUP_FILTER_OFF,
    CGROUP_FILTER_WATCH, CONFIG_FAILURES_ONLY, WAKEUP_MIN_INTERVAL_NS, CONFIG_TRACKED_ONLY, DEFAULT_RINGBUF_BYTES, DIR_BAD_FD,
    DIR_MAX, DIR_MAX_COMPONENTS, DIR_NAME_MAX, DIR_NOT_ATTEMPTED, DIR_READ_FAILED, DIR_RESOLVED,
    DIR_TRUNCATED, DIR_UNREACHABLE, ERRNO_SLOTS, EVENT_FAILED, EVENT_UNTIMED, EVENT_HEADER_SIZE, EVENT_PATH_TRUNCATED,
    EVENT_PATH_UNREADABLE, EVENT_SLOW, FILTER_ANY, INFLIGHT_SLOTS, INFLIGHT_SLOT_MASK, PATH_MAX, RESULT_FAILED,
    RESULT_OK, SOURCES_CAPACITY, TRACKED_CAPACITY,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Opens in progress, one slot per `tid & INFLIGHT_SLOT_MASK` (see the contract
/// for why an array): a blocked open and its thread may move to another CPU, so
/// this cannot be per-CPU.
#[map]
static INFLIGHT: Array<Inflight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// Processes followed by `badfd trace -- command`: filled on fork from the command down.
#[map]
static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(TRACKED_CAPACITY, 0);

/// Cgroup ids (cgroup v2) watched or ignored with their subtrees, as
/// `Config::cgroup_filter` says.
#[map]
static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(CGROUP_FILTER_CAPACITY, 0);

/// Per-process fairness state: the theoretical arrival time (GCRA) of each
/// streaming process's next anomaly, in CLOCK_MONOTONIC ns. Touched only for
/// anomalies, never on the fast path.
#[map]
static SOURCES: LruHashMap<u32, u64> = LruHashMap::with_max_entries(SOURCES_CAPACITY, 0);

/// Set (to 1) by userspace at load where tracing programs may call
/// `bpf_get_current_ancestor_cgroup_id` (not on older kernels, 5.10 among
/// them). A frozen read-only global: the verifier sees its value and drops the
/// ancestor walk as dead code where it is 0, so the program loads everywhere
/// (the filter then matches a task's own cgroup only).
#[unsafe(no_mangle)]
static CGROUP_ANCESTORS: u8 = 0;

/// The ring buffer's size in bytes, set by userspace at load (frozen like
/// `CGROUP_ANCESTORS`: the verifier sees a constant, so the fairness check
/// costs no helper call to ask the map).
#[unsafe(no_mangle)]
static RINGBUF_BYTES: u32 = DEFAULT_RINGBUF_BYTES;

/// Per-CPU time (CLOCK_MONOTONIC ns) of the last reader wakeup this CPU asked
/// for; see `WAKEUP_MIN_INTERVAL_NS`.
#[map]
static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space an event is assembled in (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<EventBuffer> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space the directory of a relative path is assembled in, backwards.
#[map]
static DIR_SCRATCH: PerCpuArray<DirBuffer> = PerCpuArray::with_max_entries(1, 0);

// Offsets of the arguments in a syscall tracepoint record (after the 8-byte
// common header and the 8-byte syscall number slot).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const EXIT_RET: usize = 16;

#[inline(always)]
fn counters() -> Option<&'static mut Counters> {
    // SAFETY: the per-CPU slot is only touched by programs on this CPU, which
    // do not nest for syscall tracepoints or fentry/fexit.
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn bump(slot: Option<&mut u64>) {
    if let Some(v) = slot {
        *v += 1;
    }
}

#[inline(always)]
fn count_loss(counters: &mut Counters, loss: Loss) {
    bump(counters.losses.get_mut(loss as usize));
}

#[inline(always)]
fn count_stream(counters: &mut Counters, stream: Stream) {
    bump(counters.stream.get_mut(stream as usize));
}

#[inline(always)]
fn on_enter(syscall: Syscall, dirfd: i32, path_ptr: u64, open_flags: u64, mode: u32) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    let Some(c) = counters() else { return };
    // SAFETY: a valid array slot; a concurrent writer on another CPU can only
    // be a colliding thread, whose loss is counted either way.
    let slot = unsafe { &mut *slot };
    if slot.tid != 0 && slot.tid != tid {
        count_loss(c, Loss::InflightCollision);
    }
    count_stream(c, Stream::Entered);
    *slot = OpenArgs { syscall, dirfd, path_ptr, open_flags, mode }.into_inflight(unsafe { bpf_ktime_get_ns() }, tid);
}

/// Exact counts of every open, timed or not.
#[inline(always)]
fn count_result(c: &mut Counters, s: usize, ret: i64) {
    let failed = ret < 0;
    if let Some(opens) = c.opens.get_mut(s) {
        bump(opens.get_mut(if failed { RESULT_FAILED } else { RESULT_OK }));
    }
    if failed {
        let errno = (-ret) as u64;
        let slot = if errno < (ERRNO_SLOTS - 1) as u64 { errno as usize } else { ERRNO_SLOTS - 1 };
        if let Some(errnos) = c.errnos.get_mut(s) {
            bump(errnos.get_mut(slot));
        }
    }
}

#[inline(always)]
fn on_exit(syscall_hint: Syscall, ret: i64) {
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(c) = counters() else { return };

    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    // SAFETY: a valid array slot, copied before it is freed.
    let entry: Inflight = unsafe { core::ptr::read(slot) };
    let interrupted = exporter_common::is_restart_code(ret);
    if entry.tid != tid {
        if interrupted {
            count_stream(c, Stream::Interrupted);
            return;
        }
        count_result(c, syscall_hint as usize, ret);
        count_loss(c, Loss::ExitWithoutEnter);
        return;
    }
    // SAFETY: as above; frees the slot.
    unsafe { (*slot).tid = 0 };
    if interrupted {
        // Restarted (its restart enters again) or its task killed: no result.
        count_stream(c, Stream::Interrupted);
        return;
    }
    let syscall = Syscall::from_u8(entry.syscall).unwrap_or(syscall_hint);
    let s = syscall as usize;
    let failed = ret < 0;
    count_result(c, s, ret);

    let latency_ns = now.wrapping_sub(entry.start_ns);
    if let Some(hist) = c.latency.get_mut(s) {
        bump(hist.get_mut(exporter_common::latency_bucket(latency_ns)));
    }
    if let Some(sum) = c.latency_sum_ns.get_mut(s) {
        *sum += latency_ns;
    }

    let Some(config) = CONFIG.get(0) else { return };
    let slow = latency_ns >= config.slow_threshold_ns;
    if slow {
        bump(c.slow.get_mut(s));
    }
    if !failed && !slow {
        // The fast path: a fast successful open ends here.
        return;
    }
    if !failed && config.flags & CONFIG_FAILURES_ONLY != 0 {
        count_stream(c, Stream::SlowNotStreamed);
        return;
    }

    let mut event_flags = 0u8;
    if failed {
        event_flags |= EVENT_FAILED;
    }
    if slow {
        event_flags |= EVENT_SLOW;
    }
    stream_anomaly(c, config, &entry, pid_tgid, now, ret, latency_ns, event_flags);
}

/// The exit of an open with no entry program (`--no-timing`): counts it
/// exactly, and for a failure takes the arguments from the caller's saved
/// registers (still there at exit) and streams it. A successful open costs a
/// result count and nothing else; nothing is timed.
#[inline(always)]
fn on_exit_untimed(syscall: Syscall, ret: i64, args: impl FnOnce() -> OpenArgs) {
    let Some(c) = counters() else { return };
    if exporter_common::is_restart_code(ret) {
        count_stream(c, Stream::Interrupted);
        return;
    }
    count_result(c, syscall as usize, ret);
    if ret >= 0 {
        return;
    }
    let Some(config) = CONFIG.get(0) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_ns() };
    let entry = args().into_inflight(now, pid_tgid as u32);
    stream_anomaly(c, config, &entry, pid_tgid, now, ret, 0, EVENT_FAILED | EVENT_UNTIMED);
}

/// An anomaly past the exact counts: the filters, per-process fairness, then
/// the event.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn stream_anomaly(
    c: &mut Counters,
    config: &Config,
    entry: &Inflight,
    pid_tgid: u64,
    now: u64,
    ret: i64,
    latency_ns: u64,
    event_flags: u8,
) {
    let pid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    let uid = uid_gid as u32;
    let excluded = (config.filter_pid != FILTER_ANY && config.filter_pid != pid)
        || (config.filter_uid != FILTER_ANY && config.filter_uid != uid)
        || (config.flags & CONFIG_TRACKED_ONLY != 0 && unsafe { TRACKED.get(pid) }.is_none())
        || (config.filter_comm[0] != 0 && !comm_is(&config.filter_comm))
        || cgroup_excluded(config.cgroup_filter);
    if excluded {
        count_stream(c, Stream::Filtered);
        return;
    }
    let waiting = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    if !source_may_stream(config, pid, now, waiting) {
        count_loss(c, Loss::SourceThrottled);
        return;
    }
    emit(c, entry, config, waiting, pid, tid, uid, (uid_gid >> 32) as u32, ret, latency_ns, event_flags);
}

/// Per-process fairness: a noisy process must not fill the ring buffer and
/// starve the others' anomalies (GHSA-wv52-frfv-mfh4). While less than half the
/// ring buffer is used everything streams and nothing else is looked at (one
/// query of the buffer, which the wakeup decision needs anyway). Past half,
/// each process has a generic cell rate limit (one anomaly per
/// `source_interval_ns`, a burst of `source_burst_ns` of credit): a process
/// over its rate is throttled, so the other half stays for processes within
/// theirs. `waiting` is the bytes waiting in the ring buffer.
#[inline(always)]
fn source_may_stream(config: &Config, pid: u32, now: u64, waiting: u64) -> bool {
    let interval = config.source_interval_ns;
    // SAFETY: a plain u32; volatile so that the read is not folded at build time.
    let ring_bytes = unsafe { core::ptr::read_volatile(&RINGBUF_BYTES) } as u64;
    if interval == 0 || waiting < ring_bytes / 2 {
        return true;
    }
    let Some(tat) = SOURCES.get_ptr_mut(pid) else {
        // Not seen past half before (or forgotten by the LRU): a full burst.
        let _ = SOURCES.insert(pid, now + interval, 0);
        return true;
    };
    // SAFETY: a valid map value; a race between two threads of the process on
    // two CPUs only blurs the rate, never the counts.
    let tat = unsafe { &mut *tat };
    let next = if *tat > now { *tat } else { now };
    if next - now > config.source_burst_ns {
        return false;
    }
    *tat = next + interval;
    true
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
    // SAFETY: a plain byte; volatile so that the read is not folded at build time.
    let ancestors = unsafe { core::ptr::read_volatile(&CGROUP_ANCESTORS) } != 0;
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

/// The inode number of the current task's mount namespace, or 0.
#[inline(always)]
fn mnt_ns_inum(o: &KernelOffsets) -> u32 {
    if o.mnt_ns_valid == 0 {
        return 0;
    }
    let task = unsafe { bpf_get_current_task() };
    let Some(nsproxy) = read_u64(task + o.task_nsproxy as u64).filter(|&p| p != 0) else { return 0 };
    let Some(mnt_ns) = read_u64(nsproxy + o.nsproxy_mnt_ns as u64).filter(|&p| p != 0) else { return 0 };
    read_u32(mnt_ns + o.mnt_ns_inum as u64).unwrap_or(0)
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

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    c: &mut Counters,
    entry: &Inflight,
    config: &Config,
    waiting: u64,
    pid: u32,
    tid: u32,
    uid: u32,
    gid: u32,
    ret: i64,
    latency_ns: u64,
    mut event_flags: u8,
) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch, see `counters`.
    let buf = unsafe { &mut *buf };

    // The path is read only now, for anomalies, from the pointer saved at entry.
    let src = entry.path_ptr as *const u8;
    let read = unsafe {
        bpf_probe_read_user_str(buf.path.as_mut_ptr().cast(), PATH_MAX as u32, src.cast())
    };
    let mut path_len: usize = 0;
    if read <= 0 {
        event_flags |= EVENT_PATH_UNREADABLE;
        count_loss(c, Loss::PathReadFailed);
    } else {
        // `read` counts the NUL. A full buffer is a truncation only if the
        // string goes on past it.
        path_len = (read as usize - 1) & (PATH_MAX - 1);
        if read as usize == PATH_MAX {
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
            let (status, start) = kernel_dir(&config.offsets, entry.dirfd, dir_buf);
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
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.ret = ret;
    h.open_flags = entry.open_flags;
    h.pid = pid;
    h.tid = tid;
    h.uid = uid;
    h.gid = gid;
    h.mode = entry.mode;
    h.dirfd = entry.dirfd;
    h.path_len = path_len as u16;
    h.syscall = entry.syscall;
    h.event_flags = event_flags;
    h._reserved = 0;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.dir_len = dir_len as u16;
    h.dir_status = dir_status;
    h._reserved2 = [0; 5];
    h.mnt_ns = mnt_ns_inum(&config.offsets);
    h._reserved3 = 0;

    // Wake the reader only when a batch is waiting (it also polls on a timer),
    // and from each CPU at most once per WAKEUP_MIN_INTERVAL_NS.
    let wake = if waiting >= config.wakeup_bytes as u64 && wakeup_due() { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };

    let len = EVENT_HEADER_SIZE + (path_len & (PATH_MAX - 1)) + (dir_len & (DIR_MAX - 1));
    // SAFETY: `len` <= size_of::<EventBuffer>() since path_len < PATH_MAX and dir_len < DIR_MAX.
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const EventBuffer).cast::<u8>(), len) };
    match EVENTS.output::<[u8]>(bytes, wake as u64) {
        Ok(()) => count_stream(c, Stream::Submitted),
        Err(_) => count_loss(c, Loss::RingbufFull),
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

// ---------------------------------------------------------------------------
// The directory of a relative path, walked in the kernel: the cwd for AT_FDCWD,
// else the dirfd's file; dentries up to the mount's root, then across to the
// mount point in the parent mount, until the mount namespace's root mount.
// Struct offsets come from userspace (kernel BTF), in `Config::offsets`.
// ---------------------------------------------------------------------------

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}

#[inline(always)]
fn read_u32(addr: u64) -> Option<u32> {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.ok()
}

/// The `struct path` (address) the relative path is resolved against.
#[inline(always)]
fn base_path(o: &KernelOffsets, dirfd: i32) -> Result<u64, u8> {
    let task = unsafe { bpf_get_current_task() };
    if dirfd == AT_FDCWD {
        let fs = read_u64(task + o.task_fs as u64).ok_or(DIR_READ_FAILED)?;
        if fs == 0 {
            return Err(DIR_READ_FAILED);
        }
        return Ok(fs + o.fs_pwd as u64);
    }
    if dirfd < 0 {
        return Err(DIR_BAD_FD);
    }
    let files = read_u64(task + o.task_files as u64).ok_or(DIR_READ_FAILED)?;
    let fdt = read_u64(files + o.files_fdt as u64).ok_or(DIR_READ_FAILED)?;
    let max_fds = read_u32(fdt + o.fdtable_max_fds as u64).ok_or(DIR_READ_FAILED)?;
    if dirfd as u32 >= max_fds {
        return Err(DIR_BAD_FD);
    }
    let fd_array = read_u64(fdt + o.fdtable_fd as u64).ok_or(DIR_READ_FAILED)?;
    let file = read_u64(fd_array + 8 * dirfd as u64).ok_or(DIR_READ_FAILED)?;
    if file == 0 {
        return Err(DIR_BAD_FD);
    }
    Ok(file + o.file_f_path as u64)
}

/// Writes the directory into the end of `buf` and returns `(DIR_*, start)`:
/// for `DIR_RESOLVED` the directory is `buf.bytes[start..DIR_MAX]`.
#[inline(always)]
fn kernel_dir(o: &KernelOffsets, dirfd: i32, buf: &mut DirBuffer) -> (u8, usize) {
    let path = match base_path(o, dirfd) {
        Ok(p) => p,
        Err(status) => return (status, 0),
    };
    let (Some(mut mnt), Some(mut dentry)) =
        (read_u64(path + o.path_mnt as u64), read_u64(path + o.path_dentry as u64))
    else {
        return (DIR_READ_FAILED, 0);
    };
    // container_of(mnt, struct mount, mnt)
    let mut mount = mnt.wrapping_sub(o.mount_mnt as u64);
    let pos_slot: *mut u32 = &mut buf.pos;
    // SAFETY: a field of the per-CPU scratch value.
    unsafe { core::ptr::write_volatile(pos_slot, DIR_MAX as u32) };
    let mut reached_root = false;
    for _ in 0..DIR_MAX_COMPONENTS {
        let Some(mnt_root) = read_u64(mnt + o.vfsmount_root as u64) else {
            return (DIR_READ_FAILED, 0);
        };
        if dentry == mnt_root {
            let Some(parent) = read_u64(mount + o.mount_parent as u64) else {
                return (DIR_READ_FAILED, 0);
            };
            if parent == mount {
                // A mount that is its own parent: the root mount of a namespace,
                // or one lazily unmounted (no namespace any more).
                let Some(ns) = read_u64(mount + o.mount_ns as u64) else {
                    return (DIR_READ_FAILED, 0);
                };
                if ns == 0 {
                    return (DIR_UNREACHABLE, 0);
                }
                reached_root = true;
                break;
            }
            let Some(mountpoint) = read_u64(mount + o.mount_mountpoint as u64) else {
                return (DIR_READ_FAILED, 0);
            };
            dentry = mountpoint;
            mount = parent;
            mnt = parent + o.mount_mnt as u64;
            continue;
        }
        let Some(parent) = read_u64(dentry + o.dentry_parent as u64) else {
            return (DIR_READ_FAILED, 0);
        };
        if parent == dentry {
            // A filesystem root that is not its mount's root (a disconnected
            // dentry): no absolute path to give.
            return (DIR_UNREACHABLE, 0);
        }
        let name_at = dentry + o.dentry_name as u64;
        let (Some(len), Some(name)) = (read_u32(name_at + o.qstr_len as u64), read_u64(name_at + o.qstr_name as u64))
        else {
            return (DIR_READ_FAILED, 0);
        };
        let len = len as usize;
        if len > DIR_NAME_MAX {
            return (DIR_READ_FAILED, 0);
        }
        // SAFETY: as above.
        let pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize & (2 * DIR_MAX - 1);
        // Keep one byte before the directory so that its start stays below DIR_MAX.
        if pos < len + 2 {
            return (DIR_TRUNCATED, 0);
        }
        let at = (pos - len - 1) & (DIR_MAX - 1);
        if let Some(b) = buf.bytes.get_mut(at) {
            *b = b'/';
        }
        let dst = buf.bytes.as_mut_ptr().wrapping_add(at + 1);
        // A constant size (NAME_MAX + 1): the 6.12 verifier loses the bound of
        // a variable one ("unbounded memory access"). The name is NUL-terminated;
        // its NUL lands on the '/' that starts what is already written, restored
        // below.
        // SAFETY: at < DIR_MAX, so dst + DIR_NAME_MAX + 1 is inside `buf.bytes`.
        let read = unsafe { probe_read_kernel_str_raw(dst.cast(), (DIR_NAME_MAX + 1) as u32, name as *const _) };
        if read != (len + 1) as i64 {
            return (DIR_READ_FAILED, 0);
        }
        // Unconditionally, with the mask in the index: kernels up to 6.1 do not
        // bound an offset by a dominating comparison. For the first name `pos`
        // is DIR_MAX, the index 0, which is never part of the directory (its
        // start stays at 1 or more).
        if let Some(b) = buf.bytes.get_mut(pos & (DIR_MAX - 1)) {
            *b = b'/';
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(pos_slot, at as u32) };
        dentry = parent;
    }
    if !reached_root {
        return (DIR_TRUNCATED, 0);
    }
    // SAFETY: as above.
    let mut pos = unsafe { core::ptr::read_volatile(pos_slot) } as usize & (2 * DIR_MAX - 1);
    if pos >= DIR_MAX {
        // The root directory itself.
        pos = DIR_MAX - 1;
        buf.bytes[DIR_MAX - 1] = b'/';
    }
    (DIR_RESOLVED, pos)
}

// ---------------------------------------------------------------------------
// Attach mode 1: syscall tracepoints (every kernel with BPF; adds the syscall
// slow path to every syscall of every process while attached).
// ---------------------------------------------------------------------------

/// A field of the tracepoint record, read directly: the verifier allows loads
/// from a tracepoint's context, which saves a probe-read helper call per
/// argument (`TracePointContext::read_at` makes one).
#[inline(always)]
fn arg<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: every offset used is inside the syscall tracepoint record and
    // aligned for its type (8-byte slots).
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    on_enter(Syscall::Open, AT_FDCWD, arg(&ctx, ARG0), arg(&ctx, ARG1), arg::<u64>(&ctx, ARG2) as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    on_enter(
        Syscall::Openat,
        arg::<u64>(&ctx, ARG0) as i32,
        arg(&ctx, ARG1),
        arg(&ctx, ARG2),
        arg::<u64>(&ctx, ARG3) as u32,
    );
    0
}

/// `struct open_how` from include/uapi/linux/openat2.h.
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let how: u64 = arg(&ctx, ARG2);
    let how = unsafe { bpf_probe_read_user(how as *const OpenHow) }
        .unwrap_or(OpenHow { flags: 0, mode: 0, resolve: 0 });
    on_enter(Syscall::Openat2, arg::<u64>(&ctx, ARG0) as i32, arg(&ctx, ARG1), how.flags, how.mode as u32);
    0
}

/// creat(path, mode) == open(path, O_CREAT|O_WRONLY|O_TRUNC, mode)
const CREAT_FLAGS: u64 = 0o100 | 0o1 | 0o1000;

#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    on_enter(Syscall::Creat, AT_FDCWD, arg(&ctx, ARG0), CREAT_FLAGS, arg::<u64>(&ctx, ARG1) as u32);
    0
}

macro_rules! exit_tracepoint {
    ($fn_name:ident, $tp:literal, $syscall:expr) => {
        #[tracepoint(category = "syscalls", name = $tp)]
        pub fn $fn_name(ctx: TracePointContext) -> u32 {
            on_exit($syscall, arg(&ctx, EXIT_RET));
            0
        }
    };
}

exit_tracepoint!(sys_exit_open, "sys_exit_open", Syscall::Open);
exit_tracepoint!(sys_exit_openat, "sys_exit_openat", Syscall::Openat);
exit_tracepoint!(sys_exit_openat2, "sys_exit_openat2", Syscall::Openat2);
exit_tracepoint!(sys_exit_creat, "sys_exit_creat", Syscall::Creat);

/// `--no-timing` in the tracepoint mode: these alone, no entry programs (so the
/// kernel skips the syscall-entry tracepoint for every syscall). The arguments
/// of a failed open come from the saved user registers, which needs
/// bpf_task_pt_regs (Linux 5.15): older kernels refuse these, and userspace
/// then times opens as usual, saying why.
macro_rules! exit_untimed_tracepoint {
    ($fn_name:ident, $tp:literal, $syscall:expr) => {
        #[tracepoint(category = "syscalls", name = $tp)]
        pub fn $fn_name(ctx: TracePointContext) -> u32 {
            on_exit_untimed($syscall, arg(&ctx, EXIT_RET), || {
                user_args().unwrap_or(OpenArgs { syscall: $syscall, dirfd: AT_FDCWD, path_ptr: 0, open_flags: 0, mode: 0 })
            });
            0
        }
    };
}

exit_untimed_tracepoint!(sys_exit_open_untimed, "sys_exit_open", Syscall::Open);
exit_untimed_tracepoint!(sys_exit_openat_untimed, "sys_exit_openat", Syscall::Openat);
exit_untimed_tracepoint!(sys_exit_openat2_untimed, "sys_exit_openat2", Syscall::Openat2);
exit_untimed_tracepoint!(sys_exit_creat_untimed, "sys_exit_creat", Syscall::Creat);

// ---------------------------------------------------------------------------
// Attach mode 2: fentry/fexit on do_sys_openat2 (kernels that allow tracing
// programs; costs nothing on other syscalls).
// ---------------------------------------------------------------------------

/// Word indexes in x86_64 `struct pt_regs` (arch/x86/include/asm/ptrace.h) of
/// the registers the syscall ABI uses: number and the first four arguments.
const REG_R10: usize = 7;
const REG_DX: usize = 12;
const REG_SI: usize = 13;
const REG_DI: usize = 14;
const REG_ORIG_AX: usize = 15;

/// The calling task's user registers, saved at syscall entry. Needs
/// bpf_task_pt_regs (Linux 5.15); on older kernels these programs fail to load
/// and userspace falls back to tracepoints, saying why.
#[inline(always)]
fn user_regs() -> *const u64 {
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64 }
}

/// A word of the saved registers, loaded directly: bpf_task_pt_regs returns a
/// BTF-typed pointer the verifier lets tracing programs read (it guards the
/// load itself), which saves a probe-read helper call per register.
#[inline(always)]
fn reg(regs: *const u64, word: usize) -> u64 {
    // SAFETY: `regs` is the kernel's `struct pt_regs` of the current task and
    // every `word` used is one of its u64 fields.
    unsafe { core::ptr::read_volatile(regs.wrapping_add(word)) }
}

/// Which syscall reached the common function, from the syscall number saved in
/// `pt_regs.orig_ax`; `None` when it was none of the four (a 32-bit task).
#[inline(always)]
fn current_syscall() -> Option<Syscall> {
    Syscall::from_x86_64_nr(reg(user_regs(), REG_ORIG_AX))
}

/// An open's arguments as the program passed them.
#[derive(Clone, Copy)]
struct OpenArgs {
    syscall: Syscall,
    dirfd: i32,
    path_ptr: u64,
    open_flags: u64,
    mode: u32,
}

impl OpenArgs {
    #[inline(always)]
    fn into_inflight(self, start_ns: u64, tid: u32) -> Inflight {
        Inflight {
            start_ns,
            path_ptr: self.path_ptr,
            open_flags: self.open_flags,
            mode: self.mode,
            dirfd: self.dirfd,
            tid,
            syscall: self.syscall as u8,
            _pad: [0; 3],
        }
    }
}

/// The syscall's own arguments, from the saved user registers (the same at
/// entry and at exit: the kernel writes only the return register); `None` for
/// a syscall that is not one of the four x86_64 opens.
#[inline(always)]
fn user_args() -> Option<OpenArgs> {
    let regs = user_regs();
    let syscall = Syscall::from_x86_64_nr(reg(regs, REG_ORIG_AX))?;
    Some(match syscall {
        Syscall::Open => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg(regs, REG_DI),
            open_flags: reg(regs, REG_SI),
            mode: reg(regs, REG_DX) as u32,
        },
        Syscall::Openat => OpenArgs {
            syscall,
            dirfd: reg(regs, REG_DI) as i32,
            path_ptr: reg(regs, REG_SI),
            open_flags: reg(regs, REG_DX),
            mode: reg(regs, REG_R10) as u32,
        },
        Syscall::Openat2 => {
            let how = unsafe { bpf_probe_read_user(reg(regs, REG_DX) as *const OpenHow) }
                .unwrap_or(OpenHow { flags: 0, mode: 0, resolve: 0 });
            OpenArgs { syscall, dirfd: reg(regs, REG_DI) as i32, path_ptr: reg(regs, REG_SI), open_flags: how.flags, mode: how.mode as u32 }
        }
        Syscall::Creat => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg(regs, REG_DI),
            open_flags: CREAT_FLAGS,
            mode: reg(regs, REG_SI) as u32,
        },
    })
}

/// do_sys_openat2's own arguments, for a caller that is not one of the four
/// x86_64 syscalls (`how` is a kernel pointer here).
#[inline(always)]
fn function_args(dirfd: u64, path_ptr: u64, how: u64) -> OpenArgs {
    let how = unsafe { bpf_probe_read_kernel(how as *const OpenHow) }.unwrap_or(OpenHow { flags: 0, mode: 0, resolve: 0 });
    OpenArgs { syscall: Syscall::Openat, dirfd: dirfd as i32, path_ptr, open_flags: how.flags, mode: how.mode as u32 }
}

#[fentry(function = "do_sys_openat2")]
pub fn fentry_do_sys_openat2(ctx: FEntryContext) -> u32 {
    // The syscall's own arguments, read from the saved user registers, so both
    // attach modes report what the program passed: do_sys_openat2's `how` is a
    // kernel copy with O_LARGEFILE forced in, unknown flag bits masked and the
    // mode zeroed without O_CREAT.
    let a = user_args().unwrap_or_else(|| function_args(ctx.arg(0), ctx.arg(1), ctx.arg(2)));
    on_enter(a.syscall, a.dirfd, a.path_ptr, a.open_flags, a.mode);
    0
}

#[fexit(function = "do_sys_openat2")]
pub fn fexit_do_sys_openat2(ctx: FExitContext) -> u32 {
    // The return value follows the three arguments. Its type is `long` on some
    // kernels (6.12) and `int` on others (6.18, 7.x), where the upper half of
    // the register is garbage: take 32 bits and sign-extend, right for both
    // (an fd or -errno always fits).
    let ret = ctx.arg::<u64>(3) as u32 as i32 as i64;
    on_exit(current_syscall().unwrap_or(Syscall::Openat), ret);
    0
}

/// `--no-timing` in the fentry mode: this program alone, no fentry.
#[fexit(function = "do_sys_openat2")]
pub fn fexit_do_sys_openat2_untimed(ctx: FExitContext) -> u32 {
    let ret = ctx.arg::<u64>(3) as u32 as i32 as i64;
    // The arguments only for a failure (openat2's cost a read of user memory).
    on_exit_untimed(current_syscall().unwrap_or(Syscall::Openat), ret, || {
        user_args().unwrap_or_else(|| function_args(ctx.arg(0), ctx.arg(1), ctx.arg(2)))
    });
    0
}

// ---------------------------------------------------------------------------
// Following a command and its children (`badfd trace -- command`).
// ---------------------------------------------------------------------------

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // Runs in the parent.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if unsafe { TRACKED.get(parent) }.is_none() {
        return 0;
    }
    let Some(config) = CONFIG.get(0) else { return 0 };
    let child: i32 = unsafe { ctx.read_at(config.fork_child_pid_offset as usize) }.unwrap_or(0);
    if child > 0 && TRACKED.insert(child as u32, 1u8, 0).is_err() {
        if let Some(c) = counters() {
            count_loss(c, Loss::TrackedFull);
        }
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // An open of this thread still in flight will never see its exit (the
    // exit program missed it): free the slot, so the in-flight gauge cannot
    // stay stuck, and count it.
    if let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) {
        // SAFETY: a valid array slot; this thread's own entry, if it is one.
        let slot = unsafe { &mut *slot };
        if slot.tid == tid && tid != 0 {
            slot.tid = 0;
            if let Some(c) = counters() {
                count_loss(c, Loss::InflightReaped);
            }
        }
    }
    // The fork tracepoint also fires for new threads and inserts their tids:
    // remove every exiting task's own id, so that a thread's id does not stay
    // tracked and later match an unrelated process that reuses the number. A
    // group leader's id is its process id.
    let _ = TRACKED.remove(tid);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Benchmarks only: an empty program on the same tracepoints, the floor cost
/// of the attach mode itself (never attached by badfd).
#[tracepoint]
pub fn floor_empty(_ctx: TracePointContext) -> u32 {
    0
}

// ---------------------------------------------------------------------------
// Benchmarks and tests only: the transport (ring buffer, reader, pipeline)
// measured without the cost of a syscall. Never attached by badfd; run with
// BPF_PROG_TEST_RUN by `Probe::transport_bench`, in the calling thread.
// ---------------------------------------------------------------------------

/// What one test run passes to each iteration of its loop (on its stack).
#[repr(C)]
struct BenchEmitArgs {
    /// User address of the first path (the calling process's own memory).
    paths: u64,
    /// Bytes from one path to the next.
    stride: u64,
    /// Number of paths minus one (a power of two minus one).
    mask: u64,
    /// 0: the reader is woken as badfd wakes it. 1 (an experiment, valid while
    /// `emit` uses `waiting` for its wakeup decision only): `emit` is
    /// given the bytes waiting only when they have just crossed a multiple of
    /// `Config::wakeup_bytes` (within `BENCH_CROSSING_WINDOW` above it), else
    /// 0, so it forces one wakeup per `wakeup_bytes` of events waiting instead
    /// of one per event while they wait.
    wake_on_crossing: u64,
}

/// A few of this bench's records (about 160 bytes each).
const BENCH_CROSSING_WINDOW: u64 = 512;

/// Latency reported in the synthetic events (below any slow threshold).
const BENCH_LATENCY_NS: u64 = 40_000;
const BENCH_ENOENT: i64 = -2;

/// One synthetic failing openat of the calling thread, through the tail of
/// `on_exit` a real failing open takes once past the filters: the fairness
/// check on the real ring buffer, then `emit` (path read from user memory,
/// comm, cgroup, mount namespace, the same EVENTS and the same counters).
/// A `bpf_loop` callback: 0 goes on to the next iteration, 1 stops the loop
/// (the events not made are then missing from the kernel's counts, which the
/// callers compare with what they asked for).
#[inline(never)]
extern "C" fn bench_emit_one(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `BenchEmitArgs` on the stack of `bench_emit`.
    let args = unsafe { &*(ctx as *const BenchEmitArgs) };
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let Some(c) = counters() else { return 1 };
    let Some(config) = CONFIG.get(0) else { return 1 };
    let uid_gid = bpf_get_current_uid_gid();
    let waiting = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    if !source_may_stream(config, pid, now, waiting) {
        count_loss(c, Loss::SourceThrottled);
        return 0;
    }
    let entry = Inflight {
        start_ns: now.wrapping_sub(BENCH_LATENCY_NS),
        path_ptr: args.paths.wrapping_add((index & args.mask).wrapping_mul(args.stride)),
        open_flags: 0,
        mode: 0,
        dirfd: AT_FDCWD,
        tid,
        syscall: Syscall::Openat as u8,
        _pad: [0; 3],
    };
    let threshold = config.wakeup_bytes as u64;
    let crossed = threshold == 0 || (waiting >= threshold && waiting % threshold < BENCH_CROSSING_WINDOW);
    let wake_waiting = if args.wake_on_crossing == 0 || crossed {
        waiting
    } else {
        0
    };
    emit(c, &entry, config, wake_waiting, pid, tid, uid_gid as u32, (uid_gid >> 32) as u32, BENCH_ENOENT, BENCH_LATENCY_NS, EVENT_FAILED);
    0
}

/// Benchmarks and tests only: `args[1]` synthetic failing opens per run
/// (`bpf_loop`, Linux 5.17+), path `i` at `args[0] + (i & args[3]) * args[2]`;
/// `args[4]`: `BenchEmitArgs::wake_on_crossing`.
#[aya_ebpf::macros::raw_tracepoint]
pub fn bench_emit(ctx: aya_ebpf::programs::RawTracePointContext) -> u32 {
    let mut args = BenchEmitArgs { paths: ctx.arg(0), stride: ctx.arg(2), mask: ctx.arg(3), wake_on_crossing: ctx.arg(4) };
    let count: u64 = ctx.arg(1);
    // SAFETY: a callback of the bpf_loop signature and a pointer to its args.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            count as u32,
            bench_emit_one as *mut core::ffi::c_void,
            (&mut args as *mut BenchEmitArgs).cast(),
            0,
        )
    };
    0
}

/// Benchmarks only: an empty fentry/fexit pair on `do_sys_openat2`, the floor
/// cost of the fentry attach mode (the trampoline around the function; other
/// syscalls pay nothing). Never attached by badfd.
#[fentry(function = "do_sys_openat2")]
pub fn floor_fentry_empty(_ctx: FEntryContext) -> u32 {
    0
}

#[fexit(function = "do_sys_openat2")]
pub fn floor_fexit_empty(_ctx: FExitContext) -> u32 {
    0
}

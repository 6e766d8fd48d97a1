//! The enter and exit of every open: the start time at entry; at exit the
//! exact counts, the latency, and the decision whether the open is an anomaly
//! (failed or slow) that goes on to `stream`. A signal that interrupts an open
//! is decided here too (`signal_end`): restarted, EINTR, or killed.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns};
use exporter_common::{
    is_restart_code, latency_bucket, Config, Counters, Inflight, Loss, Stream, Syscall, CONFIG_FAILURES_ONLY,
    CONFIG_FOUND_NOTICES, CONFIG_STREAM_EXECS, CONFIG_STREAM_OPENS, EVENT_FAILED, EVENT_FOUND, EVENT_INTERRUPTED,
    EVENT_OPENED, EVENT_SLOW, EVENT_UNTIMED, INFLIGHT_PATH_IN_KERNEL, INFLIGHT_RESTARTING, INFLIGHT_SLOT_MASK,
};

use crate::{
    args::OpenArgs,
    counters::{bump, count_loss, count_result, count_stream, counters},
    found_later::{self, badfd_find_earlier, badfd_find_name, badfd_note_failure},
    kernel_path,
    maps::{CONFIG, INFLIGHT},
    signal_end::{badfd_signal_end, END_EINTR, END_KILLED},
    stream::{stream_anomaly, PathRead},
};

const EINTR: i64 = 4;

/// How an open ended.
#[derive(Clone, Copy)]
pub struct End {
    /// What the program got (an fd or -errno); the kernel's restart code
    /// where it got nothing.
    pub ret: i64,
    /// Whether a result reached the program (false: its task was killed).
    pub result: bool,
    /// Whether a signal ended it.
    pub interrupted: bool,
}

impl End {
    /// A result the program got as it is.
    #[inline(always)]
    pub fn result(ret: i64) -> End {
        End { ret, result: true, interrupted: false }
    }
}

/// How the open that left with `ret` ends; `None` when the kernel restarts it
/// (the restart goes on as the same open).
#[inline(always)]
fn decide(ret: i64) -> Option<End> {
    if !is_restart_code(ret) {
        return Some(End::result(ret));
    }
    match badfd_signal_end(ret) {
        END_EINTR => Some(End { ret: -EINTR, result: true, interrupted: true }),
        END_KILLED => Some(End { ret, result: false, interrupted: true }),
        _ => None,
    }
}

/// The found-later bookkeeping of an open that ended with `ret`: a failure's
/// name is noted, a success of a process with a recent failure looks for the
/// failures it finds. Returns the event flag it adds (`EVENT_FOUND` for a
/// success that found failures, when userspace asked for notices) and the
/// path as read for it.
///
/// A failure's path is at `path_ptr()`, a kernel address with `in_kernel`
/// (`kernel_path`); a success's is always the process's memory.
///
/// A successful exec finds by `exec_hash`, the hash of its path's basename
/// taken at entry (its path went with the old program), or where it has none
/// (untimed) by the new comm, the first 15 bytes of that basename; its notice
/// carries no path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn found_later_step(
    config: &Config,
    pid_tgid: u64,
    now: u64,
    ret: i64,
    syscall: Syscall,
    exec_hash: u32,
    in_kernel: bool,
    path_ptr: impl FnOnce() -> u64,
) -> (u8, PathRead) {
    if ret < 0 {
        found_later::badfd_count_failure((-ret) as u64, now);
        if !found_later::enabled(config) {
            return (0, PathRead::NONE);
        }
        let (read, name_hash) = found_later::split(badfd_note_failure(path_ptr(), in_kernel as u64, (-ret) as u64, now));
        return (0, PathRead { read, name_hash });
    }
    if !found_later::has_recent_failure(config, (pid_tgid >> 32) as u32, now) {
        return (0, PathRead::NONE);
    }
    if syscall.is_exec() {
        let hash = if exec_hash != 0 { exec_hash } else { found_later::comm_hash() };
        if badfd_find_name(hash as u64, now) == 0 || config.flags & CONFIG_FOUND_NOTICES == 0 {
            return (0, PathRead::NONE);
        }
        // `read` 1: an empty path, already "read".
        return (EVENT_FOUND, PathRead { read: 1, name_hash: hash });
    }
    let found = badfd_find_earlier(path_ptr(), now);
    if found == 0 || config.flags & CONFIG_FOUND_NOTICES == 0 {
        return (0, PathRead::NONE);
    }
    let (read, name_hash) = found_later::split(found);
    (EVENT_FOUND, PathRead { read, name_hash })
}

/// An open begins: its arguments and start time go into the thread's slot.
#[inline(always)]
pub fn on_enter(args: OpenArgs) {
    enter(args, 0, true);
}

/// As `on_enter`, with `INFLIGHT_*` flags for the entry; `timed` false keeps
/// the entry for its arguments only (`--no-timing`: not counted as entered).
#[inline(always)]
pub fn enter(args: OpenArgs, flags: u8, timed: bool) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    let Some(c) = counters() else { return };
    // SAFETY: a valid array slot; a concurrent writer on another CPU can only
    // be a colliding thread, whose loss is counted either way.
    let slot = unsafe { &mut *slot };
    if slot.tid == tid {
        let restart = slot.flags & INFLIGHT_RESTARTING != 0
            && slot.syscall == args.syscall as u8
            && slot.path_ptr == args.path_ptr
            && slot.dirfd == args.dirfd
            && slot.open_flags == args.open_flags;
        if restart {
            // The kernel restarts the interrupted open: the same open goes
            // on, timed from its first entry.
            slot.flags = 0;
            return;
        }
        // Its own earlier entry, whose exit was never seen.
        count_loss(c, Loss::InflightStale);
    } else if slot.tid != 0 {
        count_loss(c, Loss::InflightCollision);
    }
    if timed {
        count_stream(c, Stream::Entered);
    }
    let mut entry = args.into_inflight(unsafe { bpf_ktime_get_ns() }, tid);
    entry.flags = flags;
    *slot = entry;
}

/// The current thread's own in-flight entry, taken out of its slot (the slot
/// is freed); `None` when the slot holds none of this thread's.
#[inline(always)]
pub fn take_entry(tid: u32) -> Option<Inflight> {
    let slot = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK)?;
    // SAFETY: a valid array slot, copied before it is freed.
    let entry: Inflight = unsafe { core::ptr::read(slot) };
    if entry.tid != tid {
        return None;
    }
    unsafe { (*slot).tid = 0 };
    Some(entry)
}

/// The current thread's own entry (if it has one) stays for the restart of
/// its open, which goes on timing it.
#[inline(always)]
fn mark_restarting(tid: u32) {
    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    // SAFETY: a valid array slot; marked only if it is this thread's.
    let slot = unsafe { &mut *slot };
    if slot.tid == tid {
        slot.flags |= INFLIGHT_RESTARTING;
    }
}

/// An open ends with `ret`: counted, timed against its entry, and streamed if
/// it is an anomaly. `syscall_hint` is the hook's own syscall and
/// `args_without_entry` the arguments as the saved registers give them, both
/// for an exit that finds no entry of its own.
#[inline(always)]
pub fn on_exit(syscall_hint: Syscall, ret: i64, args_without_entry: impl FnOnce() -> Option<OpenArgs>) {
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(c) = counters() else { return };
    let Some(end) = decide(ret) else {
        count_stream(c, Stream::Restarted);
        mark_restarting(tid);
        return;
    };
    let Some(config) = CONFIG.get(0) else { return };
    match take_entry(tid) {
        Some(mut entry) => {
            kernel_path::resolve(&mut entry, tid as u64);
            finish(c, config, &entry, pid_tgid, now, end, true)
        }
        None => finish_without_entry(c, config, syscall_hint, pid_tgid, now, end, args_without_entry),
    }
}

/// The end of an open with its entry: counted, timed (`timed`), and streamed
/// if it is an anomaly.
#[inline(always)]
pub fn finish(c: &mut Counters, config: &Config, entry: &Inflight, pid_tgid: u64, now: u64, end: End, timed: bool) {
    let Some(syscall) = Syscall::from_u8(entry.syscall) else { return };
    let s = syscall as usize;
    if end.result {
        count_result(c, s, end.ret);
    } else {
        count_stream(c, Stream::Interrupted);
    }
    let failed = end.result && end.ret < 0;
    let mut event_flags = 0;
    let mut latency_ns = 0;
    let mut slow = false;
    if timed {
        latency_ns = now.wrapping_sub(entry.start_ns);
        if let Some(hist) = c.latency.get_mut(s) {
            bump(hist.get_mut(latency_bucket(latency_ns)));
        }
        if let Some(sum) = c.latency_sum_ns.get_mut(s) {
            *sum += latency_ns;
        }
        // An exec is timed but never a slow anomaly (loading a program is not an open).
        slow = latency_ns >= config.slow_threshold_ns && !syscall.is_exec();
        if slow {
            bump(c.slow.get_mut(s));
        }
    } else {
        event_flags |= EVENT_UNTIMED;
    }
    let mut entry = *entry;
    let mut exec_hash = 0;
    if syscall.is_exec() {
        // The entry's mode carries the exec's basename hash, not a mode.
        exec_hash = entry.mode;
        entry.mode = 0;
    }
    // Found later: syscall opens with a result (io_uring paths may be the
    // kernel's own copy, which the user-memory readers cannot read).
    let (found_flag, path) = if end.result && !syscall.is_io_uring() {
        found_later_step(config, pid_tgid, now, end.ret, syscall, exec_hash, entry.flags & INFLIGHT_PATH_IN_KERNEL != 0, || {
            entry.path_ptr
        })
    } else {
        (0, PathRead::NONE)
    };
    let mut anomaly = found_flag;
    if failed {
        anomaly |= EVENT_FAILED;
    }
    if slow {
        if !failed && config.flags & CONFIG_FAILURES_ONLY != 0 {
            count_stream(c, Stream::SlowNotStreamed);
        } else {
            anomaly |= EVENT_SLOW;
        }
    }
    if anomaly == 0 {
        // The fast path: a fast successful open ends here, unless every
        // open is asked for (`trace --all`).
        if !streams_success(config, syscall, end) {
            return;
        }
        anomaly = EVENT_OPENED;
    }
    if syscall.is_exec() && config.flags & CONFIG_STREAM_EXECS == 0 {
        return;
    }
    if end.interrupted {
        event_flags |= EVENT_INTERRUPTED;
    }
    stream_anomaly(c, config, &entry, pid_tgid, end.ret, latency_ns, anomaly | event_flags, path);
}

/// The end of an open whose entry is missing (it began before attach, its
/// entry program was skipped, or another thread took its slot): counted
/// under the hook's own syscall, untimed; a failure is streamed with the
/// arguments `args` gives (the saved registers, where the kernel lets the
/// program read them).
#[inline(always)]
fn finish_without_entry(
    c: &mut Counters,
    config: &Config,
    syscall: Syscall,
    pid_tgid: u64,
    now: u64,
    end: End,
    args: impl FnOnce() -> Option<OpenArgs>,
) {
    count_loss(c, Loss::ExitWithoutEnter);
    if !end.result {
        count_stream(c, Stream::Interrupted);
        return;
    }
    count_result(c, syscall as usize, end.ret);
    if end.ret >= 0 {
        return;
    }
    let Some(args) = args() else {
        found_later::badfd_count_failure((-end.ret) as u64, now);
        return;
    };
    let syscall = args.syscall;
    let entry = args.into_inflight(now, pid_tgid as u32);
    let (_, path) = found_later_step(config, pid_tgid, now, end.ret, syscall, 0, false, || entry.path_ptr);
    if syscall.is_exec() && config.flags & CONFIG_STREAM_EXECS == 0 {
        return;
    }
    let interrupted = if end.interrupted { EVENT_INTERRUPTED } else { 0 };
    stream_anomaly(c, config, &entry, pid_tgid, end.ret, 0, EVENT_FAILED | EVENT_UNTIMED | interrupted, path);
}

/// Whether a successful open that is no anomaly is streamed anyway
/// (`CONFIG_STREAM_OPENS`): opens, not execs (a successful exec's path is in
/// memory the new program replaced).
#[inline(always)]
fn streams_success(config: &Config, syscall: Syscall, end: End) -> bool {
    config.flags & CONFIG_STREAM_OPENS != 0 && end.result && end.ret >= 0 && !syscall.is_exec()
}

/// The exit of an open with no entry program (`--no-timing`): counts it
/// exactly, and for a failure takes the arguments from the caller's saved
/// registers (still there at exit) and streams it. A successful open costs a
/// result count and nothing else; nothing is timed.
#[inline(always)]
pub fn on_exit_untimed(syscall: Syscall, ret: i64, args: impl FnOnce() -> OpenArgs) {
    let Some(c) = counters() else { return };
    let Some(end) = decide(ret) else {
        count_stream(c, Stream::Restarted);
        return;
    };
    if !end.result {
        count_stream(c, Stream::Interrupted);
        return;
    }
    let ret = end.ret;
    count_result(c, syscall as usize, ret);
    let Some(config) = CONFIG.get(0) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_ns() };
    if ret >= 0
        && !found_later::has_recent_failure(config, (pid_tgid >> 32) as u32, now)
        && !streams_success(config, syscall, end)
    {
        return;
    }
    // A failure, or a success that may find failures: the arguments (none
    // for a successful exec: its registers are the new program's).
    let entry = if ret >= 0 && syscall.is_exec() {
        OpenArgs { syscall, dirfd: exporter_common::AT_FDCWD, path_ptr: 0, open_flags: 0, mode: 0 }
    } else {
        args()
    }
    .into_inflight(now, pid_tgid as u32);
    let (found_flag, path) = found_later_step(config, pid_tgid, now, ret, syscall, 0, false, || entry.path_ptr);
    let mut event_flags = if ret < 0 { EVENT_FAILED | EVENT_UNTIMED } else { found_flag | EVENT_UNTIMED };
    if ret >= 0 && found_flag == 0 {
        if !streams_success(config, syscall, end) {
            return;
        }
        event_flags |= EVENT_OPENED;
    }
    if syscall.is_exec() && config.flags & CONFIG_STREAM_EXECS == 0 {
        return;
    }
    let interrupted = if end.interrupted { EVENT_INTERRUPTED } else { 0 };
    stream_anomaly(c, config, &entry, pid_tgid, ret, 0, event_flags | interrupted, path);
}

//! The enter and exit of every open: the start time at entry; at exit the
//! exact counts, the latency, and the decision whether the open is an anomaly
//! (failed or slow) that goes on to `stream`.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns};
use exporter_common::{
    is_restart_code, latency_bucket, Config, Counters, Inflight, Loss, Stream, Syscall, CONFIG_FAILURES_ONLY,
    CONFIG_FOUND_NOTICES, CONFIG_STREAM_EXECS, EVENT_FAILED, EVENT_FOUND, EVENT_SLOW, EVENT_UNTIMED, INFLIGHT_SLOT_MASK,
};

use crate::{
    args::OpenArgs,
    counters::{bump, count_loss, count_result, count_stream, counters},
    found_later::{self, badfd_find_earlier, badfd_find_name, badfd_note_failure},
    maps::{CONFIG, INFLIGHT},
    stream::{stream_anomaly, PathRead},
};

/// The found-later bookkeeping of an open that ended with `ret`: a failure's
/// name is noted, a success of a process with a recent failure looks for the
/// failures it finds. Returns the event flag it adds (`EVENT_FOUND` for a
/// success that found failures, when userspace asked for notices) and the
/// path as read for it.
///
/// A successful exec finds by `exec_hash`, the hash of its path's basename
/// taken at entry (its path went with the old program), or where it has none
/// (untimed) by the new comm, the first 15 bytes of that basename; its notice
/// carries no path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn found_later_step(
    config: &Config,
    c: &mut Counters,
    pid_tgid: u64,
    now: u64,
    ret: i64,
    syscall: Syscall,
    exec_hash: u32,
    path_ptr: impl FnOnce() -> u64,
) -> (u8, PathRead) {
    if ret < 0 {
        found_later::count_failure(config, c, (-ret) as u64, now);
        if !found_later::enabled(config) {
            return (0, PathRead::NONE);
        }
        let (read, name_hash) = found_later::split(badfd_note_failure(path_ptr(), (-ret) as u64, now));
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
    *slot = args.into_inflight(unsafe { bpf_ktime_get_ns() }, tid);
}

/// An open ends with `ret`: counted, timed against its entry, and streamed if
/// it is an anomaly. `syscall_hint` is the hook's own syscall, used when the
/// entry is missing.
#[inline(always)]
pub fn on_exit(syscall_hint: Syscall, ret: i64) {
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(c) = counters() else { return };

    let Some(slot) = INFLIGHT.get_ptr_mut(tid & INFLIGHT_SLOT_MASK) else { return };
    // SAFETY: a valid array slot, copied before it is freed.
    let entry: Inflight = unsafe { core::ptr::read(slot) };
    let interrupted = is_restart_code(ret);
    if entry.tid != tid {
        if interrupted {
            count_stream(c, Stream::Interrupted);
            return;
        }
        count_result(c, syscall_hint as usize, ret);
        count_loss(c, Loss::ExitWithoutEnter);
        if let (true, Some(config)) = (ret < 0, CONFIG.get(0)) {
            found_later::count_failure(config, c, (-ret) as u64, now);
        }
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
        bump(hist.get_mut(latency_bucket(latency_ns)));
    }
    if let Some(sum) = c.latency_sum_ns.get_mut(s) {
        *sum += latency_ns;
    }

    let Some(config) = CONFIG.get(0) else { return };
    // An exec is timed but never a slow anomaly (loading a program is not an open).
    let slow = latency_ns >= config.slow_threshold_ns && !syscall.is_exec();
    if slow {
        bump(c.slow.get_mut(s));
    }
    let mut entry = entry;
    let mut exec_hash = 0;
    if syscall.is_exec() {
        // The entry's mode carries the exec's basename hash, not a mode.
        exec_hash = entry.mode;
        entry.mode = 0;
    }
    let (found_flag, path) = found_later_step(config, c, pid_tgid, now, ret, syscall, exec_hash, || entry.path_ptr);
    let mut event_flags = found_flag;
    if failed {
        event_flags |= EVENT_FAILED;
    }
    if slow {
        if !failed && config.flags & CONFIG_FAILURES_ONLY != 0 {
            count_stream(c, Stream::SlowNotStreamed);
        } else {
            event_flags |= EVENT_SLOW;
        }
    }
    if event_flags == 0 {
        // The fast path: a fast successful open ends here.
        return;
    }
    if syscall.is_exec() && config.flags & CONFIG_STREAM_EXECS == 0 {
        return;
    }
    stream_anomaly(c, config, &entry, pid_tgid, ret, latency_ns, event_flags, path);
}

/// The exit of an open with no entry program (`--no-timing`): counts it
/// exactly, and for a failure takes the arguments from the caller's saved
/// registers (still there at exit) and streams it. A successful open costs a
/// result count and nothing else; nothing is timed.
#[inline(always)]
pub fn on_exit_untimed(syscall: Syscall, ret: i64, args: impl FnOnce() -> OpenArgs) {
    let Some(c) = counters() else { return };
    if is_restart_code(ret) {
        count_stream(c, Stream::Interrupted);
        return;
    }
    count_result(c, syscall as usize, ret);
    let Some(config) = CONFIG.get(0) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    let now = unsafe { bpf_ktime_get_ns() };
    if ret >= 0 && !found_later::has_recent_failure(config, (pid_tgid >> 32) as u32, now) {
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
    let (found_flag, path) = found_later_step(config, c, pid_tgid, now, ret, syscall, 0, || entry.path_ptr);
    let event_flags = if ret < 0 { EVENT_FAILED | EVENT_UNTIMED } else { found_flag | EVENT_UNTIMED };
    if (ret >= 0 && found_flag == 0) || (syscall.is_exec() && config.flags & CONFIG_STREAM_EXECS == 0) {
        return;
    }
    stream_anomaly(c, config, &entry, pid_tgid, ret, 0, event_flags, path);
}

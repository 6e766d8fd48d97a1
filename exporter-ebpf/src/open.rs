//! The enter and exit of every open: the start time at entry; at exit the
//! exact counts, the latency, and the decision whether the open is an anomaly
//! (failed or slow) that goes on to `stream`.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns};
use exporter_common::{
    is_restart_code, latency_bucket, Inflight, Loss, Stream, Syscall, CONFIG_FAILURES_ONLY, EVENT_FAILED, EVENT_SLOW,
    EVENT_UNTIMED, INFLIGHT_SLOT_MASK,
};

use crate::{
    args::OpenArgs,
    counters::{bump, count_loss, count_result, count_stream, counters},
    maps::{CONFIG, INFLIGHT},
    stream::stream_anomaly,
};

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
pub fn on_exit_untimed(syscall: Syscall, ret: i64, args: impl FnOnce() -> OpenArgs) {
    let Some(c) = counters() else { return };
    if is_restart_code(ret) {
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

//! The exact per-CPU counters: every open is counted here, streamed or not.

use exporter_common::{Counters, Loss, Stream, ERRNO_SLOTS, RESULT_FAILED, RESULT_OK};

use crate::maps::COUNTERS;

#[inline(always)]
pub fn counters() -> Option<&'static mut Counters> {
    // SAFETY: the per-CPU slot is only touched by programs on this CPU, which
    // do not nest for syscall tracepoints or fentry/fexit.
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn bump(slot: Option<&mut u64>) {
    if let Some(v) = slot {
        *v += 1;
    }
}

#[inline(always)]
pub fn count_loss(counters: &mut Counters, loss: Loss) {
    bump(counters.losses.get_mut(loss as usize));
}

#[inline(always)]
pub fn count_stream(counters: &mut Counters, stream: Stream) {
    bump(counters.stream.get_mut(stream as usize));
}

/// Exact counts of every open, timed or not.
#[inline(always)]
pub fn count_result(c: &mut Counters, s: usize, ret: i64) {
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

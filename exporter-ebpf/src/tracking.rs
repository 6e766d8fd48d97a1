//! Process lifetimes: following a command and its children (`badfd trace --
//! command`), and freeing the in-flight slot of a thread that exits.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use exporter_common::{Loss, INFLIGHT_SLOT_MASK};

use crate::{
    counters::{count_loss, counters},
    maps::{CONFIG, INFLIGHT, TRACKED},
};

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

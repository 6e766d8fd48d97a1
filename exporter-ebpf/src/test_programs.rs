//! Programs for tests and benchmarks only, built with the `test-programs`
//! feature, which the shipped object does not enable: badfd never loads them.

use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns},
    macros::{fentry, fexit, raw_tracepoint, tracepoint},
    programs::{FEntryContext, FExitContext, RawTracePointContext, TracePointContext},
};
use exporter_common::{Inflight, Syscall, AT_FDCWD, EVENT_FAILED};

use crate::{
    maps::{CONFIG, EVENTS},
    stream::{emit_pending, PathRead},
};

/// An empty program on the same tracepoints, the floor cost of the attach mode
/// itself.
#[tracepoint]
pub fn floor_empty(_ctx: TracePointContext) -> u32 {
    0
}

/// An empty fentry/fexit pair on `do_sys_openat2`, the floor cost of the
/// fentry attach mode (the trampoline around the function; other syscalls pay
/// nothing).
#[fentry(function = "do_sys_openat2")]
pub fn floor_fentry_empty(_ctx: FEntryContext) -> u32 {
    0
}

#[fexit(function = "do_sys_openat2")]
pub fn floor_fexit_empty(_ctx: FExitContext) -> u32 {
    0
}

// ---------------------------------------------------------------------------
// The transport (ring buffer, reader, pipeline) measured without the cost of a
// syscall: run with BPF_PROG_TEST_RUN in the calling thread.
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
/// `on_exit` a real failing open takes once past the filters: `emit` (the
/// fairness check on the real ring buffer, path read from user memory, comm,
/// cgroup, mount namespace, the same EVENTS and the same counters).
/// A `bpf_loop` callback: 0 goes on to the next iteration, 1 stops the loop
/// (the events not made are then missing from the kernel's counts, which the
/// callers compare with what they asked for).
#[inline(never)]
extern "C" fn bench_emit_one(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `BenchEmitArgs` on the stack of `bench_emit`.
    let args = unsafe { &*(ctx as *const BenchEmitArgs) };
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(config) = CONFIG.get(0) else { return 1 };
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let entry = Inflight {
        start_ns: now.wrapping_sub(BENCH_LATENCY_NS),
        path_ptr: args.paths.wrapping_add((index & args.mask).wrapping_mul(args.stride)),
        open_flags: 0,
        mode: 0,
        dirfd: AT_FDCWD,
        tid,
        syscall: Syscall::Openat as u8,
        flags: 0,
        _pad: [0; 2],
    };
    let threshold = config.wakeup_bytes as u64;
    let crossed = threshold == 0 || (waiting >= threshold && waiting % threshold < BENCH_CROSSING_WINDOW);
    let wake_waiting = if args.wake_on_crossing == 0 || crossed { waiting } else { 0 };
    emit_pending(&entry, BENCH_ENOENT, BENCH_LATENCY_NS, EVENT_FAILED, wake_waiting, PathRead::NONE);
    0
}

/// `args[1]` synthetic failing opens per run (`bpf_loop`, Linux 5.17+), path
/// `i` at `args[0] + (i & args[3]) * args[2]`; `args[4]`:
/// `BenchEmitArgs::wake_on_crossing`.
#[raw_tracepoint]
pub fn bench_emit(ctx: RawTracePointContext) -> u32 {
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

//! io_uring opens (`IORING_OP_OPENAT`, `IORING_OP_OPENAT2`). The kernel opens
//! them for the ring (io_openat2, then the same path walk as open(2)) without
//! an open syscall, so neither the syscall tracepoints nor the fentry on
//! do_sys_openat2 see them; these programs do, in each attach mode:
//!
//! - fentry mode: fentry/fexit on the request's issue (io_openat for OPENAT,
//!   io_openat2 for OPENAT2, each program taking only its own opcode, so an
//!   OPENAT is counted once whether or not io_openat's call to io_openat2 is
//!   inlined). Timed per thread like a syscall: the attempt that ends the
//!   request. A non-blocking attempt that must block instead (-EAGAIN) is
//!   handed to an io_uring worker; it is counted as retried, and the worker's
//!   attempt is the open.
//! - tracepoint mode: `io_uring_submit_req` (`io_uring_submit_sqe` before
//!   6.2) records the request, `io_uring_complete` ends it: timed from
//!   submission to completion, by request.
//! - both: `io_uring_req_failed`, a request that failed before it ran (its
//!   path could not be copied, bad flags): counted and streamed, untimed.
//!
//! The path: at the end the kernel has freed its copy. Where `struct
//! filename` keeps the user's pointer (up to 6.x) it is kept, as for a
//! syscall (in fentry mode a failure's path walk then replaces it with the
//! kernel's copy, as a syscall's: `kernel_path`); where it does not (7.x)
//! the kernel's copy is copied at the start into a `KERNEL_PATHS` slot.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::bpf_ktime_get_ns,
    },
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use exporter_common::{
    Config, Counters, FilenameOffsets, Loss, Stream, Syscall, CONFIG_UNTIMED, DIRFD_UNKNOWN, EVENT_FAILED,
    EVENT_UNTIMED, FIELD_ABSENT, INFLIGHT_CQE_SKIP, INFLIGHT_PATH_IN_KERNEL, IORING_OP_OPENAT, IORING_OP_OPENAT2,
    REQ_F_CQE_SKIP,
};

use crate::{
    args::{OpenArgs, OpenHow},
    counters::{count_loss, count_result, count_stream, counters},
    dir_walk::read_u64,
    kernel_path,
    maps::{CONFIG, URING_REQS},
    open::{enter, finish, take_entry, End},
    stream::{stream_anomaly, PathRead},
};

const EAGAIN: i64 = 11;

/// The open syscall-like kind of an io_uring opcode.
#[inline(always)]
fn syscall_of(opcode: u8) -> Option<Syscall> {
    match opcode {
        IORING_OP_OPENAT => Some(Syscall::IoUringOpenat),
        IORING_OP_OPENAT2 => Some(Syscall::IoUringOpenat2),
        _ => None,
    }
}

#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The config, when the request offsets were found.
#[inline(always)]
fn config() -> Option<&'static Config> {
    CONFIG.get(0).filter(|config| config.io_uring.valid != 0)
}

#[inline(always)]
fn timed(config: &Config) -> bool {
    config.flags & CONFIG_UNTIMED == 0
}

/// The path of the request's `struct filename *`: the user's pointer where
/// the kernel keeps it; else the kernel's copy, copied into a `KERNEL_PATHS`
/// slot owned by `key` (the slot's index in `path_ptr`, with
/// `INFLIGHT_PATH_IN_KERNEL`). `(0, 0)` when there is none.
#[inline(always)]
fn path_of(f: &FilenameOffsets, filename: u64, key: u64) -> (u64, u8) {
    if filename == 0 || f.valid == 0 {
        return (0, 0);
    }
    if f.uptr != FIELD_ABSENT {
        return (read_u64(filename + f.uptr as u64).unwrap_or(0), 0);
    }
    let Some(name) = read_u64(filename + f.name as u64) else { return (0, 0) };
    match kernel_path::copy(name, key) {
        Some(index) => (index, INFLIGHT_PATH_IN_KERNEL),
        None => (0, 0),
    }
}

/// An open request's arguments, from its `struct io_open` (its preparation
/// copied them there), and the `INFLIGHT_*` flags of its path.
#[inline(always)]
fn request_args(config: &Config, req: u64, syscall: Syscall, key: u64) -> (OpenArgs, u8) {
    let o = &config.io_uring;
    let open = req + o.req_open as u64;
    let dirfd = read::<i32>(open + o.open_dfd as u64).unwrap_or(DIRFD_UNKNOWN);
    let how = read::<OpenHow>(open + o.open_how as u64).unwrap_or(OpenHow::UNREADABLE);
    let filename = read_u64(open + o.open_filename as u64).unwrap_or(0);
    let (path_ptr, flags) = path_of(&config.filename, filename, key);
    (OpenArgs { syscall, dirfd, path_ptr, open_flags: how.flags, mode: how.mode as u32 }, flags)
}

// ---------------------------------------------------------------------------
// fentry mode: the issue of a request.
// ---------------------------------------------------------------------------

#[inline(always)]
fn issue_start(req: u64, opcode: u8) {
    let Some(config) = config() else { return };
    let o = &config.io_uring;
    let Some(syscall) = syscall_of(opcode) else { return };
    if read::<u8>(req + o.req_opcode as u64) != Some(opcode) {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let (args, flags) = request_args(config, req, syscall, tid as u64);
    enter(args, flags, timed(config));
}

/// The issue ends, returning `ret` (0, or -EAGAIN for "again, in a worker");
/// the request's result is then in `io_kiocb.cqe.res`.
#[inline(always)]
fn issue_end(req: u64, ret: i64, opcode: u8) {
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(config) = config() else { return };
    let o = &config.io_uring;
    let Some(syscall) = syscall_of(opcode) else { return };
    if read::<u8>(req + o.req_opcode as u64) != Some(opcode) {
        return;
    }
    let Some(c) = counters() else { return };
    let entry = take_entry(pid_tgid as u32);
    if ret == -EAGAIN {
        if entry.is_some() && timed(config) {
            count_stream(c, Stream::Retried);
        }
        return;
    }
    let result = read::<i32>(req + o.req_result as u64).unwrap_or(0) as i64;
    match entry {
        Some(mut entry) => {
            kernel_path::resolve(&mut entry, pid_tgid as u32 as u64);
            finish(c, config, &entry, pid_tgid, now, End::result(result), timed(config));
        }
        None => {
            // Its start was not seen (attached meanwhile, or skipped): counted,
            // and a failure streamed without its path (the kernel freed it).
            count_loss(c, Loss::ExitWithoutEnter);
            let (mut args, _) = request_args(config, req, syscall, 0);
            args.path_ptr = 0;
            count_and_stream_untimed(c, config, args, pid_tgid, now, result);
        }
    }
}

/// Counts an io_uring open seen only at its end and streams it if it failed.
#[inline(always)]
fn count_and_stream_untimed(c: &mut Counters, config: &Config, args: OpenArgs, pid_tgid: u64, now: u64, ret: i64) {
    count_result(c, args.syscall as usize, ret);
    if ret >= 0 {
        return;
    }
    let entry = args.into_inflight(now, pid_tgid as u32);
    stream_anomaly(c, config, &entry, pid_tgid, ret, 0, EVENT_FAILED | EVENT_UNTIMED, PathRead::NONE);
}

#[fentry(function = "io_openat")]
pub fn fentry_io_openat(ctx: FEntryContext) -> u32 {
    issue_start(ctx.arg(0), IORING_OP_OPENAT);
    0
}

/// io_openat's `int` return value, after its two arguments.
#[inline(always)]
fn issue_return(ctx: &FExitContext) -> i64 {
    ctx.arg::<u64>(2) as u32 as i32 as i64
}

#[fexit(function = "io_openat")]
pub fn fexit_io_openat(ctx: FExitContext) -> u32 {
    issue_end(ctx.arg(0), issue_return(&ctx), IORING_OP_OPENAT);
    0
}

#[fentry(function = "io_openat2")]
pub fn fentry_io_openat2(ctx: FEntryContext) -> u32 {
    issue_start(ctx.arg(0), IORING_OP_OPENAT2);
    0
}

#[fexit(function = "io_openat2")]
pub fn fexit_io_openat2(ctx: FExitContext) -> u32 {
    issue_end(ctx.arg(0), issue_return(&ctx), IORING_OP_OPENAT2);
    0
}

// ---------------------------------------------------------------------------
// Tracepoint mode: submission to completion, by request.
// ---------------------------------------------------------------------------

/// A field of a tracepoint record at an offset known only at load (tracefs).
#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// A request about to be tracked (or failed) may have left a stale entry: a
/// request with `IOSQE_CQE_SKIP_SUCCESS` that succeeded posted no completion.
/// It is counted now (as a success if it skipped its completion) and taken out.
#[inline(always)]
fn end_stale(c: &mut Counters, req: u64) {
    // SAFETY: a map value, copied before it is removed.
    let Some(stale) = (unsafe { URING_REQS.get(&req) }).copied() else { return };
    let _ = URING_REQS.remove(&req);
    if stale.flags & INFLIGHT_CQE_SKIP != 0 {
        count_result(c, stale.syscall as usize, 0);
    }
    count_loss(c, Loss::InflightStale);
}

#[tracepoint(category = "io_uring", name = "io_uring_submit_req")]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let Some(config) = config() else { return 0 };
    let o = &config.io_uring;
    let Some(syscall) = field::<u8>(&ctx, o.submit_opcode).and_then(syscall_of) else { return 0 };
    let (Some(req), Some(c)) = (field::<u64>(&ctx, o.submit_req), counters()) else { return 0 };
    end_stale(c, req);
    let (args, mut flags) = request_args(config, req, syscall, req);
    // The low half of `flags` on every kernel (u32 on 6.1, u64 later).
    if field::<u32>(&ctx, o.submit_flags).unwrap_or(0) as u64 & REQ_F_CQE_SKIP != 0 {
        flags |= INFLIGHT_CQE_SKIP;
    }
    let mut entry = args.into_inflight(unsafe { bpf_ktime_get_ns() }, bpf_get_current_pid_tgid() as u32);
    entry.flags = flags;
    if URING_REQS.insert(&req, &entry, 0).is_err() {
        count_loss(c, Loss::IoUringUntracked);
        return 0;
    }
    if timed(config) {
        count_stream(c, Stream::Entered);
    }
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let Some(config) = config() else { return 0 };
    let o = &config.io_uring;
    let Some(req) = field::<u64>(&ctx, o.complete_req) else { return 0 };
    // SAFETY: a map value, copied before it is removed.
    let Some(mut entry) = (unsafe { URING_REQS.get(&req) }).copied() else { return 0 };
    let _ = URING_REQS.remove(&req);
    let (Some(res), Some(c)) = (field::<i32>(&ctx, o.complete_res), counters()) else { return 0 };
    kernel_path::resolve(&mut entry, req);
    let now = unsafe { bpf_ktime_get_ns() };
    finish(c, config, &entry, bpf_get_current_pid_tgid(), now, End::result(res as i64), timed(config));
    0
}

/// Both modes: a request that failed before it ran. Its record carries the
/// submission's fields: the path pointer, openat's flags and mode, or
/// openat2's `struct open_how *`; not the dirfd.
#[tracepoint(category = "io_uring", name = "io_uring_req_failed")]
pub fn io_uring_req_failed(ctx: TracePointContext) -> u32 {
    let Some(config) = CONFIG.get(0).filter(|config| config.io_uring.records_valid != 0) else { return 0 };
    let o = &config.io_uring;
    let Some(syscall) = field::<u8>(&ctx, o.failed_opcode).and_then(syscall_of) else { return 0 };
    let (Some(error), Some(c)) = (field::<i32>(&ctx, o.failed_error), counters()) else { return 0 };
    if let Some(req) = field::<u64>(&ctx, o.failed_req) {
        end_stale(c, req);
    }
    let (open_flags, mode) = if syscall == Syscall::IoUringOpenat2 {
        let how = field::<u64>(&ctx, o.failed_off).unwrap_or(0);
        let how = unsafe { bpf_probe_read_user(how as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
        (how.flags, how.mode as u32)
    } else {
        (field::<u32>(&ctx, o.failed_op_flags).unwrap_or(0) as u64, field::<u32>(&ctx, o.failed_len).unwrap_or(0))
    };
    let args = OpenArgs {
        syscall,
        dirfd: DIRFD_UNKNOWN,
        path_ptr: field::<u64>(&ctx, o.failed_addr).unwrap_or(0),
        open_flags,
        mode,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    count_and_stream_untimed(c, config, args, bpf_get_current_pid_tgid(), now, error as i64);
    0
}

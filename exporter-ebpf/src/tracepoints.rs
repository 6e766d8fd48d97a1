//! Attach mode 1: syscall tracepoints (every kernel with BPF; adds the syscall
//! slow path to every syscall of every process while attached). One pair per
//! open syscall the architecture has: `open` and `creat` only on x86_64
//! (arm64's generic syscall table has only `openat` and `openat2`, so their
//! tracepoints do not exist there).

use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use exporter_common::{Syscall, AT_FDCWD};

#[cfg(bpf_target_arch = "x86_64")]
use crate::args::CREAT_FLAGS;
use crate::{
    arch::user_args,
    args::{OpenArgs, OpenHow},
    open::{on_enter, on_exit, on_exit_untimed},
};

// Offsets of the arguments in a syscall tracepoint record (after the 8-byte
// common header and the 8-byte syscall number slot).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const EXIT_RET: usize = 16;

/// A field of the tracepoint record, read directly: the verifier allows loads
/// from a tracepoint's context, which saves a probe-read helper call per
/// argument (`TracePointContext::read_at` makes one).
#[inline(always)]
fn arg<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: every offset used is inside the syscall tracepoint record and
    // aligned for its type (8-byte slots).
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}

#[cfg(bpf_target_arch = "x86_64")]
#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    on_enter(OpenArgs {
        syscall: Syscall::Open,
        dirfd: AT_FDCWD,
        path_ptr: arg(&ctx, ARG0),
        open_flags: arg(&ctx, ARG1),
        mode: arg::<u64>(&ctx, ARG2) as u32,
    });
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    on_enter(OpenArgs {
        syscall: Syscall::Openat,
        dirfd: arg::<u64>(&ctx, ARG0) as i32,
        path_ptr: arg(&ctx, ARG1),
        open_flags: arg(&ctx, ARG2),
        mode: arg::<u64>(&ctx, ARG3) as u32,
    });
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let how: u64 = arg(&ctx, ARG2);
    let how = unsafe { bpf_probe_read_user(how as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
    on_enter(OpenArgs {
        syscall: Syscall::Openat2,
        dirfd: arg::<u64>(&ctx, ARG0) as i32,
        path_ptr: arg(&ctx, ARG1),
        open_flags: how.flags,
        mode: how.mode as u32,
    });
    0
}

#[cfg(bpf_target_arch = "x86_64")]
#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    on_enter(OpenArgs {
        syscall: Syscall::Creat,
        dirfd: AT_FDCWD,
        path_ptr: arg(&ctx, ARG0),
        open_flags: CREAT_FLAGS,
        mode: arg::<u64>(&ctx, ARG1) as u32,
    });
    0
}

macro_rules! exit_tracepoint {
    ($fn_name:ident, $tp:literal, $syscall:expr) => {
        #[tracepoint(category = "syscalls", name = $tp)]
        pub fn $fn_name(ctx: TracePointContext) -> u32 {
            on_exit($syscall, arg(&ctx, EXIT_RET), crate::arch::registers_if_allowed);
            0
        }
    };
}

#[cfg(bpf_target_arch = "x86_64")]
exit_tracepoint!(sys_exit_open, "sys_exit_open", Syscall::Open);
exit_tracepoint!(sys_exit_openat, "sys_exit_openat", Syscall::Openat);
exit_tracepoint!(sys_exit_openat2, "sys_exit_openat2", Syscall::Openat2);
#[cfg(bpf_target_arch = "x86_64")]
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

#[cfg(bpf_target_arch = "x86_64")]
exit_untimed_tracepoint!(sys_exit_open_untimed, "sys_exit_open", Syscall::Open);
exit_untimed_tracepoint!(sys_exit_openat_untimed, "sys_exit_openat", Syscall::Openat);
exit_untimed_tracepoint!(sys_exit_openat2_untimed, "sys_exit_openat2", Syscall::Openat2);
#[cfg(bpf_target_arch = "x86_64")]
exit_untimed_tracepoint!(sys_exit_creat_untimed, "sys_exit_creat", Syscall::Creat);

//! Attach mode 2: fentry/fexit on `do_sys_openat2`, the function every open
//! syscall reaches (kernels that allow tracing programs; costs nothing on
//! other syscalls), and fexit on `do_filp_open`, its path walk, for the
//! kernel's copy of a failure's path.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use exporter_common::Syscall;

use crate::{
    arch::{current_syscall, user_args},
    args::function_args,
    kernel_path,
    open::{on_enter, on_exit, on_exit_untimed},
};

#[fentry(function = "do_sys_openat2")]
pub fn fentry_do_sys_openat2(ctx: FEntryContext) -> u32 {
    // The syscall's own arguments, read from the saved user registers, so both
    // attach modes report what the program passed: do_sys_openat2's `how` is a
    // kernel copy with O_LARGEFILE forced in, unknown flag bits masked and the
    // mode zeroed without O_CREAT.
    on_enter(user_args().unwrap_or_else(|| function_args(ctx.arg(0), ctx.arg(1), ctx.arg(2))));
    0
}

/// do_sys_openat2's return value, which follows its three arguments. Its type
/// is `long` on some kernels (6.12) and `int` on others (6.18, 7.x), where the
/// upper half of the register is garbage: 32 bits sign-extended are right for
/// both (an fd or -errno always fits).
#[inline(always)]
fn return_value(ctx: &FExitContext) -> i64 {
    ctx.arg::<u64>(3) as u32 as i32 as i64
}

#[fexit(function = "do_sys_openat2")]
pub fn fexit_do_sys_openat2(ctx: FExitContext) -> u32 {
    // Without an entry of its own, a failure is streamed with the arguments
    // as the fentry program would have read them.
    on_exit(current_syscall().unwrap_or(Syscall::Openat), return_value(&ctx), || {
        Some(user_args().unwrap_or_else(|| function_args(ctx.arg(0), ctx.arg(1), ctx.arg(2))))
    });
    0
}

/// `--no-timing` in the fentry mode: this program alone, no fentry.
#[fexit(function = "do_sys_openat2")]
pub fn fexit_do_sys_openat2_untimed(ctx: FExitContext) -> u32 {
    // The arguments only for a failure (openat2's cost a read of user memory).
    on_exit_untimed(current_syscall().unwrap_or(Syscall::Openat), return_value(&ctx), || {
        user_args().unwrap_or_else(|| function_args(ctx.arg(0), ctx.arg(1), ctx.arg(2)))
    });
    0
}

/// The end of an open's path walk, still inside the syscall (do_filp_open,
/// do_file_open in 7.x: userspace attaches it to the one the kernel has;
/// it returns a `struct file *` or an error pointer, after its three
/// arguments): a failed walk's path is copied from the kernel's own copy,
/// which do_sys_openat2 frees before its exit, so that the failure reports
/// the path the kernel walked, not what another thread of the process wrote
/// into its memory since. A successful walk costs this test alone (a slow
/// success's path is read from the process's memory at exit).
#[fexit(function = "do_filp_open")]
pub fn fexit_do_filp_open(ctx: FExitContext) -> u32 {
    let file = ctx.arg::<u64>(3) as i64;
    if (-4095..0).contains(&file) {
        kernel_path::take_for_failed_walk(ctx.arg(1), file);
    }
    0
}

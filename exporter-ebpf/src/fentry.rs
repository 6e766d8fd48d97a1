//! Attach mode 2: fentry/fexit on `do_sys_openat2`, the function every open
//! syscall reaches (kernels that allow tracing programs; costs nothing on
//! other syscalls).

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use exporter_common::Syscall;

use crate::{
    arch::{current_syscall, user_args},
    args::function_args,
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

//! Execs: a program that fails to start often fails at execve (a missing
//! binary or `#!` interpreter: ENOENT; EACCES; ENOEXEC), so failed execs are
//! counted and streamed as failures, like opens, under their own syscall. The
//! entry keeps the basename hash of the exec's path (in `Inflight::mode`):
//! once the exec succeeded its path is gone with the old program, and the
//! success must find the failures of a search through `PATH` (execvp).

use aya_ebpf::{
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
    EbpfContext,
};
use exporter_common::{Syscall, AT_FDCWD};

use crate::{
    arch::{registers_if_allowed, user_args},
    args::OpenArgs,
    found_later::{self, badfd_basename_hash},
    maps::CONFIG,
    open::{on_enter, on_exit, on_exit_untimed},
};

/// The exec's basename hash for its entry, 0 where the classification is off.
#[inline(always)]
fn name_hash(path_ptr: u64) -> u32 {
    match CONFIG.get(0) {
        Some(config) if found_later::enabled(config) => found_later::split(badfd_basename_hash(path_ptr, 0)).1,
        _ => 0,
    }
}

#[inline(always)]
fn enter(syscall: Syscall, dirfd: i32, path_ptr: u64, flags: u64) {
    on_enter(OpenArgs { syscall, dirfd, path_ptr, open_flags: flags, mode: name_hash(path_ptr) });
}

/// A field of the tracepoint record (8-byte slots after the 16-byte header).
#[inline(always)]
fn arg(ctx: &TracePointContext, slot: usize) -> u64 {
    // SAFETY: every slot used is inside the syscall tracepoint record.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(16 + 8 * slot).cast::<u64>()) }
}

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    enter(Syscall::Execve, AT_FDCWD, arg(&ctx, 0), 0);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    enter(Syscall::Execveat, arg(&ctx, 0) as i32, arg(&ctx, 1), arg(&ctx, 4));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execve")]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    on_exit(Syscall::Execve, arg(&ctx, 0) as i64, || registers_if_allowed().filter(|a| a.syscall == Syscall::Execve));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execveat")]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    on_exit(Syscall::Execveat, arg(&ctx, 0) as i64, || registers_if_allowed().filter(|a| a.syscall == Syscall::Execveat));
    0
}

/// `--no-timing`: the exits alone (a failure's arguments from the saved registers).
#[inline(always)]
fn exit_untimed(syscall: Syscall, ret: i64) {
    on_exit_untimed(syscall, ret, || {
        user_args().unwrap_or(OpenArgs { syscall, dirfd: AT_FDCWD, path_ptr: 0, open_flags: 0, mode: 0 })
    });
}

#[tracepoint(category = "syscalls", name = "sys_exit_execve")]
pub fn sys_exit_execve_untimed(ctx: TracePointContext) -> u32 {
    exit_untimed(Syscall::Execve, arg(&ctx, 0) as i64);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execveat")]
pub fn sys_exit_execveat_untimed(ctx: TracePointContext) -> u32 {
    exit_untimed(Syscall::Execveat, arg(&ctx, 0) as i64);
    0
}

// fentry mode: the syscall functions themselves (`__x64_sys_execve` and
// kin: the loader names the function of the architecture), which take the
// saved registers and return the syscall's result. Their arguments are read
// from the saved user registers, as for opens.

#[inline(always)]
fn fentry_enter(syscall: Syscall) {
    if let Some(a) = user_args().filter(|a| a.syscall == syscall) {
        enter(syscall, a.dirfd, a.path_ptr, a.open_flags);
    }
}

/// The syscall function's return value, which follows its one argument.
#[inline(always)]
fn fexit_ret(ctx: &FExitContext) -> i64 {
    ctx.arg::<u64>(1) as i64
}

#[fentry(function = "__x64_sys_execve")]
pub fn fentry_execve(_ctx: FEntryContext) -> u32 {
    fentry_enter(Syscall::Execve);
    0
}

#[fexit(function = "__x64_sys_execve")]
pub fn fexit_execve(ctx: FExitContext) -> u32 {
    on_exit(Syscall::Execve, fexit_ret(&ctx), || user_args().filter(|a| a.syscall == Syscall::Execve));
    0
}

#[fentry(function = "__x64_sys_execveat")]
pub fn fentry_execveat(_ctx: FEntryContext) -> u32 {
    fentry_enter(Syscall::Execveat);
    0
}

#[fexit(function = "__x64_sys_execveat")]
pub fn fexit_execveat(ctx: FExitContext) -> u32 {
    on_exit(Syscall::Execveat, fexit_ret(&ctx), || user_args().filter(|a| a.syscall == Syscall::Execveat));
    0
}

#[fexit(function = "__x64_sys_execve")]
pub fn fexit_execve_untimed(ctx: FExitContext) -> u32 {
    exit_untimed(Syscall::Execve, fexit_ret(&ctx));
    0
}

#[fexit(function = "__x64_sys_execveat")]
pub fn fexit_execveat_untimed(ctx: FExitContext) -> u32 {
    exit_untimed(Syscall::Execveat, fexit_ret(&ctx));
    0
}

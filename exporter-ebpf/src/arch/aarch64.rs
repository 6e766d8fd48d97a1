//! aarch64: `struct pt_regs` (arch/arm64/include/asm/ptrace.h) and the syscall
//! ABI: the number in `syscallno`, the arguments in x0-x5. The generic syscall
//! table has only `openat` and `openat2` of the four opens.

use aya_ebpf::helpers::{
    bpf_probe_read_user,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};
use exporter_common::{Syscall, AT_FDCWD};

use crate::args::{OpenArgs, OpenHow};

/// Word indexes in `struct pt_regs` (`regs[31], sp, pc, pstate, orig_x0`).
const REG_X1: usize = 1;
const REG_X2: usize = 2;
const REG_X3: usize = 3;
const REG_X4: usize = 4;
const REG_PSTATE: usize = 33;
/// x0 as it was at syscall entry: the kernel writes the return value into x0
/// (`regs[0]`) when the syscall returns, before the exit tracepoint runs.
const REG_ORIG_X0: usize = 34;
/// Byte offset of `s32 syscallno`, after `orig_x0` (-1, NO_SYSCALL, outside a
/// syscall). The field is 4 bytes: the verifier refuses a wider load of it.
const SYSCALLNO_OFFSET: usize = 35 * 8;
/// `pstate` bit of a task running AArch32 code (PSR_MODE32_BIT): its
/// syscalls are compat ones, numbered from another table.
const PSR_MODE32_BIT: u64 = 0x10;

/// The calling task's user registers, saved at syscall entry. Needs
/// bpf_task_pt_regs (Linux 5.15); on older kernels the programs that use it
/// fail to load and userspace falls back, saying why.
#[inline(always)]
fn user_regs() -> *const u64 {
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64 }
}

/// A word of the saved registers, loaded directly (bpf_task_pt_regs returns a
/// BTF-typed pointer the verifier lets tracing programs read).
#[inline(always)]
fn reg(regs: *const u64, word: usize) -> u64 {
    // SAFETY: `regs` is the kernel's `struct pt_regs` of the current task and
    // every `word` used is one of its u64 fields.
    unsafe { core::ptr::read_volatile(regs.wrapping_add(word)) }
}

/// The open syscall the task is in, from `pt_regs.syscallno`; `None` for any
/// other syscall and for an AArch32 task (compat syscalls are not decoded).
#[inline(always)]
fn syscall_of(regs: *const u64) -> Option<Syscall> {
    if reg(regs, REG_PSTATE) & PSR_MODE32_BIT != 0 {
        return None;
    }
    // SAFETY: `syscallno` is an s32 field of the same `struct pt_regs`.
    let nr = unsafe { core::ptr::read_volatile((regs as *const u8).wrapping_add(SYSCALLNO_OFFSET) as *const i32) };
    // Sign-extended: NO_SYSCALL (-1) becomes a number no table has.
    Syscall::from_aarch64_nr(nr as i64 as u64)
}

/// Which syscall reached the common function.
#[inline(always)]
pub fn current_syscall() -> Option<Syscall> {
    syscall_of(user_regs())
}

/// The syscall's own arguments, from the saved user registers (the same at
/// entry and at exit, the first one from `orig_x0`); `None` for a syscall that
/// is not one of arm64's opens or execs.
#[inline(always)]
pub fn user_args() -> Option<OpenArgs> {
    let regs = user_regs();
    let syscall = syscall_of(regs)?;
    match syscall {
        Syscall::Openat => Some(OpenArgs {
            syscall,
            dirfd: reg(regs, REG_ORIG_X0) as i32,
            path_ptr: reg(regs, REG_X1),
            open_flags: reg(regs, REG_X2),
            mode: reg(regs, REG_X3) as u32,
        }),
        Syscall::Openat2 => {
            let how = unsafe { bpf_probe_read_user(reg(regs, REG_X2) as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
            Some(OpenArgs {
                syscall,
                dirfd: reg(regs, REG_ORIG_X0) as i32,
                path_ptr: reg(regs, REG_X1),
                open_flags: how.flags,
                mode: how.mode as u32,
            })
        }
        // execve(path, argv, envp); execveat(dirfd, path, argv, envp, flags):
        // valid while the exec has not succeeded.
        Syscall::Execve => Some(OpenArgs { syscall, dirfd: AT_FDCWD, path_ptr: reg(regs, REG_ORIG_X0), open_flags: 0, mode: 0 }),
        Syscall::Execveat => Some(OpenArgs {
            syscall,
            dirfd: reg(regs, REG_ORIG_X0) as i32,
            path_ptr: reg(regs, REG_X1),
            open_flags: reg(regs, REG_X4),
            mode: 0,
        }),
        // Not in arm64's table (from_aarch64_nr never names them), not a
        // syscall (io_uring's opens, hooked elsewhere), or x86 only (ia32).
        _ => None,
    }
}

//! x86_64: `struct pt_regs` (arch/x86/include/asm/ptrace.h) and the syscall ABI.

use aya_ebpf::helpers::{
    bpf_probe_read_user,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};
use exporter_common::{Syscall, AT_FDCWD};

use super::x86_64_ia32 as ia32;
use crate::args::{OpenArgs, OpenHow, CREAT_FLAGS};

/// Word indexes in `struct pt_regs` of the registers the syscall ABI uses:
/// number and the first four arguments.
const REG_R10: usize = 7;
const REG_R8: usize = 9;
const REG_DX: usize = 12;
const REG_SI: usize = 13;
const REG_DI: usize = 14;
const REG_ORIG_AX: usize = 15;

/// The calling task's user registers, saved at syscall entry. Needs
/// bpf_task_pt_regs (Linux 5.15); on older kernels the programs that use it
/// fail to load and userspace falls back, saying why.
#[inline(always)]
pub(super) fn user_regs() -> *const u64 {
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64 }
}

/// A word of the saved registers, loaded directly: bpf_task_pt_regs returns a
/// BTF-typed pointer the verifier lets tracing programs read (it guards the
/// load itself), which saves a probe-read helper call per register.
#[inline(always)]
pub(super) fn reg(regs: *const u64, word: usize) -> u64 {
    // SAFETY: `regs` is the kernel's `struct pt_regs` of the current task and
    // every `word` used is one of its u64 fields.
    unsafe { core::ptr::read_volatile(regs.wrapping_add(word)) }
}

/// Which syscall reached the common function, from the syscall number saved in
/// `pt_regs.orig_ax` (a 32-bit process's own numbers included); `None` when it
/// was none of the opens.
#[inline(always)]
pub fn current_syscall() -> Option<Syscall> {
    let nr = reg(user_regs(), REG_ORIG_AX);
    ia32::syscall(nr).or_else(|| Syscall::from_x86_64_nr(nr))
}

/// The syscall's own arguments, from the saved user registers (the same at
/// entry and at exit: the kernel writes only the return register); `None` for
/// a syscall that is none of the x86_64 opens and execs (32-bit ones included).
#[inline(always)]
pub fn user_args() -> Option<OpenArgs> {
    let regs = user_regs();
    let nr = reg(regs, REG_ORIG_AX);
    if let Some(syscall) = ia32::syscall(nr) {
        return Some(ia32::args(regs, syscall));
    }
    let syscall = Syscall::from_x86_64_nr(nr)?;
    Some(match syscall {
        Syscall::Open => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg(regs, REG_DI),
            open_flags: reg(regs, REG_SI),
            mode: reg(regs, REG_DX) as u32,
        },
        Syscall::Openat => OpenArgs {
            syscall,
            dirfd: reg(regs, REG_DI) as i32,
            path_ptr: reg(regs, REG_SI),
            open_flags: reg(regs, REG_DX),
            mode: reg(regs, REG_R10) as u32,
        },
        Syscall::Openat2 => {
            let how = unsafe { bpf_probe_read_user(reg(regs, REG_DX) as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
            OpenArgs { syscall, dirfd: reg(regs, REG_DI) as i32, path_ptr: reg(regs, REG_SI), open_flags: how.flags, mode: how.mode as u32 }
        }
        Syscall::Creat => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg(regs, REG_DI),
            open_flags: CREAT_FLAGS,
            mode: reg(regs, REG_SI) as u32,
        },
        // execve(path, argv, envp); execveat(dirfd, path, argv, envp, flags).
        // Only valid while the exec has not succeeded (then they are the new
        // program's).
        Syscall::Execve => OpenArgs { syscall, dirfd: AT_FDCWD, path_ptr: reg(regs, REG_DI), open_flags: 0, mode: 0 },
        Syscall::Execveat => OpenArgs {
            syscall,
            dirfd: reg(regs, REG_DI) as i32,
            path_ptr: reg(regs, REG_SI),
            open_flags: reg(regs, REG_R8),
            mode: 0,
        },
        // from_x86_64_nr gives none of the others.
        _ => return None,
    })
}

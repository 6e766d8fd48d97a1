//! 32-bit (ia32) processes on x86_64: their open syscalls have numbers and an
//! argument layout of their own (arch/x86/entry/syscalls/syscall_32.tbl: open
//! 5, creat 8, openat 295, openat2 437; arguments in bx, cx, dx, si, 32 bits
//! wide). They reach the same common open function as 64-bit ones.

use aya_ebpf::helpers::{bpf_probe_read_user, generated::bpf_get_current_task};
use exporter_common::{Syscall, AT_FDCWD, TS_COMPAT};

use super::x86_64::reg;
use crate::{
    args::{OpenArgs, OpenHow, CREAT_FLAGS},
    dir_walk::read_u32,
    maps::CONFIG,
};

/// Word indexes in `struct pt_regs` of the ia32 argument registers.
const REG_BX: usize = 5;
const REG_CX: usize = 11;
const REG_DX: usize = 12;
const REG_SI: usize = 13;

const IA32_OPEN: u64 = 5;
const IA32_CREAT: u64 = 8;
const IA32_OPENAT: u64 = 295;
/// The same number as x86_64's openat2.
const IA32_OPENAT2: u64 = 437;

/// Whether the current task runs a 32-bit syscall (`TS_COMPAT` in its
/// `thread_info.status`, at the offset userspace found in BTF).
#[inline(always)]
fn in_ia32_syscall() -> bool {
    let Some(config) = CONFIG.get(0) else { return false };
    let o = &config.task;
    if o.compat_valid == 0 {
        return false;
    }
    let task = unsafe { bpf_get_current_task() };
    read_u32(task + o.thread_status as u64).is_some_and(|status| status & TS_COMPAT != 0)
}

/// The ia32 open syscall numbered `nr` in a task's saved registers, if it is
/// one. 5, 8 and 295 reach the open path only from 32-bit syscalls (x86_64's
/// fstat, lseek and preadv open nothing), so only 437, which both ABIs share,
/// costs a look at the task's status: a 64-bit open pays a few compares.
#[inline(always)]
pub fn syscall(nr: u64) -> Option<Syscall> {
    match nr {
        IA32_OPEN => Some(Syscall::Ia32Open),
        IA32_CREAT => Some(Syscall::Ia32Creat),
        IA32_OPENAT => Some(Syscall::Ia32Openat),
        IA32_OPENAT2 if in_ia32_syscall() => Some(Syscall::Ia32Openat2),
        _ => None,
    }
}

/// A 32-bit register: the upper half of the saved one is not the process's.
#[inline(always)]
fn reg32(regs: *const u64, word: usize) -> u32 {
    reg(regs, word) as u32
}

/// The arguments of the ia32 open `syscall` (one `syscall` returned).
#[inline(always)]
pub fn args(regs: *const u64, syscall: Syscall) -> OpenArgs {
    match syscall {
        Syscall::Ia32Open => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg32(regs, REG_BX) as u64,
            open_flags: reg32(regs, REG_CX) as u64,
            mode: reg32(regs, REG_DX),
        },
        Syscall::Ia32Creat => OpenArgs {
            syscall,
            dirfd: AT_FDCWD,
            path_ptr: reg32(regs, REG_BX) as u64,
            open_flags: CREAT_FLAGS,
            mode: reg32(regs, REG_CX),
        },
        Syscall::Ia32Openat2 => {
            let how = reg32(regs, REG_DX) as u64;
            let how = unsafe { bpf_probe_read_user(how as *const OpenHow) }.unwrap_or(OpenHow::UNREADABLE);
            OpenArgs {
                syscall,
                dirfd: reg32(regs, REG_BX) as i32,
                path_ptr: reg32(regs, REG_CX) as u64,
                open_flags: how.flags,
                mode: how.mode as u32,
            }
        }
        _ => OpenArgs {
            syscall: Syscall::Ia32Openat,
            dirfd: reg32(regs, REG_BX) as i32,
            path_ptr: reg32(regs, REG_CX) as u64,
            open_flags: reg32(regs, REG_DX) as u64,
            mode: reg32(regs, REG_SI),
        },
    }
}

//! The calling task's saved user registers: which open syscall it made and
//! with which arguments. Only the register layout and the syscall numbers
//! differ between architectures (and, on x86_64, between 64-bit and 32-bit
//! processes); each module gives the same two functions:
//!
//! - `current_syscall()`: the open syscall the task is in, `None` for any
//!   other (x86_64 decodes 32-bit ia32 syscalls as their own `Ia32*`; aarch64
//!   does not decode AArch32 tasks' syscalls);
//! - `user_args()`: that syscall's arguments as the program passed them.
//!
//! aya-build passes `--cfg bpf_target_arch="<arch>"`, the architecture the
//! userspace side is built for, so each build gets its own.

#[cfg(bpf_target_arch = "x86_64")]
mod x86_64;
#[cfg(bpf_target_arch = "x86_64")]
mod x86_64_ia32;
#[cfg(bpf_target_arch = "x86_64")]
pub use x86_64::{current_syscall, user_args};

#[cfg(bpf_target_arch = "aarch64")]
mod aarch64;
#[cfg(bpf_target_arch = "aarch64")]
pub use aarch64::{current_syscall, user_args};

// Any other architecture: badfd refuses to start there (exporter/src/probe/
// preflight.rs) before it loads anything, so these never run; they let the
// object build, so that the refusal is one clear line at start.
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
mod unsupported {
    use crate::args::OpenArgs;
    use exporter_common::Syscall;

    #[inline(always)]
    pub fn current_syscall() -> Option<Syscall> {
        None
    }

    #[inline(always)]
    pub fn user_args() -> Option<OpenArgs> {
        None
    }
}
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
pub use unsupported::{current_syscall, user_args};

/// The arguments of a failed open whose entry is missing, from the saved
/// user registers where the kernel lets a tracepoint program read them
/// (frozen `TASK_PT_REGS`, Linux 5.15): older kernels count the failure
/// unstreamed.
#[inline(always)]
pub fn registers_if_allowed() -> Option<crate::args::OpenArgs> {
    if crate::maps::frozen(&crate::maps::TASK_PT_REGS) == 0 {
        return None;
    }
    user_args()
}

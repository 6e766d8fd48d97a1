//! The calling task's saved user registers: which open syscall it made and
//! with which arguments. Only the register layout and the syscall numbers
//! differ between architectures; each module gives the same two functions:
//!
//! - `current_syscall()`: the open syscall the task is in, `None` for any
//!   other (or for a 32-bit compat syscall, which no module decodes yet);
//! - `user_args()`: that syscall's arguments as the program passed them.
//!
//! aya-build passes `--cfg bpf_target_arch="<arch>"`, the architecture the
//! userspace side is built for, so each build gets its own.

#[cfg(bpf_target_arch = "x86_64")]
mod x86_64;
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

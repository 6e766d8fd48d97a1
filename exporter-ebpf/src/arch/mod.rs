//! The calling task's saved user registers: which open syscall it made and
//! with which arguments. Only the register layout and the syscall numbers
//! differ between architectures (and, on x86_64, between 64-bit and 32-bit
//! processes).

mod x86_64;
mod x86_64_ia32;
pub use x86_64::{current_syscall, user_args};

//! The calling task's saved user registers: which open syscall it made and
//! with which arguments. Only the register layout and the syscall numbers
//! differ between architectures.

mod x86_64;
pub use x86_64::{current_syscall, user_args};

//! badfd: failing and slow file opens, from eBPF.
//!
//! The library holds everything the `badfd` binary and the kernel tests share:
//! loading the probe, decoding events, errno names.

pub mod btf_offsets;
pub mod containers;
pub mod errno;
pub mod event;
pub mod preflight;
pub mod probe;
pub mod render;
pub mod resolve;

pub use event::{KernelDir, OpenEvent};
pub use probe::{AttachMode, AttachPreference, Probe, ProbeOptions};

//! badfd: failing and slow file opens, from eBPF.
//!
//! The library holds everything the `badfd` binary and the kernel tests share:
//! loading the probe, decoding events, errno names.

pub mod config;
pub mod containers;
pub mod errno;
pub mod event;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod pipeline;
pub mod otlp;
pub mod privileges;
pub mod probe;
pub mod redact;
pub mod render;
pub mod resolve;
pub mod web_config;

pub use event::{KernelDir, OpenEvent};
pub use probe::preflight;
pub use probe::{AttachMode, AttachPreference, Probe, ProbeOptions};

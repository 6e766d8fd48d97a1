//! badfd: failing and slow file opens, from eBPF.
//!
//! The layers, in the order an event goes through them (docs/architecture.md
//! follows one failing open through the files):
//!
//! - [`probe`]: loads and attaches the kernel programs (`exporter-ebpf`), owns
//!   the maps and the ring buffer the events arrive in;
//! - [`pipeline`]: the one path of an event in userspace: decode, resolve,
//!   redact, label, container, wall time, record id; then the sinks;
//! - [`sinks`]: where anomalies go: the Prometheus metrics, OTLP log records,
//!   the terminal of `badfd trace`;
//! - [`server`]: the HTTP endpoints of `badfd serve`, TLS and basic auth;
//! - [`config`]: every flag, the config file, the validated settings; the
//!   rest of the library takes the plain structs it makes.
//!
//! [`privileges`] drops capabilities after attaching; [`errno`] names errnos;
//! [`logging`] writes badfd's own log (logfmt or JSON).

pub mod config;
pub mod errno;
pub mod logging;
pub mod pipeline;
pub mod privileges;
pub mod probe;
pub mod server;
pub mod sinks;

pub use pipeline::event::{KernelDir, OpenEvent};
pub use probe::preflight;
pub use probe::{AttachMode, AttachPreference, Probe, ProbeOptions};

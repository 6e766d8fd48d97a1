//! The `badfd` subcommands, one module each.

use badfd::AttachPreference;
use clap::Args;

pub mod serve;
pub mod trace;

/// Flags every subcommand that loads the probe shares.
#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    /// fentry/fexit where the kernel allows it, else syscall tracepoints.
    #[arg(long, value_enum, default_value_t = AttachPreference::Auto, env = "BADFD_ATTACH")]
    pub attach: AttachPreference,
    /// Size of the kernel-to-user ring buffer in bytes (rounded up to a power of two).
    #[arg(long, default_value_t = exporter_common::DEFAULT_RINGBUF_BYTES, env = "BADFD_RINGBUF_BYTES")]
    pub ringbuf_bytes: u32,
}

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
    /// Anomalies per second each process may stream once the ring buffer is
    /// half full (after a burst of one second's worth), so that a noisy process
    /// cannot starve the others; the excess is counted as
    /// badfd_kernel_events_lost_total{reason="source_throttled"}. 0: no limit.
    #[arg(long, default_value_t = exporter_common::DEFAULT_SOURCE_RATE, env = "BADFD_SOURCE_RATE")]
    pub source_rate: u32,
}

impl ProbeArgs {
    /// The kernel config with these flags' settings applied.
    pub fn apply(&self, mut config: exporter_common::Config) -> exporter_common::Config {
        (config.source_interval_ns, config.source_burst_ns) = exporter_common::source_limit(self.source_rate);
        config
    }
}

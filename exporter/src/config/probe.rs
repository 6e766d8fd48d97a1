//! The flags of every subcommand that loads the probe, and the
//! [`ProbeOptions`] they make with the kernel settings of that command.

use clap::Args;

use super::kernel::KernelSettings;
use crate::probe::{ringbuf_size, AttachPreference, ProbeOptions};

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
    /// (`serve`: also the config key `source_rate`, re-read on SIGHUP.) [default: 1000]
    #[arg(long, env = "BADFD_SOURCE_RATE")]
    pub source_rate: Option<u32>,
    /// Do not time opens: hook only the syscall exit, which about halves what
    /// badfd adds to every open (and, with tracepoints, to every other
    /// syscall). Failures are still counted exactly and streamed; there is no
    /// latency histogram, no slow open and no in-flight gauge. Needs Linux
    /// 5.15; older kernels time opens as usual, saying why.
    #[arg(long, env = "BADFD_NO_TIMING", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub no_timing: bool,
}

impl ProbeArgs {
    /// Anomalies per second per process: the flag, else the file's, else the default.
    pub fn source_rate(&self, file_source_rate: Option<u32>) -> u32 {
        self.source_rate.or(file_source_rate).unwrap_or(exporter_common::DEFAULT_SOURCE_RATE)
    }

    /// The probe's load options: these flags, the command's kernel settings,
    /// and whether forks are followed (`trace -- COMMAND`).
    pub fn options(&self, kernel: &KernelSettings, follow_forks: bool) -> ProbeOptions {
        ProbeOptions {
            attach: self.attach,
            ringbuf_bytes: ringbuf_size(self.ringbuf_bytes),
            follow_forks,
            timing: !self.no_timing,
            config: kernel.config(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag wins over the config file, which wins over the default; the
    /// rate reaches the kernel config as its interval and burst.
    #[test]
    fn source_rate_precedence() {
        let args = |rate| ProbeArgs { attach: AttachPreference::Auto, ringbuf_bytes: 1 << 20, source_rate: rate, no_timing: false };
        assert_eq!(args(None).source_rate(None), exporter_common::DEFAULT_SOURCE_RATE);
        assert_eq!(args(None).source_rate(Some(50)), 50);
        assert_eq!(args(Some(7)).source_rate(Some(50)), 7);
        let kernel = |rate| KernelSettings { source_rate: rate, ..KernelSettings::default() };
        let config = args(None).options(&kernel(args(None).source_rate(Some(50))), false).config;
        assert_eq!((config.source_interval_ns, config.source_burst_ns), exporter_common::source_limit(50));
        let off = args(Some(0)).options(&kernel(args(Some(0)).source_rate(Some(50))), false).config;
        assert_eq!(off.source_interval_ns, 0, "0 turns the limit off");
    }
}

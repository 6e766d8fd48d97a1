//! The one builder of the kernel's [`Config`]: `serve` (flags, file, reloads)
//! and `trace` (its flags) each say what the kernel is to decide as a
//! [`KernelSettings`], and only [`KernelSettings::config`] turns that into the
//! struct the programs read.

use std::time::Duration;

use exporter_common::{
    Config, CONFIG_FAILURES_ONLY, CONFIG_FOUND_NOTICES, CONFIG_STREAM_EXECS, CONFIG_STREAM_OPENS, CONFIG_TRACKED_ONLY, FILTER_ANY, SLOW_DISABLED,
    TASK_COMM_LEN,
};

use crate::probe::CgroupFilterMode;

/// What the kernel decides for every open: which anomalies it streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSettings {
    /// An open at least this slow is an anomaly; `None`: slow reporting off.
    pub slow_threshold: Option<Duration>,
    /// Stream failed opens only (slow successful ones are still counted).
    pub failures_only: bool,
    /// Stream only the processes in the tracked set (`trace -- COMMAND`).
    pub tracked_only: bool,
    pub filter_pid: Option<u32>,
    pub filter_uid: Option<u32>,
    /// The command name as the kernel keeps it: NUL-padded, at most 15 bytes.
    pub filter_comm: Option<[u8; TASK_COMM_LEN]>,
    /// How the cgroup map (filled separately, `Probe::add_cgroup`) applies.
    pub cgroup_filter: CgroupFilterMode,
    /// Anomalies per second each process may stream once the ring buffer is
    /// half full; 0: no limit.
    pub source_rate: u32,
    /// A failure is found later when its process opens the same basename
    /// successfully within this long; zero turns the classification off (and
    /// failed execs are then counted, not streamed: a shell's PATH search
    /// would be all of them).
    pub found_later_window: Duration,
    /// Stream successful opens too (`trace --all`), within the filters.
    pub stream_opens: bool,
}

impl Default for KernelSettings {
    fn default() -> Self {
        KernelSettings {
            slow_threshold: Some(Duration::from_millis(10)),
            failures_only: false,
            tracked_only: false,
            filter_pid: None,
            filter_uid: None,
            filter_comm: None,
            cgroup_filter: CgroupFilterMode::Off,
            source_rate: exporter_common::DEFAULT_SOURCE_RATE,
            found_later_window: DEFAULT_FOUND_LATER_WINDOW,
            stream_opens: false,
        }
    }
}

impl KernelSettings {
    /// The kernel's config. The fields the loader fills itself (struct
    /// offsets, the fork offset) keep their defaults.
    pub fn config(&self) -> Config {
        let mut c = Config::DEFAULT;
        c.slow_threshold_ns = slow_threshold_ns(self.slow_threshold);
        if self.failures_only {
            c.flags |= CONFIG_FAILURES_ONLY;
        }
        if self.tracked_only {
            c.flags |= CONFIG_TRACKED_ONLY;
        }
        if self.stream_opens {
            c.flags |= CONFIG_STREAM_OPENS;
        }
        c.filter_pid = self.filter_pid.unwrap_or(FILTER_ANY);
        c.filter_uid = self.filter_uid.unwrap_or(FILTER_ANY);
        if let Some(comm) = self.filter_comm {
            c.filter_comm = comm;
        }
        c.cgroup_filter = self.cgroup_filter.to_kernel();
        (c.source_interval_ns, c.source_burst_ns) = exporter_common::source_limit(self.source_rate);
        let window_ns = self.found_later_window_ns();
        c.found_later_window_ns = window_ns;
        c.found_later_epoch_ns = window_ns;
        if window_ns != 0 {
            // The pipeline decides each streamed failure from the notices,
            // and a failed exec is a failure like an open.
            c.flags |= CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS;
        }
        c
    }

    /// The window in ns, as the kernel and the pipeline's found-later stage take it.
    pub fn found_later_window_ns(&self) -> u64 {
        self.found_later_window.as_nanos().min(MAX_FOUND_LATER_WINDOW.as_nanos()) as u64
    }
}

/// The found-later window unless one is given.
pub const DEFAULT_FOUND_LATER_WINDOW: Duration = Duration::from_secs(1);
/// The longest window: a failure waits this long for its verdict in every view.
pub const MAX_FOUND_LATER_WINDOW: Duration = Duration::from_secs(60);

/// The kernel's slow threshold in ns: `None` or zero turn slow reporting off;
/// `u64::MAX` itself means off to the kernel, so a longer duration stops below it.
pub fn slow_threshold_ns(threshold: Option<Duration>) -> u64 {
    match threshold {
        Some(d) if !d.is_zero() => d.as_nanos().min(u64::MAX as u128 - 1) as u64,
        _ => SLOW_DISABLED,
    }
}

#[cfg(test)]
mod tests {
    use exporter_common::{CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH};

    use super::*;

    #[test]
    fn every_setting_reaches_the_kernel_config() {
        let off = KernelSettings { slow_threshold: None, ..KernelSettings::default() }.config();
        assert_eq!(off.slow_threshold_ns, SLOW_DISABLED);
        assert_eq!(off.flags, Config::DEFAULT.flags | CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS, "the default window classifies");
        assert_eq!((off.filter_pid, off.filter_uid, off.cgroup_filter), (FILTER_ANY, FILTER_ANY, CGROUP_FILTER_OFF));
        assert_eq!(slow_threshold_ns(Some(Duration::ZERO)), SLOW_DISABLED, "zero is off");
        assert_eq!(slow_threshold_ns(Some(Duration::MAX)), u64::MAX - 1);

        let mut comm = [0u8; TASK_COMM_LEN];
        comm[..3].copy_from_slice(b"cat");
        let all = KernelSettings {
            slow_threshold: Some(Duration::from_millis(50)),
            failures_only: true,
            tracked_only: true,
            filter_pid: Some(7),
            filter_uid: Some(1000),
            filter_comm: Some(comm),
            cgroup_filter: CgroupFilterMode::Watch,
            source_rate: 50,
            found_later_window: Duration::from_millis(300),
            stream_opens: true,
        }
        .config();
        assert_eq!(all.flags & CONFIG_STREAM_OPENS, CONFIG_STREAM_OPENS);
        assert_eq!(off.flags & CONFIG_STREAM_OPENS, 0, "successful opens are not streamed unless asked");
        assert_eq!((all.found_later_window_ns, all.found_later_epoch_ns), (300_000_000, 300_000_000));
        assert_eq!(all.flags & (CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS), CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS);
        let unclassified = KernelSettings { found_later_window: Duration::ZERO, ..KernelSettings::default() }.config();
        assert_eq!((unclassified.found_later_window_ns, unclassified.flags & (CONFIG_FOUND_NOTICES | CONFIG_STREAM_EXECS)), (0, 0));
        assert_eq!(all.slow_threshold_ns, 50_000_000);
        assert_eq!(all.flags & (CONFIG_FAILURES_ONLY | CONFIG_TRACKED_ONLY), CONFIG_FAILURES_ONLY | CONFIG_TRACKED_ONLY);
        assert_eq!((all.filter_pid, all.filter_uid, all.filter_comm, all.cgroup_filter), (7, 1000, comm, CGROUP_FILTER_WATCH));
        assert_eq!((all.source_interval_ns, all.source_burst_ns), exporter_common::source_limit(50));
        let unlimited = KernelSettings { source_rate: 0, ..KernelSettings::default() }.config();
        assert_eq!(unlimited.source_interval_ns, 0, "0 turns the limit off");
    }
}

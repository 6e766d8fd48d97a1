//! The standard `process_*` metrics of the exporter's own process, named as
//! the Go and Python clients name them (so that the usual dashboards and
//! alerts on exporters work unchanged), read from /proc/self at each scrape.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`.
/// Registered in the unprefixed registry (no `badfd_`). A value that cannot
/// be read is left out of the scrape, and said once at debug level.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What /proc/self says, at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// From the text of /proc/PID/stat and the boot time (`btime` of
    /// /proc/stat), with the clock tick and page size of this host.
    pub fn parse(stat: &str, boot_time_seconds: u64, ticks_per_second: u64, page_size: u64) -> Option<ProcessStats> {
        // The command name (field 2) is in parentheses and may hold spaces
        // and parentheses: the fields after it start after the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3 (state): field N is fields[N - 3].
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = ticks_per_second as f64;
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            start_time_seconds: boot_time_seconds as f64 + field(22)? as f64 / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page_size,
        })
    }

    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        // SAFETY: sysconf only reads configuration values.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        ProcessStats::parse(&stat, btime, u64::try_from(ticks).ok()?, u64::try_from(page).ok()?)
    }
}

/// Entries of /proc/self/fd: the open file descriptors (the one this count
/// opens to read the directory included, as the Go client counts it).
fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft and hard limits of a row of /proc/self/limits ("unlimited" as
/// `u64::MAX`, which the exposition shows as a large number as Go does).
fn limit(limits: &str, row: &str) -> Option<(u64, u64)> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(row))?;
    let mut values = rest.split_whitespace().map(|v| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() });
    Some((values.next()??, values.next()??))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64| -> std::fmt::Result {
            encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)
        };
        if let Some(s) = ProcessStats::read() {
            encoder
                .encode_descriptor("process_cpu_seconds", "Total user and system CPU time spent in seconds.", None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, f64, u64>(&s.cpu_seconds, None)?;
            gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory size in bytes.", s.resident_bytes as f64)?;
            gauge(&mut encoder, "process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtual_bytes as f64)?;
            gauge(&mut encoder, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", s.start_time_seconds)?;
        } else {
            tracing::debug!("reading /proc/self/stat failed: no process_cpu_seconds_total or memory metrics in this scrape");
        }
        if let Some(n) = open_fds() {
            gauge(&mut encoder, "process_open_fds", "Number of open file descriptors.", n as f64)?;
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some((soft, _)) = limit(&limits, "Max open files") {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors.", soft as f64)?;
        }
        if let Some((soft, _)) = limit(&limits, "Max address space") {
            gauge(&mut encoder, "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", soft as f64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        // Fields 14/15 utime/stime, 22 starttime, 23 vsize, 24 rss (pages).
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 300 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = ProcessStats::parse(stat, 1_700_000_000, 100, 4096).unwrap();
        assert_eq!(s, ProcessStats { cpu_seconds: 3.0, resident_bytes: 300 * 4096, virtual_bytes: 123_456_789, start_time_seconds: 1_700_000_010.0 });
        assert_eq!(ProcessStats::parse("4242 (truncated", 0, 100, 4096), None);
    }

    #[test]
    fn reads_limits_rows() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         unlimited            unlimited            bytes     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(limit(limits, "Max open files"), Some((1024, 524288)));
        assert_eq!(limit(limits, "Max address space"), Some((u64::MAX, u64::MAX)));
        assert_eq!(limit(limits, "Max processes"), None);
    }

    /// This process, as the collector sees it: the figures of the test
    /// process itself, within what can move between two reads.
    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().expect("/proc/self/stat");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86400.0 * 365.0, "{s:?}");
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes, "{s:?}");
        let fds = open_fds().unwrap();
        assert!(fds >= 3, "stdin, stdout, stderr at least: {fds}");
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ", "process_start_time_seconds "] {
            assert!(text.contains(&format!("\n{name}")) || text.starts_with(name), "{name} in {text}");
        }
    }
}

//! The summary `badfd trace` prints when it ends: anomalies by errno, the
//! paths seen most, latency quantiles of slow opens, and what was lost.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use exporter_common::{Loss, LOSS_COUNT};
use hdrhistogram::Histogram;

use super::text;
use crate::{errno, pipeline::Anomaly};

/// Distinct paths counted for "top paths"; beyond it new paths are counted
/// as not ranked, so a long trace of a busy host keeps bounded memory.
pub const PATHS_TRACKED: usize = 10_000;
/// Paths listed in the summary.
pub const TOP_PATHS: usize = 10;
/// Highest latency the histogram records exactly (longer ones are clamped).
const LATENCY_MAX_NS: u64 = 3_600 * 1_000_000_000;

#[derive(Debug)]
pub struct Summary {
    pub anomalies: u64,
    /// Successful opens shown because every open was asked for (`--all`):
    /// not anomalies, not ranked.
    pub opened: u64,
    pub failed: u64,
    pub slow: u64,
    pub by_errno: BTreeMap<i32, u64>,
    paths: HashMap<Vec<u8>, u64>,
    /// Anomalies whose path arrived after `PATHS_TRACKED` distinct paths.
    pub paths_not_ranked: u64,
    /// Latencies of slow opens, ns, 3 significant digits.
    slow_latency: Histogram<u64>,
    /// Anomalies the userspace filters (--errno, --path-prefix) hid.
    pub hidden_by_filters: u64,
    /// Events that could not be decoded (a kernel/user mismatch).
    pub undecodable: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

impl Summary {
    pub fn new() -> Summary {
        Summary {
            anomalies: 0,
            opened: 0,
            failed: 0,
            slow: 0,
            by_errno: BTreeMap::new(),
            paths: HashMap::new(),
            paths_not_ranked: 0,
            slow_latency: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds"),
            hidden_by_filters: 0,
            undecodable: 0,
        }
    }

    /// Counts an anomaly that was shown.
    pub fn record(&mut self, a: &Anomaly) {
        let e = &a.event;
        if !e.failed() && !e.slow() {
            self.opened += 1;
            return;
        }
        self.anomalies += 1;
        if let Some(errno) = e.errno() {
            self.failed += 1;
            *self.by_errno.entry(errno).or_insert(0) += 1;
        }
        if e.slow() {
            self.slow += 1;
            self.slow_latency.saturating_record(e.latency_ns.clamp(1, LATENCY_MAX_NS));
        }
        if let Some(n) = self.paths.get_mut(&a.resolved.path) {
            *n += 1;
        } else if self.paths.len() < PATHS_TRACKED {
            self.paths.insert(a.resolved.path.clone(), 1);
        } else {
            self.paths_not_ranked += 1;
        }
    }

    /// The most frequent paths, most first, ties by path.
    pub fn top_paths(&self, n: usize) -> Vec<(&[u8], u64)> {
        let mut v: Vec<(&[u8], u64)> = self.paths.iter().map(|(p, &c)| (p.as_slice(), c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// The latency at quantile `q` (0..=1) of slow opens, ns.
    pub fn slow_quantile_ns(&self, q: f64) -> Option<u64> {
        (!self.slow_latency.is_empty()).then(|| self.slow_latency.value_at_quantile(q))
    }

    /// The summary text, lines ending in `\n`. `losses` are the kernel's loss
    /// counters (host-wide, since attach); only non-zero ones are shown. Paths
    /// are elided at the front to `path_width` columns when given.
    pub fn render(&self, elapsed: Duration, losses: &[u64; LOSS_COUNT], path_width: Option<usize>) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "badfd trace: {} anomalies ({} failed, {} slow) in {:.1}s\n",
            self.anomalies,
            self.failed,
            self.slow,
            elapsed.as_secs_f64()
        ));
        if self.opened > 0 {
            out.push_str(&format!("successful opens shown (--all): {}\n", self.opened));
        }
        if !self.by_errno.is_empty() {
            out.push_str("by errno:\n");
            let mut by_count: Vec<(i32, u64)> = self.by_errno.iter().map(|(&e, &n)| (e, n)).collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (e, n) in by_count {
                out.push_str(&format!("  {:<15} {n:>8}  {}\n", errno::name(e), errno::meaning(e)));
            }
        }
        let top = self.top_paths(TOP_PATHS);
        if !top.is_empty() {
            out.push_str("top paths:\n");
            for (path, n) in top {
                let path = text::escape_for_terminal(path);
                let path = match path_width {
                    Some(w) => text::elide_front(&path, w),
                    None => path,
                };
                out.push_str(&format!("  {n:>8}  {path}\n"));
            }
            if self.paths_not_ranked > 0 {
                out.push_str(&format!(
                    "  ({} anomalies on paths beyond the first {PATHS_TRACKED} distinct ones were not ranked)\n",
                    self.paths_not_ranked
                ));
            }
        }
        if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
            self.slow_quantile_ns(0.5),
            self.slow_quantile_ns(0.9),
            self.slow_quantile_ns(0.99),
            self.slow_quantile_ns(1.0),
        ) {
            out.push_str(&format!(
                "slow opens: {} (p50 {}, p90 {}, p99 {}, max {})\n",
                self.slow,
                text::human_latency(p50),
                text::human_latency(p90),
                text::human_latency(p99),
                text::human_latency(max)
            ));
        }
        if self.hidden_by_filters > 0 {
            out.push_str(&format!("hidden by --errno/--path-prefix: {}\n", self.hidden_by_filters));
        }
        if self.undecodable > 0 {
            out.push_str(&format!("undecodable events: {}\n", self.undecodable));
        }
        let lost: Vec<String> = Loss::ALL
            .iter()
            .filter(|&&l| losses[l as usize] > 0)
            .map(|&l| format!("{} {}", l.name(), losses[l as usize]))
            .collect();
        if !lost.is_empty() {
            out.push_str(&format!("kernel losses (whole host, since attach): {}\n", lost.join(", ")));
            if losses[Loss::RingbufFull as usize] > 0 {
                out.push_str("  ring buffer full: anomalies were dropped; a larger --ringbuf-bytes or narrower filters help\n");
            }
            if losses[Loss::ExitWithoutEnter as usize] > 0 {
                out.push_str("  exit without enter: opens already in progress when badfd attached (not timed)\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::terminal::tests::anomaly;

    #[test]
    fn counts_by_errno_paths_and_slow_quantiles() {
        let mut s = Summary::new();
        for _ in 0..3 {
            s.record(&anomaly(b"/etc/missing", -2, 1_000, false));
        }
        s.record(&anomaly(b"/etc/secret", -13, 1_000, false));
        s.record(&anomaly(b"/tmp/fifo", 3, 250_000_000, true));
        s.record(&anomaly(b"/tmp/fifo", 3, 300_000_000, true));
        s.record(&anomaly(b"/tmp/slowfail", -2, 400_000_000, true));
        assert_eq!((s.anomalies, s.failed, s.slow), (7, 5, 3));
        assert_eq!(s.by_errno, BTreeMap::from([(2, 4), (13, 1)]));
        let top = s.top_paths(2);
        assert_eq!(top, vec![(&b"/etc/missing"[..], 3), (&b"/tmp/fifo"[..], 2)]);
        let p50 = s.slow_quantile_ns(0.5).unwrap();
        assert!(p50.abs_diff(300_000_000) < 1_000_000, "{p50}");

        let mut losses = [0; LOSS_COUNT];
        let text = s.render(Duration::from_millis(2_340), &losses, None);
        assert_eq!(
            text,
            "badfd trace: 7 anomalies (5 failed, 3 slow) in 2.3s\n\
             by errno:\n\
             \x20 ENOENT                 4  No such file or directory\n\
             \x20 EACCES                 1  Permission denied\n\
             top paths:\n\
             \x20        3  /etc/missing\n\
             \x20        2  /tmp/fifo\n\
             \x20        1  /etc/secret\n\
             \x20        1  /tmp/slowfail\n\
             slow opens: 3 (p50 300ms, p90 400ms, p99 400ms, max 400ms)\n"
        );
        losses[Loss::RingbufFull as usize] = 5;
        let text = s.render(Duration::ZERO, &losses, None);
        assert!(text.contains("kernel losses (whole host, since attach): ringbuf_full 5\n"), "{text}");
        assert!(!text.contains("exit_without_enter"), "zero counters are not shown");
        let narrow = s.render(Duration::ZERO, &losses, Some(8));
        assert!(narrow.contains("        3  …missing\n"), "{narrow}");
    }

    #[test]
    fn bounds_the_paths_it_ranks() {
        let mut s = Summary::new();
        for i in 0..PATHS_TRACKED + 5 {
            s.record(&anomaly(format!("/p/{i}").as_bytes(), -2, 1, false));
        }
        s.record(&anomaly(b"/p/0", -2, 1, false));
        assert_eq!(s.paths_not_ranked, 5);
        assert_eq!(s.top_paths(1), vec![(&b"/p/0"[..], 2)]);
    }
}

//! The labeled anomaly series behind the `badfd_anomaly_*` metrics, each
//! metric under its own label-set budget, and the rankings of the landing page.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram as HdrHistogram;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;

use super::{
    budget::Budgeted,
    exemplar::{record_exemplar, RecordExemplar},
};
use crate::{
    errno,
    pipeline::{containers::ContainerLabels, labels::OTHER, Anomaly, RecordId},
};

/// Bucket bounds of the slow-open histogram, in seconds.
pub const SLOW_BUCKETS_SECONDS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The container labels of a series: `None` unless `--metrics.container-labels`
/// is on (then the label sets are those of today plus the container's).
pub type Container = Option<Arc<ContainerLabels>>;
/// errno, found later (a search path's probe), comm, path prefix, container.
pub type FailureKey = (i32, bool, Arc<str>, Arc<str>, Container);
pub type SlowKey = (Arc<str>, Arc<str>, Container);
pub type CommKey = (Arc<str>, Container);

/// Largest latency the slow series' histograms tell apart, in microseconds
/// (1 h); a slower open (a FIFO can wait forever) is counted at 1 h.
pub const SLOW_LATENCY_MAX_US: u64 = 3_600_000_000;

/// Slow opens of one label set: the count and an hdrhistogram (microseconds)
/// for quantiles on the landing page.
#[derive(Debug)]
pub struct SlowSeries {
    pub count: u64,
    pub latency_us: HdrHistogram<u32>,
    /// The OTLP record id of the latest slow open (the exemplar).
    pub last_record: Option<RecordId>,
}

/// A failure counter and the OTLP record id of its latest failure.
#[derive(Debug, Default)]
pub struct FailureSeries {
    pub count: u64,
    pub last_record: Option<RecordId>,
}

impl Default for SlowSeries {
    fn default() -> Self {
        // Of a fixed size, whatever latencies a user makes: 1 µs to 1 h, one
        // significant figure (a quantile is within 1/16 of the value), 464
        // counters of 4 bytes. Auto-resizing with two figures grew to 20-26 KB
        // per series after multi-second latencies, 50 MB at the default budget.
        let latency_us = HdrHistogram::new_with_bounds(1, SLOW_LATENCY_MAX_US, 1).expect("valid histogram bounds");
        SlowSeries { count: 0, latency_us, last_record: None }
    }
}

/// A fixed-bucket histogram of one label set ([`SLOW_BUCKETS_SECONDS`]),
/// each bucket with the OTLP record of its latest slow open that has one as
/// its exemplar. A prometheus-client histogram, because only its own types can
/// hold exemplars; shared (cheap clones) so that a scrape encodes it outside
/// the aggregates' lock.
#[derive(Clone, Debug)]
pub struct BucketHistogram(HistogramWithExemplars<RecordExemplar>);

impl Default for BucketHistogram {
    fn default() -> Self {
        BucketHistogram(HistogramWithExemplars::new(SLOW_BUCKETS_SECONDS.into_iter()))
    }
}

impl BucketHistogram {
    pub fn observe_ns(&mut self, ns: u64) {
        self.observe_ns_with_record(ns, None);
    }

    /// Observes one slow open; `record` (its OTLP record) becomes the exemplar
    /// of the bucket it falls into.
    pub fn observe_ns_with_record(&mut self, ns: u64, record: Option<RecordId>) {
        self.0.observe(ns as f64 / 1e9, record.map(record_exemplar), None);
    }

    pub(super) fn inner(&self) -> &HistogramWithExemplars<RecordExemplar> {
        &self.0
    }
}

fn other() -> Arc<str> {
    Arc::from(OTHER)
}

/// Folded label sets keep container labels (as `other`) if they had them.
fn other_container(c: &Container) -> Container {
    c.as_ref().map(|_| Arc::new(ContainerLabels::other()))
}

/// The labeled anomaly series, each metric under its own label-set budget.
#[derive(Debug)]
pub struct Aggregates {
    pub failures: Budgeted<FailureKey, FailureSeries>,
    pub slow: Budgeted<SlowKey, SlowSeries>,
    pub slow_duration: Budgeted<CommKey, BucketHistogram>,
    started: Instant,
}

impl Aggregates {
    pub fn new(max_label_sets: usize, ttl: Duration) -> Aggregates {
        Aggregates {
            failures: Budgeted::new(max_label_sets, ttl, |k| (k.0, k.1, other(), other(), other_container(&k.4))),
            slow: Budgeted::new(max_label_sets, ttl, |k| (other(), other(), other_container(&k.2))),
            slow_duration: Budgeted::new(max_label_sets, ttl, |k| (other(), other_container(&k.1))),
            started: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The aggregates' clock (seconds), for [`Aggregates::record_at`].
    pub fn clock(&self) -> u64 {
        self.now()
    }

    pub fn record(&mut self, a: &Anomaly) {
        let now = self.now();
        self.record_at(a, now);
    }

    /// [`Aggregates::record`] with the clock read once per batch by the caller
    /// (`now` from [`Aggregates::clock`]).
    pub fn record_at(&mut self, a: &Anomaly, now: u64) {
        if let Some(e) = a.event.errno() {
            let key = (e, a.found_later == Some(true), a.comm.clone(), a.path_prefix.clone(), a.container_labels.clone());
            let f = self.failures.get_mut(&key, now);
            f.count += 1;
            if a.record_id.is_some() {
                f.last_record = a.record_id;
            }
        }
        if a.event.slow() {
            let s = self.slow.get_mut(&(a.comm.clone(), a.path_prefix.clone(), a.container_labels.clone()), now);
            s.count += 1;
            if a.record_id.is_some() {
                s.last_record = a.record_id;
            }
            s.latency_us.saturating_record((a.event.latency_ns / 1000).max(1));
            self.slow_duration
                .get_mut(&(a.comm.clone(), a.container_labels.clone()), now)
                .observe_ns_with_record(a.event.latency_ns, a.record_id);
        }
    }

    pub fn expire(&mut self) {
        let now = self.now();
        self.failures.expire(now);
        self.slow.expire(now);
        self.slow_duration.expire(now);
    }

    /// Slow-open label sets with the highest p99 first.
    pub fn worst_slow(&self, n: usize) -> Vec<OffenderRow> {
        let mut rows: Vec<OffenderRow> = self
            .slow
            .iter()
            .map(|((comm, prefix, _), s)| OffenderRow {
                comm: comm.to_string(),
                path_prefix: prefix.to_string(),
                errno: None,
                count: s.count,
                p50_us: s.latency_us.value_at_quantile(0.5),
                p99_us: s.latency_us.value_at_quantile(0.99),
                max_us: s.latency_us.max(),
            })
            .collect();
        rows.sort_by(|a, b| b.p99_us.cmp(&a.p99_us).then(b.count.cmp(&a.count)));
        rows.truncate(n);
        rows
    }

    /// Failure label sets never found later, with the most failures first
    /// (a search path's probes are normal, and not what a person looks for).
    pub fn worst_failures(&self, n: usize) -> Vec<OffenderRow> {
        let mut rows: Vec<OffenderRow> = self
            .failures
            .iter()
            .filter(|((_, found_later, ..), _)| !found_later)
            .map(|((e, _, comm, prefix, _), f)| OffenderRow {
                comm: comm.to_string(),
                path_prefix: prefix.to_string(),
                errno: Some(errno::name(*e)),
                count: f.count,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.count));
        rows.truncate(n);
        rows
    }
}

#[derive(Clone, Debug)]
pub struct OffenderRow {
    pub comm: String,
    pub path_prefix: String,
    pub errno: Option<&'static str>,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openmetrics(h: &BucketHistogram) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("slow", "Slow", h.inner().clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn slow_histogram_buckets_are_inclusive_upper_bounds_with_the_latest_record_as_exemplar() {
        let mut h = BucketHistogram::default();
        h.observe_ns_with_record(10_000_000, Some([1; 16])); // exactly 0.01 s: in le="0.01"
        h.observe_ns(10_000_001);
        h.observe_ns_with_record(120_000_000_000, Some([2; 16]));
        h.observe_ns_with_record(90_000_000_000, Some([3; 16]));
        let text = openmetrics(&h);
        let line = |le: &str| text.lines().find(|l| l.starts_with(&format!("slow_bucket{{le=\"{le}\"}}"))).unwrap().to_string();
        assert_eq!(line("0.005"), "slow_bucket{le=\"0.005\"} 0");
        assert_eq!(line("0.01"), format!("slow_bucket{{le=\"0.01\"}} 1 # {{log_record_uid=\"{}\"}} 0.01", "01".repeat(16)));
        assert_eq!(line("0.025"), "slow_bucket{le=\"0.025\"} 2", "no record: no exemplar");
        assert_eq!(line("+Inf"), format!("slow_bucket{{le=\"+Inf\"}} 4 # {{log_record_uid=\"{}\"}} 90.0", "03".repeat(16)), "the latest");
        assert!(text.contains("slow_count 4\n"), "{text}");
    }

    #[test]
    fn slow_series_histograms_have_a_fixed_size_and_clamp() {
        let mut s = SlowSeries::default();
        let size = s.latency_us.distinct_values();
        assert_eq!(size, 464, "464 counters of 4 bytes");
        for us in [1, 15_000, 2_500_000, 6_000_000, SLOW_LATENCY_MAX_US, 10 * SLOW_LATENCY_MAX_US, u64::MAX] {
            s.latency_us.saturating_record(us);
        }
        assert_eq!(s.latency_us.distinct_values(), size, "no latency grows it");
        assert_eq!(s.latency_us.len(), 7, "every latency counted");
        let max = s.latency_us.max();
        assert!((SLOW_LATENCY_MAX_US..=SLOW_LATENCY_MAX_US + SLOW_LATENCY_MAX_US / 16).contains(&max), "clamped at 1 h: {max}");
        let p50 = s.latency_us.value_at_quantile(0.5);
        assert!((6_000_000..=6_000_000 + 6_000_000 / 16).contains(&p50), "within 1/16: {p50}");
    }
}

//! Prometheus metrics: the exact kernel counters (read at scrape time), the
//! labeled and bounded anomaly aggregates, and the exposition in OpenMetrics or
//! the classic text format.

use std::{
    borrow::Cow,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use exporter_common::{latency_bucket_upper_ns, Counters, Loss, Stream, Syscall, ERRNO_SLOTS, LATENCY_BUCKETS, RESULT_FAILED, RESULT_OK};
use hdrhistogram::Histogram as HdrHistogram;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::{histogram::Histogram, MetricType},
    registry::Registry,
};

use crate::{
    errno,
    labels::{Budgeted, ContainerLabels, Fold, OTHER},
    pipeline::{Anomaly, Sink},
    Probe,
};

/// The probe, shared by the scrape (counters), reloads (config) and the
/// readiness check; `None` until it is attached and after it is detached.
pub type SharedProbe = Arc<Mutex<Option<Probe>>>;

pub const FAILURES_METRIC: &str = "badfd_anomaly_failures_total";
pub const SLOW_OPENS_METRIC: &str = "badfd_anomaly_slow_opens_total";
pub const SLOW_DURATION_METRIC: &str = "badfd_anomaly_slow_open_duration_seconds";

/// Kernel log2 latency buckets exposed as `le` bounds: 2^8 ns (256 ns) to
/// 2^36 ns (about 69 s). Lower buckets are included cumulatively, higher ones
/// in `+Inf`, so the counts stay exact.
const EXPOSED_LATENCY_BUCKETS: std::ops::RangeInclusive<usize> = 8..=36;

/// Bucket bounds of the slow-open histogram, in seconds.
pub const SLOW_BUCKETS_SECONDS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn counter<L: EncodeLabelSet>(encoder: &mut prometheus_client::encoding::MetricEncoder, labels: &L, v: u64) -> std::fmt::Result {
    encoder.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

/// A counter whose latest increment is the anomaly sent as the OTLP log record
/// `record` (a trace id): OpenMetrics shows it as the exemplar
/// `{trace_id="<32 hex digits>"} 1`, the same id the record carries, so a user
/// can jump from the series to the record. (prometheus-client builds exemplars
/// only inside its own metric types, hence the counter made here.) The classic
/// format has no exemplars: while it renders, none are made.
fn counter_with_exemplar<L: EncodeLabelSet>(
    encoder: &mut prometheus_client::encoding::MetricEncoder,
    labels: &L,
    v: u64,
    record: Option<[u8; 16]>,
) -> std::fmt::Result {
    let Some(id) = record.filter(|_| v > 0 && !RENDERING_CLASSIC.get()) else { return counter(encoder, labels, v) };
    let c = prometheus_client::metrics::exemplar::CounterWithExemplar::<[(&'static str, TraceIdHex); 1]>::default();
    c.inc_by(v - 1, None, None);
    c.inc_by(1, Some([("trace_id", TraceIdHex(id))]), None);
    prometheus_client::encoding::EncodeMetric::encode(&c, encoder.encode_family(labels)?)
}

/// A trace id as an exemplar label value: 32 lowercase hex digits written
/// straight into the exposition (no strings per series at scrape time).
#[derive(Clone, Debug)]
struct TraceIdHex([u8; 16]);

impl prometheus_client::encoding::EncodeLabelValue for TraceIdHex {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> std::fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[(b >> 4) as usize];
            hex[2 * i + 1] = HEX[(b & 15) as usize];
        }
        encoder.write_str(std::str::from_utf8(&hex).map_err(|_| std::fmt::Error)?)
    }
}

thread_local! {
    /// Set while this thread renders the classic format (see [`Exposition::render`]).
    static RENDERING_CLASSIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The exact per-CPU kernel counters and the probe's state, read at each scrape.
pub struct KernelCollector {
    pub probe: SharedProbe,
}

impl std::fmt::Debug for KernelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCollector")
    }
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let guard = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = encoder.encode_descriptor("ready", "1 while the programs are attached (what /-/ready reports), else 0.", None, MetricType::Gauge)?;
        m.encode_gauge(&(guard.is_some() as i64))?;
        let Some(probe) = guard.as_ref() else { return Ok(()) };
        let counters = match probe.counters() {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "reading the kernel counters failed; scrape has no kernel metrics");
                return Ok(());
            }
        };
        // Untimed (`--no-timing`): no latency, slow opens or in-flight entries
        // exist, so their families are left out rather than shown as zeros.
        let timed = probe.timed();
        let inflight = if timed { probe.inflight_len().ok() } else { None };
        let mode = probe.attach_mode().name();
        let fallback = probe.fallback_reason().unwrap_or("").trim().to_string();
        drop(guard);

        let mut m = encoder.encode_descriptor("opens", "Opens by syscall and result, every open on the host (exact, from the kernel).", None, MetricType::Counter)?;
        for s in Syscall::ALL {
            for (result, i) in [("success", RESULT_OK), ("failure", RESULT_FAILED)] {
                counter(&mut m, &[("syscall", s.name()), ("result", result)], counters.opens[s as usize][i])?;
            }
        }
        let mut m = encoder.encode_descriptor("open_failures", "Failed opens by syscall and errno (exact, from the kernel).", None, MetricType::Counter)?;
        for s in Syscall::ALL {
            for (n, &count) in counters.errnos[s as usize].iter().enumerate() {
                if count > 0 {
                    let name = if n == ERRNO_SLOTS - 1 { "E255_OR_HIGHER" } else { errno::name(n as i32) };
                    counter(&mut m, &[("syscall", s.name()), ("errno", name)], count)?;
                }
            }
        }
        if timed {
            encode_timing(&mut encoder, &counters)?;
        }
        let mut m = encoder.encode_descriptor("kernel_events_lost", "What the kernel could not do, by reason: events dropped (ring buffer full), opens not timed, paths unread or cut.", None, MetricType::Counter)?;
        for loss in Loss::ALL {
            counter(&mut m, &[("reason", loss.name())], counters.losses[loss as usize])?;
        }
        let mut m = encoder.encode_descriptor("kernel_events", "Anomalies by what the kernel did with them: submitted to the ring buffer, filtered out, or slow but not streamed (failures-only).", None, MetricType::Counter)?;
        for (outcome, s) in [("submitted", Stream::Submitted), ("filtered", Stream::Filtered), ("slow_not_streamed", Stream::SlowNotStreamed)] {
            counter(&mut m, &[("outcome", outcome)], counters.stream[s as usize])?;
        }
        let mut m = encoder.encode_descriptor("opens_interrupted", "Open attempts a signal interrupted with a restart code (ERESTARTSYS): restarted by the kernel (the restart is counted as the open it is) or their task was killed. Not in badfd_opens_total: no program sees that result.", None, MetricType::Counter)?;
        m.encode_counter::<NoLabelSet, u64, u64>(&counters.stream[Stream::Interrupted as usize], None)?;
        if let Some(n) = inflight {
            let m = encoder.encode_descriptor("inflight_opens", "Opens in progress now (entries in the kernel's in-flight map).", None, MetricType::Gauge)?;
            let mut m = m;
            m.encode_gauge(&(n as i64))?;
        }
        let mut m = encoder.encode_descriptor("kernel", "The running kernel and how the programs are attached.", None, MetricType::Info)?;
        m.encode_info(&[
            ("release", kernel_release().as_str()),
            ("attach_mode", mode),
            ("fallback_reason", fallback.as_str()),
            ("timing", if timed { "on" } else { "off" }),
        ])?;
        Ok(())
    }
}

/// The kernel's slow-open counts and latency histogram (timed opens only).
fn encode_timing(encoder: &mut DescriptorEncoder, counters: &Counters) -> std::fmt::Result {
    let mut m = encoder.encode_descriptor("slow_opens", "Opens at or over the slow threshold, by syscall (exact, from the kernel).", None, MetricType::Counter)?;
    for s in Syscall::ALL {
        counter(&mut m, &[("syscall", s.name())], counters.slow[s as usize])?;
    }
    let mut m = encoder.encode_descriptor("open_duration_seconds", "Latency of every timed open, by syscall, from the kernel's log2 buckets (le = 2^i ns).", None, MetricType::Histogram)?;
    for s in Syscall::ALL {
        // The encoder takes per-bucket counts and accumulates them itself.
        // Buckets below the first exposed bound join it; those above the
        // last join +Inf.
        let buckets = &counters.latency[s as usize];
        debug_assert_eq!(buckets.len(), LATENCY_BUCKETS);
        let (first, last) = (*EXPOSED_LATENCY_BUCKETS.start(), *EXPOSED_LATENCY_BUCKETS.end());
        let mut exposed = Vec::with_capacity(last - first + 2);
        exposed.push((latency_bucket_upper_ns(first) as f64 / 1e9, buckets[..=first].iter().sum::<u64>()));
        for (i, &n) in buckets.iter().enumerate().take(last + 1).skip(first + 1) {
            exposed.push((latency_bucket_upper_ns(i) as f64 / 1e9, n));
        }
        exposed.push((f64::INFINITY, buckets[last + 1..].iter().sum::<u64>()));
        let cumulative: u64 = buckets.iter().sum();
        let sum = counters.latency_sum_ns[s as usize] as f64 / 1e9;
        m.encode_family(&[("syscall", s.name())])?.encode_histogram::<NoLabelSet>(sum, cumulative, &exposed, None)?;
    }
    Ok(())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The container labels of a series: `None` unless `--metrics.container-labels`
/// is on (then the label sets are those of today plus the container's).
type Container = Option<Arc<ContainerLabels>>;
type FailureKey = (i32, Arc<str>, Arc<str>, Container);
type SlowKey = (Arc<str>, Arc<str>, Container);
type CommKey = (Arc<str>, Container);

/// Slow opens of one label set: the count and an hdrhistogram (microseconds)
/// for quantiles on the landing page and in terminal mode.
#[derive(Debug)]
pub struct SlowSeries {
    pub count: u64,
    pub latency_us: HdrHistogram<u64>,
    /// The OTLP record id of the latest slow open (the exemplar).
    pub last_record: Option<[u8; 16]>,
}

/// A failure counter and the OTLP record id of its latest failure.
#[derive(Debug, Default)]
pub struct FailureSeries {
    pub count: u64,
    pub last_record: Option<[u8; 16]>,
}

impl Fold for FailureSeries {
    fn fold_into(self, target: &mut FailureSeries) {
        target.count += self.count;
        target.last_record = self.last_record.or(target.last_record);
    }
}

impl Default for SlowSeries {
    fn default() -> Self {
        // Two significant figures, auto-resizing to the largest value seen.
        SlowSeries { count: 0, latency_us: HdrHistogram::new(2).expect("2 significant figures is valid"), last_record: None }
    }
}

impl Fold for SlowSeries {
    fn fold_into(self, target: &mut SlowSeries) {
        target.count += self.count;
        let _ = target.latency_us.add(&self.latency_us);
        target.last_record = self.last_record.or(target.last_record);
    }
}

/// A fixed-bucket histogram of one label set ([`SLOW_BUCKETS_SECONDS`]).
#[derive(Debug, Default)]
pub struct BucketHistogram {
    /// Non-cumulative; the last slot is +Inf.
    pub buckets: [u64; SLOW_BUCKETS_SECONDS.len() + 1],
    pub sum_ns: u64,
    pub count: u64,
}

impl BucketHistogram {
    pub fn observe_ns(&mut self, ns: u64) {
        let s = ns as f64 / 1e9;
        let i = SLOW_BUCKETS_SECONDS.iter().position(|&b| s <= b).unwrap_or(SLOW_BUCKETS_SECONDS.len());
        self.buckets[i] += 1;
        self.sum_ns += ns;
        self.count += 1;
    }
}

impl Fold for BucketHistogram {
    fn fold_into(self, target: &mut BucketHistogram) {
        for (t, s) in target.buckets.iter_mut().zip(self.buckets) {
            *t += s;
        }
        target.sum_ns += self.sum_ns;
        target.count += self.count;
    }
}

fn other() -> Arc<str> {
    Arc::from(OTHER)
}

/// Folded label sets keep container labels (as `other`) if they had them.
fn other_container(c: &Container) -> Container {
    c.as_ref().map(|_| Arc::new(ContainerLabels::other()))
}

/// The label set of a series: `base`, then the container labels if any.
fn with_container<'a, const N: usize>(base: [(&'static str, &'a str); N], c: &'a Container) -> Vec<(&'static str, &'a str)> {
    let mut labels = Vec::with_capacity(N + 4);
    labels.extend(base);
    if let Some(c) = c {
        labels.extend(c.pairs());
    }
    labels
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
            failures: Budgeted::new(max_label_sets, ttl, |k| (k.0, other(), other(), other_container(&k.3))),
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
            let f = self.failures.get_mut(&(e, a.comm.clone(), a.path_prefix.clone(), a.container_labels.clone()), now);
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
            self.slow_duration.get_mut(&(a.comm.clone(), a.container_labels.clone()), now).observe_ns(a.event.latency_ns);
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

    /// Failure label sets with the most failures first.
    pub fn worst_failures(&self, n: usize) -> Vec<OffenderRow> {
        let mut rows: Vec<OffenderRow> = self
            .failures
            .iter()
            .map(|((e, comm, prefix, _), f)| OffenderRow {
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

/// The Prometheus sink: aggregates each batch under one lock.
pub struct AnomalyMetrics {
    pub aggregates: Arc<Mutex<Aggregates>>,
}

impl Sink for AnomalyMetrics {
    fn accept(&mut self, batch: &mut [Anomaly]) {
        let mut a = self.aggregates.lock().unwrap_or_else(|e| e.into_inner());
        let now = a.clock();
        for anomaly in batch {
            a.record_at(anomaly, now);
        }
    }
}

/// Encodes the anomaly aggregates at scrape time.
#[derive(Debug)]
pub struct AggregatesCollector {
    pub aggregates: Arc<Mutex<Aggregates>>,
}

/// What a scrape encodes of the aggregates, copied under the lock (label
/// values are shared strings, so this is a few ns per label set) so that
/// encoding, which takes ms at many label sets, does not hold up the event
/// thread.
/// A label set's key (see [`FailureKey`], [`SlowKey`]), its count, and the
/// OTLP record id of its exemplar.
type SeriesCopy<K> = (K, u64, Option<[u8; 16]>);

struct AggregatesSnapshot {
    failures: Vec<SeriesCopy<FailureKey>>,
    slow: Vec<SeriesCopy<SlowKey>>,
    slow_duration: Vec<(CommKey, BucketHistogram)>,
    folded: [u64; 3],
    expired: [u64; 3],
}

impl AggregatesSnapshot {
    fn of(a: &Aggregates) -> AggregatesSnapshot {
        AggregatesSnapshot {
            failures: a.failures.iter().map(|(k, f)| (k.clone(), f.count, f.last_record)).collect(),
            slow: a.slow.iter().map(|(k, s)| (k.clone(), s.count, s.last_record)).collect(),
            slow_duration: a
                .slow_duration
                .iter()
                .map(|(c, h)| (c.clone(), BucketHistogram { buckets: h.buckets, sum_ns: h.sum_ns, count: h.count }))
                .collect(),
            folded: [a.failures.folded, a.slow.folded, a.slow_duration.folded],
            expired: [a.failures.expired, a.slow.expired, a.slow_duration.expired],
        }
    }
}

impl Collector for AggregatesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let a = AggregatesSnapshot::of(&self.aggregates.lock().unwrap_or_else(|e| e.into_inner()));
        let mut m = encoder.encode_descriptor("anomaly_failures", "Failed opens streamed as anomalies, by errno, comm and path prefix (label sets bounded; see badfd_label_sets_folded_total).", None, MetricType::Counter)?;
        for ((e, comm, prefix, c), count, record) in &a.failures {
            let labels = with_container([("errno", errno::name(*e)), ("comm", comm), ("path_prefix", prefix)], c);
            counter_with_exemplar(&mut m, &labels, *count, *record)?;
        }
        let mut m = encoder.encode_descriptor("anomaly_slow_opens", "Opens at or over the slow threshold streamed as anomalies, by comm and path prefix.", None, MetricType::Counter)?;
        for ((comm, prefix, c), count, record) in &a.slow {
            counter_with_exemplar(&mut m, &with_container([("comm", &**comm), ("path_prefix", &**prefix)], c), *count, *record)?;
        }
        let mut m = encoder.encode_descriptor("anomaly_slow_open_duration_seconds", "Latency of slow opens streamed as anomalies, by comm.", None, MetricType::Histogram)?;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(SLOW_BUCKETS_SECONDS.len() + 1);
        for ((comm, c), h) in &a.slow_duration {
            // Per-bucket counts: the encoder accumulates them.
            buckets.clear();
            buckets.extend(h.buckets.iter().enumerate().map(|(i, &n)| (SLOW_BUCKETS_SECONDS.get(i).copied().unwrap_or(f64::INFINITY), n)));
            m.encode_family(&with_container([("comm", &**comm)], c))?.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)?;
        }
        let metrics = [FAILURES_METRIC, SLOW_OPENS_METRIC, SLOW_DURATION_METRIC];
        let mut m = encoder.encode_descriptor("label_sets_folded", "Label sets folded into comm=\"other\"/path_prefix=\"other\" because the metric was at its label-set budget.", None, MetricType::Counter)?;
        for (metric, n) in metrics.iter().zip(a.folded) {
            counter(&mut m, &[("metric", *metric)], n)?;
        }
        let mut m = encoder.encode_descriptor("label_sets_expired", "Label sets dropped after being idle for the TTL.", None, MetricType::Counter)?;
        for (metric, n) in metrics.iter().zip(a.expired) {
            counter(&mut m, &[("metric", *metric)], n)?;
        }
        Ok(())
    }
}

/// `badfd_build_info`.
#[derive(Debug)]
pub struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut m = encoder.encode_descriptor("build", "The badfd build.", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION")), ("rust_version", env!("CARGO_PKG_RUST_VERSION"))])
    }
}

/// The registry every part of the exporter registers into at start-up, and the
/// encode-time histogram. Immutable once serving starts.
pub struct Exposition {
    pub registry: Registry,
    pub encode_seconds: Histogram,
    /// The size of the last response: the next one starts with room for it
    /// (a 10 MB exposition otherwise grows through a dozen copies).
    last_len: std::sync::atomic::AtomicUsize,
}

impl Exposition {
    pub fn new() -> Exposition {
        let mut registry = Registry::with_prefix("badfd");
        let encode_seconds = Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]);
        registry.register("scrape_encode_seconds", "Time to encode one /metrics response", encode_seconds.clone());
        registry.register_collector(Box::new(BuildInfo));
        Exposition { registry, encode_seconds, last_len: std::sync::atomic::AtomicUsize::new(64 * 1024) }
    }

    /// The whole exposition, OpenMetrics or classic.
    pub fn render(&self, format: Format) -> String {
        use std::sync::atomic::Ordering;
        let start = Instant::now();
        let last_len = self.last_len.load(Ordering::Relaxed);
        let mut text = String::with_capacity(last_len + last_len / 8);
        RENDERING_CLASSIC.set(format == Format::Classic);
        let encoded = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        RENDERING_CLASSIC.set(false);
        if let Err(error) = encoded {
            tracing::error!(%error, "encoding metrics failed");
        }
        let text = match format {
            Format::OpenMetrics => text,
            Format::Classic => openmetrics_to_classic(&text),
        };
        self.last_len.store(text.len(), Ordering::Relaxed);
        self.encode_seconds.observe(start.elapsed().as_secs_f64());
        text
    }
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// OpenMetrics unless the scraper asks for plain text only (Prometheus
    /// before 2.5, curl with `-H 'Accept: text/plain'`, promtool).
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if !a.contains("application/openmetrics-text") && a.contains("text/plain") => Format::Classic,
            _ => Format::OpenMetrics,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the classic text format
/// (0.0.4): counter families are named with their `_total` suffix, `info`
/// families become gauges named `..._info`, `unknown` becomes `untyped`,
/// `# UNIT`, `# EOF`, `_created` samples and exemplars go.
pub fn openmetrics_to_classic(text: &str) -> String {
    use std::collections::HashMap;
    // Family name -> type, from the TYPE lines (HELP comes before TYPE).
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, t)) = rest.split_once(' ') {
                types.insert(name, t);
            }
        }
    }
    let classic_name = |name: &str| -> Cow<'static, str> {
        match types.get(name).copied() {
            Some("counter") => format!("{name}_total").into(),
            Some("info") => format!("{name}_info").into(),
            _ => name.to_string().into(),
        }
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = writeln!(out, "# HELP {} {help}", classic_name(name));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let t = match t {
                "counter" => "counter",
                "gauge" | "info" | "stateset" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                _ => "untyped",
            };
            let _ = writeln!(out, "# TYPE {} {t}", classic_name(name));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if line[..name_end].ends_with("_created") {
            continue;
        }
        // Only a line with a `#` can carry an exemplar (memchr, not a parse).
        out.push_str(if line.as_bytes().contains(&b'#') { strip_exemplar(line) } else { line });
        out.push('\n');
    }
    out
}

/// A sample line without its ` # {...} value` exemplar (outside label values).
fn strip_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_value = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_value {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_value = false,
                _ => {}
            }
        } else if b == b'"' {
            in_value = true;
        } else if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return line[..i - 1].trim_end();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_rendering_renames_counters_and_infos() {
        let om = "# HELP badfd_opens Opens.\n# TYPE badfd_opens counter\nbadfd_opens_total{syscall=\"open\"} 3\nbadfd_opens_created 1.7e9\n\
                  # HELP badfd_build The build.\n# TYPE badfd_build info\nbadfd_build_info{version=\"0.1.0\"} 1\n\
                  # HELP x_seconds Time.\n# TYPE x_seconds histogram\n# UNIT x_seconds seconds\nx_seconds_bucket{le=\"+Inf\",p=\"a # b\"} 2 # {trace_id=\"1\"} 0.5\n\
                  # HELP u What.\n# TYPE u unknown\nu 1\n# EOF\n";
        let classic = openmetrics_to_classic(om);
        assert_eq!(
            classic,
            "# HELP badfd_opens_total Opens.\n# TYPE badfd_opens_total counter\nbadfd_opens_total{syscall=\"open\"} 3\n\
             # HELP badfd_build_info The build.\n# TYPE badfd_build_info gauge\nbadfd_build_info{version=\"0.1.0\"} 1\n\
             # HELP x_seconds Time.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"+Inf\",p=\"a # b\"} 2\n\
             # HELP u What.\n# TYPE u untyped\nu 1\n"
        );
    }

    /// The exemplar's trace id is the record's id in hex; the classic format
    /// gets none (not made, not just stripped), and both formats show the same
    /// counts.
    #[test]
    fn exemplars_only_in_openmetrics() {
        let aggregates = Arc::new(Mutex::new(Aggregates::new(10, Duration::from_secs(60))));
        {
            let mut a = aggregates.lock().unwrap();
            let f = a.failures.get_mut(&(2, Arc::from("app"), Arc::from("/etc"), None), 0);
            f.count = 3;
            f.last_record = Some([0x0f; 16]);
        }
        let mut exposition = Exposition::new();
        exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates }));
        let om = exposition.render(Format::OpenMetrics);
        let line = om.lines().find(|l| l.starts_with("badfd_anomaly_failures_total{")).unwrap();
        assert_eq!(
            line,
            "badfd_anomaly_failures_total{errno=\"ENOENT\",comm=\"app\",path_prefix=\"/etc\"} 3 # {trace_id=\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\"} 1.0"
        );
        let classic = exposition.render(Format::Classic);
        assert!(classic.contains("\nbadfd_anomaly_failures_total{errno=\"ENOENT\",comm=\"app\",path_prefix=\"/etc\"} 3\n"), "{classic}");
        assert!(!classic.contains("trace_id"));
        // The next OpenMetrics render has its exemplars again.
        assert!(exposition.render(Format::OpenMetrics).contains("trace_id"));
    }

    #[test]
    fn negotiates_the_format() {
        assert_eq!(Format::negotiate(None), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn slow_histogram_buckets_are_inclusive_upper_bounds() {
        let mut h = BucketHistogram::default();
        h.observe_ns(10_000_000); // exactly 0.01 s: in le="0.01"
        h.observe_ns(10_000_001);
        h.observe_ns(120_000_000_000);
        assert_eq!(h.buckets[3], 1);
        assert_eq!(h.buckets[4], 1);
        assert_eq!(h.buckets[SLOW_BUCKETS_SECONDS.len()], 1);
        assert_eq!(h.count, 3);
    }

    fn anomaly(comm: &str, prefix: &str, container: Option<ContainerLabels>) -> Anomaly {
        Anomaly {
            event: crate::OpenEvent {
                ret: -2,
                latency_ns: 20_000_000,
                flags: exporter_common::EVENT_FAILED | exporter_common::EVENT_SLOW,
                ..Default::default()
            },
            resolved: crate::resolve::ResolvedPath { path: prefix.as_bytes().to_vec(), how: crate::resolve::Resolution::Absolute },
            comm: Arc::from(comm),
            path_prefix: Arc::from(prefix),
            record_id: None,
            container: None,
            container_attributes: None,
            container_labels: container.map(Arc::new),
        }
    }

    fn render(aggregates: Aggregates) -> String {
        let mut registry = Registry::with_prefix("badfd");
        registry.register_collector(Box::new(AggregatesCollector { aggregates: Arc::new(Mutex::new(aggregates)) }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn container_labels_only_when_asked_and_folded_within_the_budget() {
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        a.record(&anomaly("app", "/etc", None));
        let text = render(a);
        assert!(text.contains("badfd_anomaly_failures_total{errno=\"ENOENT\",comm=\"app\",path_prefix=\"/etc\"} 1\n"), "{text}");
        assert!(!text.contains("namespace="), "no container labels unless asked for: {text}");

        let web = |pod: &str| ContainerLabels {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "nginx".into(),
            container_id: "containerd://8f2c".into(),
        };
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        a.record(&anomaly("nginx", "/etc", Some(web("web-1"))));
        a.record(&anomaly("nginx", "/etc", Some(web("web-1"))));
        a.record(&anomaly("sh", "/tmp", Some(ContainerLabels::default())));
        let text = render(a);
        assert!(
            text.contains("badfd_anomaly_failures_total{errno=\"ENOENT\",comm=\"nginx\",path_prefix=\"/etc\",namespace=\"shop\",pod=\"web-1\",container=\"nginx\",container_id=\"containerd://8f2c\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("comm=\"sh\",path_prefix=\"/tmp\",namespace=\"\",pod=\"\",container=\"\",container_id=\"\"} 1\n"), "a host process: {text}");
        assert!(text.contains("badfd_anomaly_slow_open_duration_seconds_count{comm=\"nginx\",namespace=\"shop\",pod=\"web-1\""), "{text}");

        // Pods past the budget fold into `other`, container labels too.
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        for i in 0..10 {
            a.record(&anomaly("nginx", "/etc", Some(web(&format!("web-{i}")))));
        }
        assert!(a.failures.len() <= 3);
        assert_eq!(a.failures.folded, 8);
        assert_eq!(a.failures.iter().map(|(_, f)| f.count).sum::<u64>(), 10, "nothing lost in the folding");
        let text = render(a);
        assert!(
            text.contains("{errno=\"ENOENT\",comm=\"other\",path_prefix=\"other\",namespace=\"other\",pod=\"other\",container=\"other\",container_id=\"other\"} 8\n"),
            "{text}"
        );
    }
}

//! Self-metrics of the OTLP pipeline: what happened to every record.
//!
//! Registered under the `otlp` prefix of the registry given (so
//! `badfd_otlp_records_total` when that registry carries the `badfd` prefix):
//!
//! - `badfd_otlp_records_total{kind="anomaly"|"summary", outcome=...}`: each
//!   anomaly handed to `Otlp::emit` ends in exactly one outcome:
//!   `exported` (the collector accepted its batch), `suppressed` (rate limit; a
//!   summary record carries the count), `dropped_queue_full`,
//!   `dropped_export_failed` (its batch failed after the exporter's retries),
//!   `dropped_shutdown` (still queued when the shutdown time ran out).
//!   Summary records are counted with `kind="summary"` (never `suppressed`).
//! - `badfd_otlp_export_requests_total{outcome="success"|"failure"}`.
//! - `badfd_otlp_queue_records` and `badfd_otlp_queue_capacity_records`.

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Kind {
    anomaly,
    summary,
}

#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    exported,
    suppressed,
    dropped_queue_full,
    dropped_export_failed,
    dropped_shutdown,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub kind: Kind,
    pub outcome: Outcome,
}

#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RequestOutcome {
    success,
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub outcome: RequestOutcome,
}

/// The counters, each looked up once so that `emit` only touches an atomic.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub exported: Counter,
    pub suppressed: Counter,
    pub dropped_queue_full: Counter,
    pub dropped_export_failed: Counter,
    pub dropped_shutdown: Counter,
    pub summaries_exported: Counter,
    pub summaries_dropped_export_failed: Counter,
    pub summaries_dropped_shutdown: Counter,
    pub requests_success: Counter,
    pub requests_failure: Counter,
    pub queue_records: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry, queue_capacity: usize) -> Metrics {
        let registry = registry.sub_registry_with_prefix("otlp");
        let records = Family::<RecordLabels, Counter>::default();
        registry.register(
            "records",
            "What became of each anomaly (kind=anomaly) and suppression summary (kind=summary) sent as an OTLP log record",
            records.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("export_requests", "OTLP export requests, after the exporter's own retries", requests.clone());
        let queue_records = Gauge::default();
        registry.register("queue_records", "Records waiting in the OTLP queue", queue_records.clone());
        let capacity = Gauge::<i64>::default();
        capacity.set(queue_capacity as i64);
        registry.register("queue_capacity_records", "Records the OTLP queue holds at most", capacity);

        let r = |kind, outcome| records.get_or_create(&RecordLabels { kind, outcome }).clone();
        let q = |outcome| requests.get_or_create(&RequestLabels { outcome }).clone();
        Metrics {
            exported: r(Kind::anomaly, Outcome::exported),
            suppressed: r(Kind::anomaly, Outcome::suppressed),
            dropped_queue_full: r(Kind::anomaly, Outcome::dropped_queue_full),
            dropped_export_failed: r(Kind::anomaly, Outcome::dropped_export_failed),
            dropped_shutdown: r(Kind::anomaly, Outcome::dropped_shutdown),
            summaries_exported: r(Kind::summary, Outcome::exported),
            summaries_dropped_export_failed: r(Kind::summary, Outcome::dropped_export_failed),
            summaries_dropped_shutdown: r(Kind::summary, Outcome::dropped_shutdown),
            requests_success: q(RequestOutcome::success),
            requests_failure: q(RequestOutcome::failure),
            queue_records,
        }
    }
}

/// A copy of the counters, for callers and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpCounts {
    pub exported: u64,
    pub suppressed: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_failed: u64,
    pub dropped_shutdown: u64,
    pub summaries_exported: u64,
    pub summaries_dropped: u64,
    pub export_failures: u64,
}

impl OtlpCounts {
    /// Anomalies that reached an outcome (all of those emitted, once the queue is empty).
    pub fn anomalies_accounted(&self) -> u64 {
        self.exported + self.suppressed + self.dropped_queue_full + self.dropped_export_failed + self.dropped_shutdown
    }
}

impl Metrics {
    pub fn counts(&self) -> OtlpCounts {
        OtlpCounts {
            exported: self.exported.get(),
            suppressed: self.suppressed.get(),
            dropped_queue_full: self.dropped_queue_full.get(),
            dropped_export_failed: self.dropped_export_failed.get(),
            dropped_shutdown: self.dropped_shutdown.get(),
            summaries_exported: self.summaries_exported.get(),
            summaries_dropped: self.summaries_dropped_export_failed.get() + self.summaries_dropped_shutdown.get(),
            export_failures: self.requests_failure.get(),
        }
    }
}

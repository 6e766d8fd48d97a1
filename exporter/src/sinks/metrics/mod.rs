//! The Prometheus sink: every anomaly counted into labeled, bounded series
//! (`badfd_anomaly_*`), exposed at scrape time beside the exact kernel
//! counters, as OpenMetrics or the classic text format.
//!
//! | file | what |
//! |---|---|
//! | `aggregates.rs` | the labeled series, each metric under its label-set budget |
//! | `budget.rs` | the budget: least recently used label sets folded into `other`, idle ones expired |
//! | `collector.rs` | the series encoded at scrape time |
//! | `kernel.rs` | the kernel's exact counters, read from the maps at scrape time |
//! | `exemplar.rs` | counters with the OTLP record id as exemplar |
//! | `exposition.rs` | the registry and its rendering; content negotiation |
//! | `classic.rs` | the classic text format from OpenMetrics |
//! | `process.rs` | the standard `process_*` metrics of badfd's own process |
//! | `reload.rs` | whether the last configuration (re)load succeeded, and when one last did |

pub mod aggregates;
pub mod budget;
pub mod classic;
pub mod collector;
mod exemplar;
pub mod exposition;
pub mod kernel;
pub mod process;
pub mod reload;

use std::sync::{Arc, Mutex};

pub use aggregates::{Aggregates, BucketHistogram, FailureSeries, OffenderRow, SlowSeries, SLOW_BUCKETS_SECONDS};
pub use classic::openmetrics_to_classic;
pub use collector::AggregatesCollector;
pub use exposition::{BuildInfo, Exposition, Format};
pub use kernel::{KernelCollector, SharedFoundLater, SharedProbe};
pub use process::ProcessCollector;
pub use reload::ReloadStatus;

use crate::pipeline::{Anomaly, Sink};

pub const FAILURES_METRIC: &str = "badfd_anomaly_failures_total";
pub const SLOW_OPENS_METRIC: &str = "badfd_anomaly_slow_opens_total";
pub const SLOW_DURATION_METRIC: &str = "badfd_anomaly_slow_open_duration_seconds";

/// The Prometheus sink: aggregates each batch under one lock, and expires
/// idle series at the housekeeping.
pub struct MetricsSink {
    pub aggregates: Arc<Mutex<Aggregates>>,
}

impl Sink for MetricsSink {
    fn accept(&mut self, batch: &[Anomaly]) {
        let mut a = self.aggregates.lock().unwrap_or_else(|e| e.into_inner());
        let now = a.clock();
        for anomaly in batch {
            a.record_at(anomaly, now);
        }
    }

    fn housekeeping(&mut self) {
        self.aggregates.lock().unwrap_or_else(|e| e.into_inner()).expire();
    }
}

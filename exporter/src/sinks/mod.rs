//! Where anomalies go: each sink takes the pipeline's batches (the
//! [`Sink`](crate::pipeline::Sink) trait) and knows nothing of the others.
//!
//! - [`metrics`]: the Prometheus series of `serve`, beside the kernel's exact counters;
//! - [`otlp`]: one OpenTelemetry log record per anomaly, for a collector;
//! - [`terminal`]: `badfd trace`'s table or JSON lines, and its summary.

pub mod metrics;
pub mod otlp;
pub mod terminal;

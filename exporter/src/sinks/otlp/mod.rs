//! The OTLP sink: one OpenTelemetry log record per anomaly that has a record
//! id, sent over OTLP (gRPC or HTTP/protobuf) without ever letting a slow or
//! absent collector hurt the host.
//!
//! Which anomalies get a record is decided in the pipeline, before any sink:
//! its record-id stage asks [`Otlp`] (the per-(command, errno) rate limit, as
//! [`RecordAdmission`]), so that the metrics carry the same id as the record's
//! `log.record.uid`, as an exemplar. The sink then puts a copy of each such anomaly
//! into a bounded queue, never blocking (or counts it dropped when the queue
//! is full). One tokio task (`export.rs`) takes batches from the queue and
//! hands each to a request task (at most `MAX_CONCURRENT_EXPORTS` in flight)
//! that turns it into SDK log records (`record.rs`) and drives the OTLP
//! `LogExporter` (`exporter.rs`; the TLS of https:// endpoints in `tls.rs`)
//! directly (the exporter retries retryable
//! failures with backoff within its timeout), so that every record's fate is
//! counted exactly in `badfd_otlp_records_total` (`metrics.rs`) — the SDK's
//! batch processor would only report drops at shutdown. After a failed batch
//! the task backs off (up to 10 s) before sending again; the queue absorbs
//! what it can meanwhile and counts the rest.
//!
//! ```ignore
//! // Inside the tokio runtime; `registry` carries the `badfd` prefix.
//! let otlp = Arc::new(Otlp::start(config, &mut registry)?);
//! let pipeline = Pipeline::new(depth, vec![Box::new(OtlpSink { otlp: otlp.clone() }), ..], stats)
//!     .with_record_ids(otlp.clone());
//! // On SIGTERM, once the event loop has finished:
//! otlp.shutdown(Duration::from_secs(5)).await;
//! ```

mod config;
pub(crate) use crate::pipeline::executable;
mod export;
mod exporter;
mod limiter;
mod metrics;
mod record;
mod tls;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

pub use config::{Compression, OtlpConfig, Protocol, TlsFile, TlsFiles};
pub use export::{MAX_BACKOFF, MAX_CONCURRENT_EXPORTS, SUMMARY_INTERVAL};
pub use metrics::OtlpCounts;
pub use tls::TlsError;
pub use record::{severity, EVENT_FAILED, EVENT_SLOW, EVENT_SUPPRESSED, ORDINARY_ERRNOS, SERIOUS_ERRNOS};

use export::{ExportTask, Item};
use limiter::RateLimiter;
use metrics::Metrics;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogExporter, SdkLoggerProvider};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use record::QueuedAnomaly;
use tokio::sync::{mpsc, oneshot};

use crate::{
    pipeline::{clock::WallClock, record_ids::RecordAdmission, resolve::ResolvedPath, Anomaly, OtelAttributes, RecordId, Sink},
    OpenEvent,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("OTLP exporter for {endpoint}: {source}")]
    Build { endpoint: String, source: opentelemetry_otlp::ExporterBuildError },
    #[error("OTLP header {0:?} is not a valid header name and value")]
    Header(String),
    #[error("OTLP HTTP client: {0}")]
    HttpClient(String),
    #[error("OTLP TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("OTLP needs a tokio runtime to start in")]
    NoRuntime,
}

/// Reads and checks the TLS files of an https:// endpoint (or, with no CA
/// file, that the host has a trust store): what start-up would find wrong.
pub fn check_tls(files: &TlsFiles) -> Result<(), TlsError> {
    tls::load(files).map(|_| ())
}

/// Path bytes (as opened plus resolved) the queue holds at most, whatever its
/// length in records: with every path 4 KiB long, a full queue of the default
/// size would otherwise hold about 130 MiB. Past it, anomalies are dropped
/// and counted as `dropped_queue_full`.
pub const MAX_QUEUED_PATH_BYTES: usize = 32 << 20;

/// The running OTLP export. Share it (`Arc<Otlp>`) between the event thread
/// (the sink and the pipeline's record ids) and the signal handler.
#[derive(Debug)]
pub struct Otlp {
    queue: mpsc::Sender<Item>,
    /// Path bytes of the anomalies in the queue (bounded by MAX_QUEUED_PATH_BYTES).
    queued_bytes: Arc<AtomicUsize>,
    limiter: Arc<Mutex<RateLimiter>>,
    metrics: Metrics,
    /// The openers' executables, read as their records are queued.
    executables: Mutex<executable::ExecutableCache>,
    /// Records queued without an executable (the process had exited).
    executable_unknown: Counter,
    stop: Mutex<Option<(oneshot::Sender<Instant>, tokio::task::JoinHandle<()>)>>,
}

/// What `shutdown` achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// All queued records were exported (or failed) before the time ran out.
    pub flushed: bool,
    pub counts: OtlpCounts,
}

impl Otlp {
    /// Builds the OTLP exporter from `config`, registers the self-metrics and
    /// spawns the export task on the current tokio runtime.
    pub fn start(config: OtlpConfig, registry: &mut Registry) -> Result<Otlp, StartError> {
        // The gRPC channel spawns its worker on the runtime as it is built.
        tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (exporter, transport_error) = exporter::build_exporter(&config)?;
        Otlp::start_inner(config, exporter, transport_error, registry)
    }

    /// As `start`, with any SDK `LogExporter` (tests, other transports).
    pub fn start_with_exporter<E: LogExporter + 'static>(
        config: OtlpConfig,
        exporter: E,
        registry: &mut Registry,
    ) -> Result<Otlp, StartError> {
        Otlp::start_inner(config, exporter, Default::default(), registry)
    }

    fn start_inner<E: LogExporter + 'static>(
        config: OtlpConfig,
        mut exporter: E,
        transport_error: exporter::TransportError,
        registry: &mut Registry,
    ) -> Result<Otlp, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        exporter.set_resource(&exporter::resource(&config));
        let metrics = Metrics::register(registry, config.queue_size);
        let executable_unknown = Counter::default();
        registry.sub_registry_with_prefix("otlp").register(
            "executable_unknown",
            "Records queued without process.executable.* because /proc/PID/exe could not be read (the process had exited, or a kernel thread)",
            executable_unknown.clone(),
        );
        let (queue, rx) = mpsc::channel(config.queue_size);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let limiter = Arc::new(Mutex::new(RateLimiter::new(config.rate_limit, config.rate_burst)));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = ExportTask {
            rx,
            queued_bytes: queued_bytes.clone(),
            exporter,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            max_batch: config.max_batch,
            batch_delay: config.batch_delay,
            provider: SdkLoggerProvider::builder().build(),
            scope: InstrumentationScope::builder("badfd").with_version(env!("CARGO_PKG_VERSION")).build(),
            endpoint: config.endpoint.clone(),
            transport_error,
        };
        let handle = runtime.spawn(task.run(stop_rx));
        Ok(Otlp {
            queue,
            queued_bytes,
            limiter,
            metrics,
            executables: Mutex::new(executable::ExecutableCache::default()),
            executable_unknown,
            stop: Mutex::new(Some((stop_tx, handle))),
        })
    }

    /// Whether a record of `comm` failing with `errno` (`None`: a slow open)
    /// at `time` passes the rate limit; if not, it is counted as suppressed
    /// and reported by the next summary record.
    pub fn admit(&self, event: &OpenEvent, time: SystemTime) -> bool {
        let source = limiter::Source { uid: event.uid, cgroup_id: event.cgroup_id };
        let errno = failure_errno(event);
        let admitted = self.limiter.lock().unwrap_or_else(|p| p.into_inner()).admit(source, event.comm_bytes(), errno, Instant::now(), time);
        if !admitted {
            self.metrics.suppressed.inc();
        }
        admitted
    }

    /// Queues one log record for `event`, never blocking: the rate limit, a
    /// fresh record id, the queue. Returns the record's `log.record.uid`
    /// (`to_string()` gives the 32 hex digits), or None when the record was
    /// suppressed by the rate limit or dropped because the queue is full
    /// (both counted). A queued record can still fail to export later; that
    /// is counted too. (`serve` goes through [`OtlpSink`] instead, with the
    /// pipeline's ids.)
    pub fn emit(&self, event: &OpenEvent, resolved: &ResolvedPath) -> Option<LogRecordUid> {
        let time = WallClock::now().wall_ns(event.start_ns);
        if !self.admit(event, crate::pipeline::clock::system_time(time)) {
            return None;
        }
        let id: RecordId = rand::random();
        self.enqueue(event, resolved, time, id, RecordExtras::default()).then_some(LogRecordUid(id))
    }

    /// Puts a copy of the anomaly into the queue as record `id`, never
    /// blocking; whether it is queued (a full queue or a shut down export
    /// counts it dropped).
    fn enqueue(&self, event: &OpenEvent, resolved: &ResolvedPath, wall_ns: u64, id: RecordId, extras: RecordExtras) -> bool {
        let bytes = event.path.len() + resolved.path.len();
        let full = self.queue.capacity() == 0
            || self.queued_bytes.load(Ordering::Relaxed) + bytes > MAX_QUEUED_PATH_BYTES;
        if full && !self.queue.is_closed() {
            // Full: do not copy the event only to throw the copy away.
            self.metrics.dropped_queue_full.inc();
            return false;
        }
        // The pipeline's, read as the anomaly arrived; else read now.
        let executable = match extras.executable {
            Some(known) => known,
            None => self.executables.lock().unwrap_or_else(|p| p.into_inner()).lookup(event.pid, event.tid, &event.comm, Instant::now()),
        };
        let executable_unknown = executable.is_none();
        let anomaly = QueuedAnomaly {
            event: event.clone(),
            resolved: resolved.path.clone(),
            resolution: resolved.how,
            time: crate::pipeline::clock::system_time(wall_ns),
            record_id: id,
            executable,
            container: extras.container,
            found_later: extras.found_later,
            missing: extras.missing,
        };
        // Added before sending so that the task never subtracts first.
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent = self.queue.try_send(Item::Anomaly(anomaly));
        if sent.is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => {
                if executable_unknown {
                    self.executable_unknown.inc();
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped_queue_full.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped_shutdown.inc();
                false
            }
        }
    }

    /// The self-metrics' current values.
    pub fn counts(&self) -> OtlpCounts {
        self.metrics.counts()
    }

    /// Stops taking records and exports what is queued, for at most `timeout`;
    /// what is left then is counted as `dropped_shutdown`. Later calls return at once.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut flushed = true;
        if let Some((tx, mut handle)) = stop {
            let _ = tx.send(deadline);
            // The task honours the deadline itself; the margin only guards against
            // an exporter that ignores cancellation.
            let hard = tokio::time::Instant::from_std(deadline + Duration::from_millis(200));
            flushed = match tokio::time::timeout_at(hard, &mut handle).await {
                Ok(_) => self.metrics.dropped_shutdown.get() == 0,
                Err(_) => {
                    handle.abort();
                    false
                }
            };
        }
        ShutdownReport { flushed, counts: self.counts() }
    }
}

/// The errno a record is rate-limited and named by: that of a failure, none
/// for a slow open.
fn failure_errno(event: &OpenEvent) -> Option<i32> {
    event.errno().filter(|_| event.failed())
}

/// The rate limit decides which anomalies get a record id.
impl RecordAdmission for Otlp {
    fn admit(&self, a: &Anomaly) -> bool {
        Otlp::admit(self, &a.event, a.wall_time())
    }
}

/// One OTLP log record per anomaly with a record id (the pipeline gave it:
/// see [`Pipeline::with_record_ids`](crate::pipeline::Pipeline::with_record_ids)),
/// with its container's attributes.
pub struct OtlpSink {
    pub otlp: Arc<Otlp>,
}

impl Sink for OtlpSink {
    fn accept(&mut self, batch: &[Anomaly]) {
        for a in batch {
            if let Some(id) = a.record_id {
                let extras = RecordExtras {
                    container: a.container_attributes.clone(),
                    found_later: a.found_later,
                    missing: a.missing.clone(),
                    executable: a.executable.clone(),
                };
                self.otlp.enqueue(&a.event, &a.resolved, a.wall_ns, id, extras);
            }
        }
    }
}

/// What the pipeline knows of an anomaly beyond its event and path.
#[derive(Default)]
struct RecordExtras {
    container: Option<OtelAttributes>,
    found_later: Option<bool>,
    missing: Option<crate::pipeline::missing::MissingComponent>,
    /// The pipeline's executable stage's answer (`Some(None)`: looked up,
    /// unreadable); `None` where it did not run.
    executable: Option<Option<std::sync::Arc<[u8]>>>,
}

/// A record's `log.record.uid`: its record id as 32 lowercase hex digits
/// (`Display`), the value the metrics' exemplars carry as `log_record_uid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogRecordUid(pub RecordId);

impl std::fmt::Display for LogRecordUid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The exemplar label that names a log record: OpenMetrics label names allow
/// no dots, so `log.record.uid` becomes `log_record_uid`. Grafana's
/// `exemplarTraceIdDestinations` takes this name (dashboards/provisioning).
pub const EXEMPLAR_LABEL: &str = "log_record_uid";

/// The OpenMetrics exemplar labels `{log_record_uid="<32 hex digits>"}` that
/// point at the log record `emit` returned `uid` for (the metrics sink writes
/// its exemplars itself, from the anomaly's record id).
pub fn exemplar_labels(uid: LogRecordUid) -> Vec<(String, String)> {
    vec![(EXEMPLAR_LABEL.to_string(), uid.to_string())]
}

/// `Otlp` is shared between the event loop and the signal handler.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Otlp>();
};

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::logs::LogBatch;

    use super::*;
    use crate::config::OtlpArgs;

    fn config(endpoint: &str) -> OtlpConfig {
        OtlpArgs::with_endpoint(endpoint, Protocol::Grpc).resolve_with(|_| None).unwrap().unwrap()
    }

    #[test]
    fn exemplars_name_the_records_uid() {
        use prometheus_client::metrics::exemplar::CounterWithExemplar;
        let id = LogRecordUid([0xab; 16]);
        let mut registry = Registry::with_prefix("badfd");
        let failures = CounterWithExemplar::<Vec<(String, String)>>::default();
        registry.register("open_failures", "Failed opens", failures.clone());
        failures.inc_by(1, Some(exemplar_labels(id)), None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(&format!("badfd_open_failures_total 1 # {{log_record_uid=\"{}\"}} 1", "ab".repeat(16))),
            "{text}"
        );
    }

    /// An exporter whose requests never finish: a collector that hangs.
    #[derive(Debug)]
    struct Hanging;

    impl LogExporter for Hanging {
        async fn export(&self, _batch: LogBatch<'_>) -> opentelemetry_sdk::error::OTelSdkResult {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn queued_path_bytes_are_bounded_and_drops_counted() {
        let path = vec![b'p'; 4000];
        let event = OpenEvent {
            ret: -2,
            pid: 1,
            tid: 1,
            flags: exporter_common::EVENT_FAILED,
            comm: [b'x'; 16],
            path: path.clone(),
            ..Default::default()
        };
        let resolved = ResolvedPath { path, how: crate::pipeline::resolve::Resolution::Absolute };
        let mut c = config("http://127.0.0.1:1");
        c.rate_limit = 0;
        let mut registry = Registry::default();
        let otlp = Otlp::start_with_exporter(c, Hanging, &mut registry).unwrap();
        const SENT: u64 = 12_000;
        let accepted = (0..SENT).filter(|_| otlp.emit(&event, &resolved).is_some()).count() as u64;
        // The record bound (16384) would take them all; the byte bound holds
        // 32 MiB / 8000 B in the queue, plus what the task took out for sending
        // (4 requests in flight and one batch of 512 being filled).
        let in_queue = (MAX_QUEUED_PATH_BYTES / 8000) as u64;
        assert!(accepted >= in_queue && accepted <= in_queue + 5 * 512, "accepted {accepted}");
        assert_eq!(otlp.counts().dropped_queue_full, SENT - accepted);
        let report = otlp.shutdown(Duration::from_millis(100)).await;
        assert_eq!(report.counts.anomalies_accounted(), SENT, "{:?}", report.counts);
        assert_eq!(report.counts.dropped_shutdown, accepted);
    }

    #[test]
    fn start_needs_a_runtime_and_registers_nothing_without_one() {
        let mut registry = Registry::default();
        let err = Otlp::start(config("http://127.0.0.1:4317"), &mut registry).unwrap_err();
        assert!(matches!(err, StartError::NoRuntime), "{err}");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("otlp"), "{text}");
    }
}

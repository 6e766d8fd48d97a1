//! One OpenTelemetry log record per anomaly, sent over OTLP (gRPC or
//! HTTP/protobuf) without ever letting a slow or absent collector hurt the host.
//!
//! The event loop calls [`Otlp::emit`], which never blocks and never waits: it
//! applies the per-(command, errno) rate limit, then puts a copy of the anomaly
//! into a bounded queue (or counts it dropped when the queue is full). One tokio
//! task takes batches from the queue, turns them into SDK log records and drives
//! the OTLP `LogExporter` itself (its own retries with backoff, bounded by the
//! timeout), so that every record's fate is counted exactly in
//! `badfd_otlp_records_total` — the SDK's batch processor would only report drops
//! at shutdown. After a failed batch the task backs off (up to 10 s) before
//! sending again; the queue absorbs what it can meanwhile and counts the rest.
//!
//! How `badfd serve` uses it:
//!
//! ```ignore
//! #[derive(clap::Args)]
//! struct ServeArgs {
//!     #[command(flatten)]
//!     otlp: badfd::otlp::OtlpArgs,
//!     // ...
//! }
//!
//! // Inside the tokio runtime; `registry` carries the `badfd` prefix.
//! let otlp = match args.otlp.resolve()? {
//!     Some(config) => Some(badfd::otlp::Otlp::start(config, &mut registry)?),
//!     None => None, // OTLP off: nothing spawned, nothing registered
//! };
//! // In the event loop, for each anomaly:
//! let resolved = resolver.resolve(&event);
//! let trace_id = otlp.as_ref().and_then(|o| o.emit(&event, &resolved));
//! // The same id on the metrics side, as an OpenMetrics exemplar, so a user can
//! // jump from a bucket or a counter to the exact log record:
//! let exemplar = trace_id.map(|id| vec![("trace_id".to_string(), id.to_string())]);
//! failures.get_or_create(&labels).inc_by(1, exemplar);          // CounterWithExemplar
//! slow_opens.get_or_create(&labels).observe(seconds, exemplar); // HistogramWithExemplars
//! // On SIGTERM:
//! if let Some(o) = &otlp { o.shutdown(Duration::from_secs(5)).await; }
//! ```

mod config;
mod limiter;
mod metrics;
mod record;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use config::{Compression, ConfigError, OtlpArgs, OtlpConfig, Protocol};
pub use metrics::OtlpCounts;
use metrics::Metrics;
pub use opentelemetry::TraceId;
use opentelemetry::{logs::Logger as _, logs::LoggerProvider as _, InstrumentationScope, KeyValue, SpanId};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::{
    logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider},
    Resource,
};
use prometheus_client::registry::Registry;
pub use record::{severity, EVENT_FAILED, EVENT_SLOW, EVENT_SUPPRESSED, ORDINARY_ERRNOS, SERIOUS_ERRNOS};
use record::{QueuedAnomaly, Suppressed};
use tokio::sync::{mpsc, oneshot};

use crate::{resolve::ResolvedPath, OpenEvent};
use limiter::RateLimiter;

/// How often suppression summaries are sent (and rate-limit buckets forgotten).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause after failed exports before the next try.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("OTLP exporter for {endpoint}: {source}")]
    Build { endpoint: String, source: opentelemetry_otlp::ExporterBuildError },
    #[error("OTLP header {0:?} is not a valid gRPC metadata entry")]
    Header(String),
    #[error("OTLP needs a tokio runtime to start in")]
    NoRuntime,
}

#[derive(Debug)]
enum Item {
    Anomaly(QueuedAnomaly),
    Summary(Suppressed),
}

/// The running pipeline. Share it (`Arc<Otlp>`) between the event loop and the
/// signal handler.
#[derive(Debug)]
pub struct Otlp {
    queue: mpsc::Sender<Item>,
    limiter: Arc<Mutex<RateLimiter>>,
    metrics: Metrics,
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
        let exporter = build_exporter(&config)?;
        Otlp::start_with_exporter(config, exporter, registry)
    }

    /// As `start`, with any SDK `LogExporter` (tests, other transports).
    pub fn start_with_exporter<E: LogExporter + 'static>(
        config: OtlpConfig,
        mut exporter: E,
        registry: &mut Registry,
    ) -> Result<Otlp, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        exporter.set_resource(&resource(&config));
        let metrics = Metrics::register(registry, config.queue_size);
        let (queue, rx) = mpsc::channel(config.queue_size);
        let limiter = Arc::new(Mutex::new(RateLimiter::new(config.rate_limit, config.rate_burst)));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = ExportTask {
            rx,
            exporter,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            max_batch: config.max_batch,
            batch_delay: config.batch_delay,
            provider: SdkLoggerProvider::builder().build(),
            scope: InstrumentationScope::builder("badfd").with_version(env!("CARGO_PKG_VERSION")).build(),
        };
        let handle = runtime.spawn(task.run(stop_rx));
        Ok(Otlp { queue, limiter, metrics, stop: Mutex::new(Some((stop_tx, handle))) })
    }

    /// Queues one log record for `event`, never blocking. Returns the record's
    /// trace id (16 random bytes; `to_string()` gives the 32 hex digits) for an
    /// exemplar, or None when the record was suppressed by the rate limit or
    /// dropped because the queue is full (both counted).
    pub fn emit(&self, event: &OpenEvent, resolved: &ResolvedPath) -> Option<TraceId> {
        let errno = event.errno().filter(|_| event.failed());
        let wall = record::monotonic_to_wall(event.start_ns);
        let admitted = self.limiter.lock().unwrap_or_else(|p| p.into_inner()).admit(
            event.comm_bytes(),
            errno,
            Instant::now(),
            wall,
        );
        if !admitted {
            self.metrics.suppressed.inc();
            return None;
        }
        let ids: [u8; 24] = rand::random();
        let trace_id = TraceId::from_bytes(ids[..16].try_into().expect("16 bytes"));
        let anomaly = QueuedAnomaly {
            event: event.clone(),
            resolved: resolved.path.clone(),
            resolution: resolved.how,
            time: wall,
            trace_id,
            span_id: SpanId::from_bytes(ids[16..].try_into().expect("8 bytes")),
        };
        match self.queue.try_send(Item::Anomaly(anomaly)) {
            Ok(()) => Some(trace_id),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped_queue_full.inc();
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped_shutdown.inc();
                None
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

/// `service.name`, `host.name`, the configured resource attributes, and the
/// SDK's `telemetry.sdk.*`.
fn resource(config: &OtlpConfig) -> Resource {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let mut attributes: Vec<KeyValue> =
        config.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    if !config.resource_attributes.iter().any(|(k, _)| k == "host.name") && !host.is_empty() {
        attributes.push(KeyValue::new("host.name", host));
    }
    Resource::builder_empty()
        .with_detector(Box::new(opentelemetry_sdk::resource::TelemetryResourceDetector))
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

fn build_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::LogExporter, StartError> {
    let built = match config.protocol {
        Protocol::Grpc => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout);
            if config.compression == Compression::Gzip {
                b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // Set in an interceptor, which runs after the SDK has added the headers
            // it reads from the environment, so that the flag's values win.
            let mut headers = Vec::new();
            for (k, v) in &config.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| StartError::Header(k.clone()))?;
                let value = tonic::metadata::MetadataValue::try_from(v.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                headers.push((key, value));
            }
            if !headers.is_empty() {
                b = b.with_interceptor(move |mut req: tonic::Request<()>| {
                    for (k, v) in &headers {
                        req.metadata_mut().insert(k.clone(), v.clone());
                    }
                    Ok(req)
                });
            }
            b.build()
        }
        Protocol::HttpProtobuf => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout);
            if config.compression == Compression::Gzip {
                b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            if !config.headers.is_empty() {
                b = b.with_headers(config.headers.iter().cloned().collect());
            }
            b.build()
        }
    };
    built.map_err(|source| StartError::Build { endpoint: config.endpoint.clone(), source })
}

struct ExportTask<E> {
    rx: mpsc::Receiver<Item>,
    exporter: E,
    limiter: Arc<Mutex<RateLimiter>>,
    metrics: Metrics,
    max_batch: usize,
    batch_delay: Duration,
    /// A provider without processors: only the source of fresh SDK records.
    provider: SdkLoggerProvider,
    scope: InstrumentationScope,
}

impl<E: LogExporter> ExportTask<E> {
    async fn run(mut self, mut stop: oneshot::Receiver<Instant>) {
        use tokio::time::{sleep_until, Instant as TokioInstant};
        let logger = self.provider.logger("badfd");
        let mut batch: Vec<Item> = Vec::with_capacity(self.max_batch);
        let mut oldest: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut not_before = Instant::now();
        let mut summaries = tokio::time::interval(SUMMARY_INTERVAL);
        summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = loop {
            self.metrics.queue_records.set((self.rx.len() + batch.len()) as i64);
            let full = batch.len() >= self.max_batch;
            let room = self.max_batch.saturating_sub(batch.len());
            // Send when the batch is full or its oldest record has waited long
            // enough, but never before the backoff after a failure has passed.
            let send_at = if full { Some(not_before) } else { oldest.map(|t| (t + self.batch_delay).max(not_before)) };
            tokio::select! {
                biased;
                d = &mut stop => break d.unwrap_or_else(|_| Instant::now()),
                _ = sleep_until(TokioInstant::from_std(send_at.unwrap_or_else(Instant::now))), if send_at.is_some() => {
                    let ok = self.export(&logger, &mut batch, None).await;
                    oldest = None;
                    if ok {
                        backoff = Duration::ZERO;
                    } else {
                        backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    }
                    not_before = Instant::now() + backoff;
                }
                n = self.rx.recv_many(&mut batch, room), if !full => {
                    if n == 0 {
                        // Every sender is gone: the Otlp was dropped without shutdown.
                        break Instant::now() + Duration::from_secs(1);
                    }
                    oldest.get_or_insert_with(Instant::now);
                }
                _ = summaries.tick() => {
                    let now = Instant::now();
                    let taken = self.limiter.lock().unwrap_or_else(|p| p.into_inner()).take_summaries(now);
                    if !taken.is_empty() {
                        batch.extend(taken.into_iter().map(Item::Summary));
                        oldest.get_or_insert(now);
                    }
                }
            }
        };
        self.drain(&logger, batch, deadline).await;
    }

    /// Exports everything queued until `deadline`; counts the rest as dropped.
    async fn drain(&mut self, logger: &SdkLogger, mut batch: Vec<Item>, deadline: Instant) {
        self.rx.close();
        let taken = self.limiter.lock().unwrap_or_else(|p| p.into_inner()).take_summaries(Instant::now());
        batch.extend(taken.into_iter().map(Item::Summary));
        loop {
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            if Instant::now() >= deadline || !self.export(logger, &mut batch, Some(deadline)).await {
                // Out of time (or the collector is failing): what is left cannot go.
                self.count_shutdown_drops(&batch);
                batch.clear();
                while let Ok(item) = self.rx.try_recv() {
                    self.count_shutdown_drops(std::slice::from_ref(&item));
                }
                break;
            }
        }
        self.metrics.queue_records.set(0);
        let _ = self.exporter.shutdown_with_timeout(deadline.saturating_duration_since(Instant::now()));
    }

    fn count_shutdown_drops(&self, items: &[Item]) {
        for item in items {
            match item {
                Item::Anomaly(_) => self.metrics.dropped_shutdown.inc(),
                Item::Summary(_) => self.metrics.summaries_dropped_shutdown.inc(),
            };
        }
    }

    /// Sends `batch` (emptying it) and counts its records. With a deadline, a
    /// batch still in flight then is counted as dropped at shutdown.
    async fn export(&mut self, logger: &SdkLogger, batch: &mut Vec<Item>, deadline: Option<Instant>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let records: Vec<SdkLogRecord> = batch
            .iter()
            .map(|item| {
                let mut r = logger.create_log_record();
                match item {
                    Item::Anomaly(a) => record::fill_anomaly(&mut r, a),
                    Item::Summary(s) => record::fill_summary(&mut r, s, SUMMARY_INTERVAL),
                }
                r
            })
            .collect();
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = records.iter().map(|r| (r, &self.scope)).collect();
        let sent = self.exporter.export(LogBatch::new(&refs));
        let result = match deadline {
            None => Some(sent.await),
            Some(d) => tokio::time::timeout_at(tokio::time::Instant::from_std(d), sent).await.ok(),
        };
        let anomalies = batch.iter().filter(|i| matches!(i, Item::Anomaly(_))).count() as u64;
        let summaries = batch.len() as u64 - anomalies;
        batch.clear();
        match result {
            Some(Ok(())) => {
                self.metrics.requests_success.inc();
                self.metrics.exported.inc_by(anomalies);
                self.metrics.summaries_exported.inc_by(summaries);
                true
            }
            Some(Err(e)) => {
                self.metrics.requests_failure.inc();
                self.metrics.dropped_export_failed.inc_by(anomalies);
                self.metrics.summaries_dropped_export_failed.inc_by(summaries);
                tracing::warn!("OTLP export of {} records failed: {e}", anomalies + summaries);
                false
            }
            None => {
                self.metrics.requests_failure.inc();
                self.metrics.dropped_shutdown.inc_by(anomalies);
                self.metrics.summaries_dropped_shutdown.inc_by(summaries);
                false
            }
        }
    }
}

/// `Otlp` is shared between the event loop and the signal handler.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Otlp>();
};

//! One OpenTelemetry log record per anomaly, sent over OTLP (gRPC or
//! HTTP/protobuf) without ever letting a slow or absent collector hurt the host.
//!
//! The event loop calls [`Otlp::emit`], which never blocks and never waits: it
//! applies the per-(command, errno) rate limit, then puts a copy of the anomaly
//! into a bounded queue (or counts it dropped when the queue is full). One tokio
//! task takes batches from the queue and hands each to a request task (at most
//! `MAX_CONCURRENT_EXPORTS` in flight) that turns it into SDK log records and
//! drives the OTLP `LogExporter` directly (the exporter retries retryable
//! failures with backoff within its timeout), so that every record's fate is
//! counted exactly in
//! `badfd_otlp_records_total` — the SDK's batch processor would only report drops
//! at shutdown. After a failed batch the task backs off (up to 10 s) before
//! sending again; the queue absorbs what it can meanwhile and counts the rest.
//!
//! How `badfd serve` uses it:
//!
//! ```ignore
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
//! let exemplar = trace_id.map(badfd::otlp::exemplar_labels);
//! failures.get_or_create(&labels).inc_by(1, exemplar.clone(), None);   // CounterWithExemplar
//! slow_opens.get_or_create(&labels).observe(seconds, exemplar, None);  // HistogramWithExemplars
//! // On SIGTERM:
//! if let Some(o) = &otlp { o.shutdown(Duration::from_secs(5)).await; }
//! ```

mod config;
mod limiter;
mod metrics;
mod record;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

pub use config::{Compression, OtlpConfig, Protocol};
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
    #[error("OTLP header {0:?} is not a valid header name and value")]
    Header(String),
    #[error("OTLP HTTP client: {0}")]
    HttpClient(String),
    #[error("OTLP endpoint {0}: this badfd is built without TLS; use an http:// endpoint (a local collector or agent)")]
    NoTls(String),
    #[error("OTLP needs a tokio runtime to start in")]
    NoRuntime,
}

#[derive(Debug)]
enum Item {
    Anomaly(QueuedAnomaly),
    Summary(Suppressed),
}

impl Item {
    fn path_bytes(&self) -> usize {
        match self {
            Item::Anomaly(a) => a.event.path.len() + a.resolved.len(),
            Item::Summary(_) => 0,
        }
    }
}

/// Path bytes (as opened plus resolved) the queue holds at most, whatever its
/// length in records: with every path 4 KiB long, a full queue of the default
/// size would otherwise hold about 130 MiB. Past it, anomalies are dropped
/// and counted as `dropped_queue_full`.
pub const MAX_QUEUED_PATH_BYTES: usize = 32 << 20;

/// The running pipeline. Share it (`Arc<Otlp>`) between the event loop and the
/// signal handler.
#[derive(Debug)]
pub struct Otlp {
    queue: mpsc::Sender<Item>,
    /// Path bytes of the anomalies in the queue (bounded by MAX_QUEUED_PATH_BYTES).
    queued_bytes: Arc<AtomicUsize>,
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
        // The gRPC channel spawns its worker on the runtime as it is built.
        tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
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
        };
        let handle = runtime.spawn(task.run(stop_rx));
        Ok(Otlp { queue, queued_bytes, limiter, metrics, stop: Mutex::new(Some((stop_tx, handle))) })
    }

    /// Queues one log record for `event`, never blocking. Returns the record's
    /// trace id (16 random bytes; `to_string()` gives the 32 hex digits) for an
    /// exemplar (see `exemplar_labels`), or None when the record was suppressed
    /// by the rate limit or dropped because the queue is full (both counted). A
    /// queued record can still fail to export later; that is counted too.
    pub fn emit(&self, event: &OpenEvent, resolved: &ResolvedPath) -> Option<TraceId> {
        self.emit_with_container(event, resolved, None)
    }

    /// As `emit`, with the attributes of the opener's container and pod
    /// (`container.id`, `k8s.pod.name`, ...) added to the record.
    pub fn emit_with_container(
        &self,
        event: &OpenEvent,
        resolved: &ResolvedPath,
        container: Option<crate::pipeline::OtelAttributes>,
    ) -> Option<TraceId> {
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
        let bytes = event.path.len() + resolved.path.len();
        let full = self.queue.capacity() == 0
            || self.queued_bytes.load(Ordering::Relaxed) + bytes > MAX_QUEUED_PATH_BYTES;
        if full && !self.queue.is_closed() {
            // Full: do not copy the event only to throw the copy away.
            self.metrics.dropped_queue_full.inc();
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
            container,
        };
        // Added before sending so that the task never subtracts first.
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent = self.queue.try_send(Item::Anomaly(anomaly));
        if sent.is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        match sent {
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

/// The OpenMetrics exemplar labels `{trace_id="<32 hex digits>"}` that point
/// at the log record `emit` returned `trace_id` for.
pub fn exemplar_labels(trace_id: TraceId) -> Vec<(String, String)> {
    vec![("trace_id".to_string(), trace_id.to_string())]
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
    if config.endpoint.starts_with("https://") {
        return Err(StartError::NoTls(config.endpoint.clone()));
    }
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
                // The SDK adds the headers of the OTEL_ variables over those given
                // to it; set the flag's last, in the client, so that they win.
                let mut headers = Vec::new();
                for (k, v) in &config.headers {
                    let name = http::HeaderName::try_from(k.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                    let value = http::HeaderValue::try_from(v.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                    headers.push((name, value));
                }
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| StartError::HttpClient(e.to_string()))?;
                b = b.with_http_client(WithHeaders { client, headers });
            }
            b.build()
        }
    };
    built.map_err(|source| StartError::Build { endpoint: config.endpoint.clone(), source })
}

/// Export requests in flight at once: a collector's round trip does not cap
/// the throughput.
pub const MAX_CONCURRENT_EXPORTS: usize = 4;

/// An HTTP client that sets the configured headers on every request.
#[derive(Debug)]
struct WithHeaders {
    client: reqwest::Client,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for WithHeaders {
    async fn send_bytes(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        self.client.send_bytes(request).await
    }
}

struct ExportTask<E> {
    rx: mpsc::Receiver<Item>,
    queued_bytes: Arc<AtomicUsize>,
    exporter: E,
    limiter: Arc<Mutex<RateLimiter>>,
    metrics: Metrics,
    max_batch: usize,
    batch_delay: Duration,
    /// A provider without processors: only the source of fresh SDK records.
    provider: SdkLoggerProvider,
    scope: InstrumentationScope,
}

/// Export requests running as tasks of their own, with the number of
/// anomalies and summaries each carries (to count them if aborted).
struct InFlight {
    set: tokio::task::JoinSet<Result<(), String>>,
    sizes: std::collections::HashMap<tokio::task::Id, (u64, u64)>,
}

impl<E: LogExporter + 'static> ExportTask<E> {
    async fn run(self, mut stop: oneshot::Receiver<Instant>) {
        use tokio::time::{sleep_until, Instant as TokioInstant};
        let ExportTask { mut rx, queued_bytes, exporter, limiter, metrics, max_batch, batch_delay, provider, scope } = self;
        let exporter = Arc::new(exporter);
        let logger = provider.logger("badfd");
        let sender = Sender { exporter, logger, scope: Arc::new(scope), metrics: metrics.clone() };
        let mut in_flight = InFlight { set: tokio::task::JoinSet::new(), sizes: Default::default() };
        let mut batch: Vec<Item> = Vec::with_capacity(max_batch);
        let mut oldest: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut not_before = Instant::now();
        let mut summaries = tokio::time::interval(SUMMARY_INTERVAL);
        summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = loop {
            metrics.queue_records.set((rx.len() + batch.len()) as i64);
            let full = batch.len() >= max_batch;
            let room = max_batch.saturating_sub(batch.len());
            // Send when the batch is full or its oldest record has waited long
            // enough, but never before the backoff after a failure has passed,
            // and with at most MAX_CONCURRENT_EXPORTS requests in flight.
            let send_at = if full { Some(not_before) } else { oldest.map(|t| (t + batch_delay).max(not_before)) };
            let can_send = send_at.is_some() && in_flight.set.len() < MAX_CONCURRENT_EXPORTS;
            tokio::select! {
                biased;
                // Err: the Otlp was dropped without shutdown; give the queue a second.
                d = &mut stop => break d.unwrap_or_else(|_| Instant::now() + Duration::from_secs(1)),
                Some(done) = in_flight.set.join_next_with_id(), if !in_flight.set.is_empty() => {
                    if sender.finish(&mut in_flight, done, false) {
                        backoff = Duration::ZERO;
                    } else {
                        backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                        not_before = Instant::now() + backoff;
                    }
                }
                _ = sleep_until(TokioInstant::from_std(send_at.unwrap_or_else(Instant::now))), if can_send => {
                    sender.spawn(&mut in_flight, std::mem::replace(&mut batch, Vec::with_capacity(max_batch)));
                    oldest = None;
                }
                n = rx.recv_many(&mut batch, room), if !full => {
                    let taken: usize = batch[batch.len() - n..].iter().map(Item::path_bytes).sum();
                    queued_bytes.fetch_sub(taken, Ordering::Relaxed);
                    if n == 0 {
                        // Every sender is gone: the Otlp was dropped without shutdown.
                        break Instant::now() + Duration::from_secs(1);
                    }
                    oldest.get_or_insert_with(Instant::now);
                }
                _ = summaries.tick() => {
                    let now = Instant::now();
                    let taken = limiter.lock().unwrap_or_else(|p| p.into_inner()).take_summaries(now);
                    if !taken.is_empty() {
                        batch.extend(taken.into_iter().map(Item::Summary));
                        oldest.get_or_insert(now);
                    }
                }
            }
        };

        // Shutdown: no new records; send what is queued until the deadline.
        rx.close();
        let taken = limiter.lock().unwrap_or_else(|p| p.into_inner()).take_summaries(Instant::now());
        batch.extend(taken.into_iter().map(Item::Summary));
        let tokio_deadline = TokioInstant::from_std(deadline);
        let mut failed = false;
        loop {
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if batch.is_empty() && in_flight.set.is_empty() {
                break;
            }
            if !batch.is_empty() && !failed && in_flight.set.len() < MAX_CONCURRENT_EXPORTS {
                sender.spawn(&mut in_flight, std::mem::replace(&mut batch, Vec::with_capacity(max_batch)));
                continue;
            }
            if batch.is_empty() || failed {
                if failed {
                    // The collector is failing: what is not sent yet cannot go.
                    sender.count_shutdown_drops(&batch);
                    batch.clear();
                    while let Ok(item) = rx.try_recv() {
                        sender.count_shutdown_drops(std::slice::from_ref(&item));
                    }
                }
                if in_flight.set.is_empty() {
                    break;
                }
            }
            match tokio::time::timeout_at(tokio_deadline, in_flight.set.join_next_with_id()).await {
                Ok(Some(done)) => failed |= !sender.finish(&mut in_flight, done, true),
                Ok(None) => {}
                Err(_) => {
                    // Out of time: requests in flight and records queued are dropped.
                    in_flight.set.abort_all();
                    while let Some(done) = in_flight.set.join_next_with_id().await {
                        sender.finish(&mut in_flight, done, true);
                    }
                    sender.count_shutdown_drops(&batch);
                    batch.clear();
                    while let Ok(item) = rx.try_recv() {
                        sender.count_shutdown_drops(std::slice::from_ref(&item));
                    }
                    break;
                }
            }
        }
        metrics.queue_records.set(0);
        let _ = sender.exporter.shutdown_with_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// What an export request task needs.
struct Sender<E> {
    exporter: Arc<E>,
    logger: SdkLogger,
    scope: Arc<InstrumentationScope>,
    metrics: Metrics,
}

impl<E: LogExporter + 'static> Sender<E> {
    /// Sends `batch` as one request in a task of its own.
    fn spawn(&self, in_flight: &mut InFlight, batch: Vec<Item>) {
        let anomalies = batch.iter().filter(|i| matches!(i, Item::Anomaly(_))).count() as u64;
        let summaries = batch.len() as u64 - anomalies;
        let (exporter, logger, scope) = (self.exporter.clone(), self.logger.clone(), self.scope.clone());
        let handle = in_flight.set.spawn(async move {
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
            drop(batch);
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = records.iter().map(|r| (r, &*scope)).collect();
            exporter.export(LogBatch::new(&refs)).await.map_err(|e| e.to_string())
        });
        in_flight.sizes.insert(handle.id(), (anomalies, summaries));
    }

    /// Counts the records of a finished (or aborted) request; whether it succeeded.
    fn finish(
        &self,
        in_flight: &mut InFlight,
        done: Result<(tokio::task::Id, Result<(), String>), tokio::task::JoinError>,
        shutting_down: bool,
    ) -> bool {
        let (id, result) = match done {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let (anomalies, summaries) = in_flight.sizes.remove(&id).unwrap_or_default();
        let m = &self.metrics;
        match result {
            Ok(Ok(())) => {
                m.requests_success.inc();
                m.exported.inc_by(anomalies);
                m.summaries_exported.inc_by(summaries);
                true
            }
            Ok(Err(e)) => {
                m.requests_failure.inc();
                m.dropped_export_failed.inc_by(anomalies);
                m.summaries_dropped_export_failed.inc_by(summaries);
                if !shutting_down {
                    tracing::warn!("OTLP export of {} records failed: {e}", anomalies + summaries);
                }
                false
            }
            // Aborted at the shutdown deadline (or panicked).
            Err(_) => {
                m.requests_failure.inc();
                m.dropped_shutdown.inc_by(anomalies);
                m.summaries_dropped_shutdown.inc_by(summaries);
                false
            }
        }
    }

    fn count_shutdown_drops(&self, items: &[Item]) {
        for item in items {
            match item {
                Item::Anomaly(_) => self.metrics.dropped_shutdown.inc(),
                Item::Summary(_) => self.metrics.summaries_dropped_shutdown.inc(),
            };
        }
    }
}

/// `Otlp` is shared between the event loop and the signal handler.
const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Otlp>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpArgs;

    fn config(endpoint: &str) -> OtlpConfig {
        OtlpArgs::with_endpoint(endpoint, Protocol::Grpc).resolve_with(|_| None).unwrap().unwrap()
    }

    #[test]
    fn exemplars_name_the_records_trace_id() {
        use prometheus_client::metrics::exemplar::CounterWithExemplar;
        let id = TraceId::from_bytes([0xab; 16]);
        let mut registry = Registry::with_prefix("badfd");
        let failures = CounterWithExemplar::<Vec<(String, String)>>::default();
        registry.register("open_failures", "Failed opens", failures.clone());
        failures.inc_by(1, Some(exemplar_labels(id)), None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(&format!("badfd_open_failures_total 1 # {{trace_id=\"{}\"}} 1", "ab".repeat(16))),
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
        let resolved = ResolvedPath { path, how: crate::resolve::Resolution::Absolute };
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
    fn https_is_refused_with_a_clear_error() {
        let err = build_exporter(&config("https://collector:4317")).unwrap_err();
        assert!(matches!(err, StartError::NoTls(_)), "{err}");
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

//! The export task: takes batches from the queue and sends each as one
//! request (a few in flight at once), backs off after failures, adds the
//! rate limit's summary records every second, and counts every record's fate.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use opentelemetry::{logs::Logger as _, logs::LoggerProvider as _, InstrumentationScope};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use tokio::sync::{mpsc, oneshot};

use super::{
    limiter::RateLimiter,
    metrics::Metrics,
    record::{self, QueuedAnomaly, Suppressed},
};

/// How often suppression summaries are sent (and rate-limit buckets forgotten).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause after failed exports before the next try.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Export requests in flight at once: a collector's round trip does not cap
/// the throughput.
pub const MAX_CONCURRENT_EXPORTS: usize = 4;

/// What the queue carries.
#[derive(Debug)]
pub(super) enum Item {
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


pub(super) struct ExportTask<E> {
    pub(super) rx: mpsc::Receiver<Item>,
    pub(super) queued_bytes: Arc<AtomicUsize>,
    pub(super) exporter: E,
    pub(super) limiter: Arc<Mutex<RateLimiter>>,
    pub(super) metrics: Metrics,
    pub(super) max_batch: usize,
    pub(super) batch_delay: Duration,
    /// A provider without processors: only the source of fresh SDK records.
    pub(super) provider: SdkLoggerProvider,
    pub(super) scope: InstrumentationScope,
    /// For the log line of a failing collector.
    pub(super) endpoint: String,
    pub(super) transport_error: super::exporter::TransportError,
}

/// Export requests running as tasks of their own, with the number of
/// anomalies and summaries each carries (to count them if aborted).
struct InFlight {
    set: tokio::task::JoinSet<Result<(), String>>,
    sizes: std::collections::HashMap<tokio::task::Id, (u64, u64)>,
}

impl<E: LogExporter + 'static> ExportTask<E> {
    pub(super) async fn run(self, mut stop: oneshot::Receiver<Instant>) {
        use tokio::time::{sleep_until, Instant as TokioInstant};
        let ExportTask { mut rx, queued_bytes, exporter, limiter, metrics, max_batch, batch_delay, provider, scope, endpoint, transport_error } = self;
        let exporter = Arc::new(exporter);
        let logger = provider.logger("badfd");
        let sender = Sender {
            exporter,
            logger,
            scope: Arc::new(scope),
            metrics: metrics.clone(),
            endpoint,
            transport_error,
            failed_in_a_row: AtomicU64::new(0),
        };
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
    endpoint: String,
    /// The HTTP client's last error with its causes, which the SDK's error lacks.
    transport_error: super::exporter::TransportError,
    /// Requests failed since the last success: the first of a streak is
    /// logged, the rest only counted, so that a collector that keeps failing
    /// (down, or a certificate it will never accept) gives one log line, not
    /// one per batch.
    failed_in_a_row: AtomicU64,
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
                let failed = self.failed_in_a_row.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    tracing::info!("OTLP export to {} works again ({failed} requests failed before)", self.endpoint);
                }
                m.requests_success.inc();
                m.exported.inc_by(anomalies);
                m.summaries_exported.inc_by(summaries);
                true
            }
            Ok(Err(e)) => {
                m.requests_failure.inc();
                m.dropped_export_failed.inc_by(anomalies);
                m.summaries_dropped_export_failed.inc_by(summaries);
                let streak = self.failed_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                let cause = self.transport_error.lock().unwrap_or_else(|p| p.into_inner()).take();
                let e = match cause {
                    Some(cause) => format!("{e} ({cause})"),
                    None => e,
                };
                if streak == 1 && !shutting_down {
                    tracing::error!(
                        "OTLP export of {} records to {} failed: {}; further failures are counted in \
                         badfd_otlp_records_total{{outcome=\"dropped_export_failed\"}} and not logged until an export succeeds",
                        anomalies + summaries,
                        self.endpoint,
                        explain(&e)
                    );
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

/// The SDK's error, with what to do about it when it is a certificate the
/// TLS handshake refused (the text is rustls's, through tonic or reqwest).
fn explain(error: &str) -> String {
    let hint = if error.contains("UnknownIssuer") || error.contains("invalid peer certificate") {
        " (the collector's certificate is not signed by a trusted CA: give its CA in OTEL_EXPORTER_OTLP_CERTIFICATE)"
    } else if error.contains("CertificateRequired") || error.contains("certificate required") {
        " (the collector requires a client certificate: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY)"
    } else {
        ""
    };
    format!("{error}{hint}")
}

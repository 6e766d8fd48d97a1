//! `badfd serve`: the Prometheus exporter.
//!
//! Threads: the tokio runtime serves HTTP and handles signals; one event thread
//! drains the ring buffer and feeds the pipeline (decode, resolve, label, sinks)
//! so that a flood of anomalies never delays a scrape and vice versa.

use std::{
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use badfd::{
    http::{router, AppState},
    metrics::{AggregatesCollector, Aggregates, AnomalyMetrics, Exposition, KernelCollector, SharedProbe},
    pipeline::{Pipeline, PipelineStats, Sink},
    probe::{ringbuf_size, EventReader, POLL_INTERVAL},
    otlp::{Otlp, OtlpArgs},
    pipeline::Anomaly,
    privileges::{drop_capabilities, PrivilegeArgs},
    settings::{Settings, SettingsArgs},
    Probe, ProbeOptions,
};
use clap::Args;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::signal::unix::{signal, SignalKind};

use super::ProbeArgs;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    privileges: PrivilegeArgs,
    #[command(flatten)]
    otlp: OtlpArgs,
    /// TOML file with the same settings (snake_case keys); re-read on SIGHUP. Flags and env win over it.
    #[arg(long = "config.file", env = "BADFD_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Validate the flags and config file, print the result, and exit.
    #[arg(long = "config.check")]
    config_check: bool,
}

/// Every output of the anomaly pipeline: the labeled metrics, and OTLP log
/// records when an endpoint is configured (its self-metrics were registered
/// when it started).
fn sinks(aggregates: &Arc<Mutex<Aggregates>>, otlp: Option<Arc<Otlp>>) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    // OTLP first: the metrics attach each record's id as an exemplar.
    if let Some(otlp) = otlp {
        sinks.push(Box::new(OtlpSink { otlp }));
    }
    sinks.push(Box::new(AnomalyMetrics { aggregates: aggregates.clone() }));
    sinks
}

/// One OTLP log record per anomaly; `emit` never blocks and counts every
/// record it cannot queue.
struct OtlpSink {
    otlp: Arc<Otlp>,
}

impl Sink for OtlpSink {
    fn accept(&mut self, batch: &mut [Anomaly]) {
        for a in batch {
            a.record_id = self.otlp.emit(&a.event, &a.resolved).map(|id| id.to_bytes());
        }
    }
}

/// How long SIGTERM waits for queued OTLP records to be exported.
const OTLP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often idle label sets are expired and unused strings forgotten.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args.settings, args.config_file.as_deref())?;
    if args.config_check {
        println!("config OK: {}", serde_json::to_string(&settings)?);
        return Ok(());
    }
    // Handlers first: a SIGHUP during start-up must not kill the exporter.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // Bind next: a port in use is an error before anything is loaded.
    let listener = tokio::net::TcpListener::bind(settings.listen_address)
        .await
        .with_context(|| format!("listening on {}", settings.listen_address))?;

    let mut exposition = Exposition::new();
    let stats = PipelineStats::register(&mut exposition.registry);
    let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
    exposition.registry.register(
        "config_reloads",
        "Configuration reloads (SIGHUP) by result; a failed one keeps the running configuration",
        reloads.clone(),
    );
    let probe: SharedProbe = Arc::new(Mutex::new(None));
    exposition.registry.register_collector(Box::new(KernelCollector { probe: probe.clone() }));
    let aggregates = Arc::new(Mutex::new(Aggregates::new(settings.max_label_sets, settings.label_set_ttl)));
    exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates: aggregates.clone() }));
    // OTLP is off (and costs nothing) without an endpoint.
    let otlp = match args.otlp.resolve()? {
        Some(config) => {
            let endpoint = config.endpoint.clone();
            let otlp = Arc::new(Otlp::start(config, &mut exposition.registry)?);
            tracing::info!(%endpoint, "exporting anomalies as OTLP log records");
            Some(otlp)
        }
        None => None,
    };
    let sinks = sinks(&aggregates, otlp.clone());
    let exposition = Arc::new(exposition);

    let shared_settings = Arc::new(Mutex::new(settings.clone()));
    let state = AppState {
        exposition,
        probe: probe.clone(),
        aggregates: aggregates.clone(),
        settings: shared_settings.clone(),
        config_file: args.config_file.clone(),
    };
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    tracing::info!(%address, "serving /metrics");

    let options = ProbeOptions {
        attach: args.probe.attach,
        ringbuf_bytes: ringbuf_size(args.probe.ringbuf_bytes),
        follow_forks: false,
        config: args.probe.apply(settings.probe_config()),
    };
    // Loaded on this thread, before the runtime has started any other thread
    // (the server task above has not run yet): capabilities are per thread, so
    // they are dropped right after attaching, while badfd has a single thread.
    let mut loaded = Probe::load(&options)?;
    drop_capabilities(&args.privileges, &mut loaded).context("dropping capabilities after attach")?;
    let reader = loaded.take_events()?;
    tracing::info!(mode = %loaded.attach_mode(), fallback_reason = loaded.fallback_reason().unwrap_or(""), "attached");
    *probe.lock().unwrap() = Some(loaded);

    let depth = Arc::new(AtomicUsize::new(settings.path_prefix_depth));
    let stop = Arc::new(AtomicBool::new(false));
    let events = {
        let pipeline = Pipeline::new(depth.clone(), sinks, stats);
        let stop = stop.clone();
        let aggregates = aggregates.clone();
        std::thread::Builder::new()
            .name("badfd-events".into())
            .spawn(move || event_loop(reader, pipeline, aggregates, stop))?
    };

    let mut server = server;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let result = reload(&args, &probe, &shared_settings, &depth);
                reloads.get_or_create(&[("result", if result { "success" } else { "failure" })]).inc();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            result = &mut server => {
                result?.context("HTTP server")?;
                anyhow::bail!("HTTP server stopped");
            }
        }
    }
    tracing::info!("shutting down");
    // Not ready from here on; dropping the probe detaches the programs.
    drop(probe.lock().unwrap().take());
    stop.store(true, Ordering::Release);
    let _ = events.join();
    if let Some(otlp) = otlp {
        let report = otlp.shutdown(OTLP_SHUTDOWN_TIMEOUT).await;
        tracing::info!(flushed = report.flushed, counts = ?report.counts, "OTLP log records flushed");
    }
    server.abort();
    Ok(())
}

/// Re-reads flags and the config file and applies what can change without
/// reattaching. A broken config keeps the running one.
fn reload(args: &ServeArgs, probe: &SharedProbe, running: &Mutex<Settings>, depth: &AtomicUsize) -> bool {
    let new = match Settings::resolve(&args.settings, args.config_file.as_deref()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!("reload failed, keeping the running configuration: {error}");
            return false;
        }
    };
    let mut running = running.lock().unwrap();
    if let Some(p) = probe.lock().unwrap().as_mut() {
        if let Err(error) = p.set_config(new.probe_config()) {
            tracing::error!("reload failed, keeping the running configuration: writing the kernel config: {error}");
            return false;
        }
    }
    depth.store(new.path_prefix_depth, Ordering::Relaxed);
    for (what, changed) in [
        ("metrics.max-label-sets", new.max_label_sets != running.max_label_sets),
        ("metrics.label-set-ttl", new.label_set_ttl != running.label_set_ttl),
        ("web.listen-address", new.listen_address != running.listen_address),
    ] {
        if changed {
            tracing::warn!("{what} changed in the config; it takes effect at the next restart");
        }
    }
    let restart_only = (running.max_label_sets, running.label_set_ttl, running.listen_address);
    *running = Settings {
        max_label_sets: restart_only.0,
        label_set_ttl: restart_only.1,
        listen_address: restart_only.2,
        ..new
    };
    tracing::info!(settings = %serde_json::to_string(&*running).unwrap_or_default(), "configuration reloaded");
    true
}

fn event_loop(mut reader: EventReader, mut pipeline: Pipeline, aggregates: Arc<Mutex<Aggregates>>, stop: Arc<AtomicBool>) {
    let fd = reader.as_raw_fd();
    let mut last_housekeeping = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        reader.drain(|bytes| pipeline.push_bytes(bytes));
        pipeline.flush();
        if stopping {
            break;
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING_INTERVAL {
            aggregates.lock().unwrap_or_else(|e| e.into_inner()).expire();
            pipeline.collect_garbage();
            last_housekeeping = Instant::now();
        }
        // The kernel wakes us once a batch waits; below that we poll.
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; the fd lives as long as `reader`.
        unsafe { libc::poll(&mut pfd, 1, POLL_INTERVAL.as_millis() as i32) };
    }
}

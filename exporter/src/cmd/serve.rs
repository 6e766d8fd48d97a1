//! `badfd serve`: the Prometheus exporter.
//!
//! Threads: the tokio runtime serves HTTP and handles signals; one event thread
//! drains the ring buffer and feeds the pipeline (decode, resolve, label, sinks)
//! so that a flood of anomalies never delays a scrape and vice versa.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use anyhow::Context as _;
use badfd::{
    config::{ServeArgs, Settings},
    pipeline::{
        containers::{cgroup_id_of_dir, k8s, ContainerLookupStats, Containers, ContainersOptions, PodWatcher},
        clock::monotonic_ns,
        event_loop::{release_free_heap, EventLoop},
        redact::Redactor,
        Pipeline, PipelineStats, Sink,
    },
    privileges::drop_capabilities,
    server::{
        http::{router, AppState},
        listen::{bind_all, serve_all},
        web_config::WebState,
    },
    sinks::{
        metrics::{Aggregates, AggregatesCollector, Exposition, KernelCollector, MetricsSink, ReloadStatus, SharedFoundLater, SharedProbe},
        otlp::{Otlp, OtlpSink},
    },
    config::KernelSettings,
    probe::FoundLaterTally,
    Probe,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::signal::unix::{signal, SignalKind};

/// Every output of the anomaly pipeline: the labeled metrics, and OTLP log
/// records when an endpoint is configured (its self-metrics were registered
/// when it started).
fn sinks(aggregates: &Arc<Mutex<Aggregates>>, otlp: Option<Arc<Otlp>>) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(MetricsSink { aggregates: aggregates.clone() })];
    if let Some(otlp) = otlp {
        sinks.push(Box::new(OtlpSink { otlp }));
    }
    sinks
}

/// The container lookup, when something uses it (OTLP records always carry
/// the container; metrics only with `--metrics.container-labels`), with pod
/// names from the Kubernetes API when running in a pod of a cluster.
/// Returns the watcher too: dropping it stops the watch.
fn containers(settings: &Settings, used: bool, stats: ContainerLookupStats) -> (Option<Arc<Containers>>, Option<PodWatcher>) {
    if !used {
        return (None, None);
    }
    let containers = Containers::new(ContainersOptions::default()).with_lookup_stats(stats);
    if !settings.kubernetes_pod_metadata {
        tracing::info!("Kubernetes pod metadata turned off (kubernetes.pod-metadata=false)");
        return (Some(Arc::new(containers)), None);
    }
    if !k8s::in_cluster() {
        tracing::info!("not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST): no pod names, containers from cgroups only");
        return (Some(Arc::new(containers)), None);
    }
    match PodWatcher::from_env() {
        Ok(Some(watcher)) => {
            tracing::info!(node = watcher.node_name(), "watching this node's pods for pod, namespace and container names");
            let containers = containers.with_pods(watcher.cache(), watcher.node_name());
            (Some(Arc::new(containers)), Some(watcher))
        }
        Ok(None) => (Some(Arc::new(containers)), None),
        Err(error) => {
            tracing::warn!("Kubernetes pod metadata off: {error}");
            (Some(Arc::new(containers)), None)
        }
    }
}

/// The ids of the settings' filter cgroups now (a cgroup made again has a new
/// id, hence again on each reload).
fn cgroup_filter_ids(settings: &Settings) -> anyhow::Result<Vec<u64>> {
    settings
        .filter_cgroups()
        .iter()
        .map(|dir| cgroup_id_of_dir(dir).with_context(|| format!("cgroup filter: {}", dir.display())))
        .collect()
}

/// Points the kernel's cgroup filter at the start-up settings' cgroups.
fn apply_cgroup_filter(probe: &mut badfd::Probe, settings: &Settings) -> anyhow::Result<()> {
    let wanted = cgroup_filter_ids(settings)?;
    probe.switch_config(probe.config(), &wanted)?;
    log_cgroup_filter(settings, &wanted);
    Ok(())
}

fn log_cgroup_filter(settings: &Settings, ids: &[u64]) {
    if !ids.is_empty() {
        let how = if settings.filter_cgroup.is_empty() { "ignoring" } else { "watching only" };
        tracing::info!(cgroups = ?settings.filter_cgroups(), ids = ?ids, "{how} these cgroups (in the kernel)");
    }
}

/// Reads the kernel's found-later counters of every epoch decided by now.
fn harvest_found_later(probe: &SharedProbe, found_later: &SharedFoundLater) {
    let guard = probe.lock().unwrap_or_else(|e| e.into_inner());
    let Some(p) = guard.as_ref() else { return };
    let mut tally = found_later.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tally) = tally.as_mut() else { return };
    match p.counters() {
        Ok(counters) => tally.harvest(&counters, monotonic_ns()),
        Err(error) => tracing::warn!(%error, "reading the kernel counters for the found-later split failed"),
    }
}

/// How long SIGTERM waits for queued OTLP records to be exported.
const OTLP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let redactor = Redactor::new(&settings.paths_redact)?;
    let web = Arc::new(WebState::load(settings.web_config_file.clone())?);
    // Checked here too, so that --config.check catches a bad OTLP setting.
    let otlp_config = args.otlp.resolve()?;
    if args.config_check {
        println!("config OK: {}", serde_json::to_string(&settings)?);
        return Ok(());
    }
    // Handlers first: a SIGHUP during start-up must not kill the exporter.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // Bind next: a port in use is an error before anything is loaded.
    let listeners = bind_all(&settings.listen_addresses)?;

    let mut exposition = Exposition::new();
    let stats = PipelineStats::register(&mut exposition.registry);
    let container_lookups = ContainerLookupStats::register(&mut exposition.registry);
    let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
    exposition.registry.register(
        "config_reloads",
        "Configuration reloads (SIGHUP) by result; a failed one keeps the running configuration",
        reloads.clone(),
    );
    let reload_status = ReloadStatus::register(&mut exposition.registry, std::time::SystemTime::now());
    web.register(&mut exposition.registry);
    let probe: SharedProbe = Arc::new(Mutex::new(None));
    let found_later: SharedFoundLater = Arc::new(Mutex::new(None));
    exposition.registry.register_collector(Box::new(KernelCollector { probe: probe.clone(), found_later: found_later.clone() }));
    let aggregates = Arc::new(Mutex::new(Aggregates::new(settings.max_label_sets, settings.label_set_ttl)));
    exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates: aggregates.clone() }));
    // OTLP is off (and costs nothing) without an endpoint.
    let otlp = match otlp_config {
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
    let addresses = listeners.iter().map(|l| l.local_addr().map(|a| a.to_string())).collect::<Result<Vec<_>, _>>()?.join(" ");
    let server = serve_all(listeners, router(state, web.clone()), &web)?;
    tracing::info!(%addresses, web = %web.current().description, "serving /metrics");

    let options = args.probe.options(&settings.kernel_settings(), false);
    // Loaded on this thread, before the runtime has started any other thread
    // (the server task above has not run yet): capabilities are per thread, so
    // they are dropped right after attaching, while badfd has a single thread.
    let mut loaded = Probe::load(&options)?;
    apply_cgroup_filter(&mut loaded, &settings)?;
    drop_capabilities(&args.privileges.capabilities_keep, &mut loaded).context("dropping capabilities after attach")?;
    let reader = loaded.take_events()?;
    release_free_heap();
    tracing::info!(
        mode = %loaded.attach_mode(),
        fallback_reason = loaded.fallback_reason().unwrap_or(""),
        timing = if loaded.timed() { "on" } else { "off" },
        "attached"
    );
    // Poison-tolerant here and below: see `reload`.
    *found_later.lock().unwrap_or_else(PoisonError::into_inner) = FoundLaterTally::new(&loaded.config(), monotonic_ns());
    *probe.lock().unwrap_or_else(PoisonError::into_inner) = Some(loaded);

    // After the drop: the pod watch's client (DNS lookups on the blocking
    // pool) must never start a thread before it.
    let (containers, _pod_watcher) = containers(&settings, otlp.is_some() || settings.container_labels, container_lookups);
    let depth = Arc::new(AtomicUsize::new(settings.path_prefix_depth));
    let stop = Arc::new(AtomicBool::new(false));
    let events = {
        let window_ns = settings.kernel_settings().found_later_window_ns();
        let mut pipeline = Pipeline::new(depth.clone(), sinks, stats).with_redactor(redactor).with_found_later(window_ns);
        if let Some(containers) = containers {
            pipeline = pipeline.with_containers(containers, settings.container_labels);
        }
        if let Some(otlp) = &otlp {
            pipeline = pipeline.with_record_ids(otlp.clone()).with_missing_components(false).with_executables();
        }
        EventLoop::new(reader, pipeline).spawn(stop.clone())?
    };

    // The kernel reuses a found-later epoch's bucket FOUND_EPOCHS epochs on:
    // each is read well before, whatever the scrape interval.
    let mut harvest = tokio::time::interval(Duration::from_millis(500));
    harvest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut server = server;
    loop {
        tokio::select! {
            _ = harvest.tick() => harvest_found_later(&probe, &found_later),
            _ = hangup.recv() => {
                let settings_reloaded = reload(&args, &probe, &shared_settings, &depth);
                let web_reloaded = web.reload().map_err(|error| tracing::error!("reload failed, keeping the running web config: {error}")).is_ok();
                let result = settings_reloaded && web_reloaded;
                reloads.get_or_create(&[("result", if result { "success" } else { "failure" })]).inc();
                if result { reload_status.succeeded(std::time::SystemTime::now()) } else { reload_status.failed() }
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
    drop(probe.lock().unwrap_or_else(PoisonError::into_inner).take());
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
/// reattaching, all or nothing: everything that can fail on the way in (the
/// file, the values, the cgroups' ids, their number) is done first, then the
/// kernel's config and cgroup filter are switched in one step that puts the
/// old ones back if it fails (`probe::cgroup_filter`), and only then the
/// pipeline's depth and the running settings change. A failure keeps the
/// running configuration, in the kernel and here.
fn reload(args: &ServeArgs, probe: &SharedProbe, running: &Mutex<Settings>, depth: &AtomicUsize) -> bool {
    // Poison-tolerant: a thread that panicked while holding a lock (a scrape)
    // must not turn every later reload into a crash; the settings and the
    // probe are whole values, replaced only after a step succeeded.
    let mut running = running.lock().unwrap_or_else(PoisonError::into_inner);
    let applied = (|| -> anyhow::Result<Settings> {
        let new = args.settings()?;
        let ids = cgroup_filter_ids(&new)?;
        if let Some(p) = probe.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            // The found-later window is restart-only: the kernel keeps the running one.
            let kernel = KernelSettings { found_later_window: running.found_later_window, ..new.kernel_settings() };
            let mut config = p.completed_config(kernel.config());
            if new.source_rate != running.source_rate {
                (config.source_interval_ns, config.source_burst_ns) = exporter_common::source_limit(new.source_rate);
            }
            p.switch_config(config, &ids).context("writing the kernel config")?;
            log_cgroup_filter(&new, &ids);
        }
        Ok(new)
    })();
    match applied {
        Ok(new) => {
            depth.store(new.path_prefix_depth, Ordering::Relaxed);
            for what in running.reload(new) {
                tracing::warn!("{what} changed in the config; it takes effect at the next restart");
            }
            tracing::info!(settings = %serde_json::to_string(&*running).unwrap_or_default(), "configuration reloaded");
            true
        }
        Err(error) => {
            tracing::error!("reload failed, keeping the running configuration: {error:#}");
            false
        }
    }
}

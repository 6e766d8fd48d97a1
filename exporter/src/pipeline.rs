//! The anomaly pipeline: ring-buffer bytes -> decoded event -> resolved path ->
//! interned `comm` and `path_prefix` -> every sink, in batches.
//!
//! Sinks are how outputs plug in: the Prometheus aggregates
//! ([`crate::metrics::AnomalyMetrics`]) are one; an OTLP log exporter is another
//! (it implements [`Sink`] and registers its self-metrics into the shared
//! registry at start-up).

use std::{
    num::NonZeroUsize,
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lru::LruCache;

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::{
    containers::{ContainerInfo, Containers},
    labels::{path_prefix_into, raw_prefix, CommInterner, ContainerLabels, Interner},
    otlp::Otlp,
    redact::Redactor,
    resolve::{ResolvedPath, Resolution, Resolver},
    OpenEvent,
};

/// One anomaly, with everything a sink needs to label or log it.
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub event: OpenEvent,
    /// The absolute path (unless `resolved.how` is `Unresolved`) and how it was made.
    pub resolved: ResolvedPath,
    /// `comm` as a label value (odd bytes replaced), shared between anomalies.
    pub comm: Arc<str>,
    /// The `path_prefix` label value, shared between anomalies.
    pub path_prefix: Arc<str>,
    /// The trace id of this anomaly's OTLP log record, once a sink has sent
    /// one: the metrics attach it as an exemplar, to jump to the record.
    pub record_id: Option<[u8; 16]>,
    /// What is known of the opener's container and pod (when the pipeline
    /// has a container lookup: with OTLP or container labels on).
    pub container: Option<Arc<ContainerInfo>>,
    /// Its OpenTelemetry attributes (`container.id`, `k8s.pod.name`, ...),
    /// made once per cgroup.
    pub container_attributes: Option<OtelAttributes>,
    /// Its metric labels, with `--metrics.container-labels` only.
    pub container_labels: Option<Arc<ContainerLabels>>,
}

/// Semantic-convention attributes of a container, shared between anomalies.
pub type OtelAttributes = Arc<[(&'static str, String)]>;

/// A consumer of anomalies. Called from the event thread with batches of up to
/// [`BATCH`] anomalies; must not block for long (hand slow work to a thread).
pub trait Sink: Send {
    fn accept(&mut self, batch: &mut [Anomaly]);
}

/// Anomalies handed to sinks at once: big enough to amortize locks, small
/// enough to keep memory flat during a flood.
pub const BATCH: usize = 1024;

/// The pipeline's own counters (registered as self-metrics).
#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub events_received: Counter,
    pub events_undecodable: Counter,
    /// Indexed like `Resolution::ALL`.
    pub resolutions: [Counter; 4],
}

impl PipelineStats {
    pub fn register(registry: &mut Registry) -> PipelineStats {
        let stats = PipelineStats::default();
        registry.register(
            "events_received",
            "Anomaly events read from the kernel ring buffer",
            stats.events_received.clone(),
        );
        registry.register(
            "events_undecodable",
            "Ring buffer records that did not decode as an event (dropped)",
            stats.events_undecodable.clone(),
        );
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let resolutions = Resolution::ALL.map(|r| family.get_or_create(&[("method", r.name())]).clone());
        registry.register(
            "path_resolutions",
            "Anomaly paths by how they were made absolute (absolute already, in the kernel, from /proc, or not at all)",
            family,
        );
        PipelineStats { resolutions, ..stats }
    }
}

/// How long the pipeline trusts what it found about a cgroup before asking
/// again (pod names arrive from the API a little after the pod starts; the
/// cgroup cache below rechecks that the cgroup still exists).
const CONTAINER_RECHECK: Duration = Duration::from_secs(5);
/// Cgroups whose container the pipeline remembers.
const CONTAINER_CACHE: usize = 4096;

/// What the pipeline found about one cgroup.
#[derive(Clone)]
struct CgroupEntry {
    checked: Instant,
    info: Option<Arc<ContainerInfo>>,
    attributes: Option<OtelAttributes>,
    labels: Option<Arc<ContainerLabels>>,
}

/// The container lookup of the pipeline: a small cache by cgroup id in front
/// of [`Containers`] (whose own caches are shared and locked), so an event
/// costs one hash lookup.
struct ContainerLookup {
    containers: Arc<Containers>,
    labels: bool,
    /// (cgroup id, pid or 0) to what was found.
    by_cgroup: LruCache<(u64, u32), CgroupEntry>,
}

impl ContainerLookup {
    /// Keyed by cgroup id, and by pid too where the v2 cgroup says nothing
    /// (a task in the v2 root, as on cgroup v1 hosts: `/proc/PID/cgroup` tells).
    fn entry(&mut self, event: &OpenEvent) -> CgroupEntry {
        let now = Instant::now();
        for key in [(event.cgroup_id, 0), (event.cgroup_id, event.pid)] {
            if let Some(e) = self.by_cgroup.get(&key) {
                if now.duration_since(e.checked) < CONTAINER_RECHECK {
                    return e.clone();
                }
            }
        }
        let found = self.containers.lookup(event.cgroup_id);
        let (info, key) = if found.as_ref().is_some_and(|i| i.cgroup_path != "/") {
            (found, (event.cgroup_id, 0))
        } else {
            (self.containers.lookup_event(event), (event.cgroup_id, event.pid))
        };
        let entry = CgroupEntry {
            checked: now,
            attributes: info.as_ref().map(|i| i.otel_attributes(self.containers.node_name()).into()),
            labels: self.labels.then(|| Arc::new(info.as_ref().map(ContainerInfo::metric_labels).unwrap_or_default())),
            info: info.map(Arc::new),
        };
        self.by_cgroup.put(key, entry.clone());
        entry
    }
}
/// Entries of the pipeline's `path_prefix` cache before it is emptied.
const PREFIX_CACHE_MAX: usize = 8192;

/// Interned strings at which the pipeline forgets unused ones, at the least.
const COLLECT_AT_LEAST: usize = 4 * PREFIX_CACHE_MAX;

pub struct Pipeline {
    containers: Option<ContainerLookup>,
    resolver: Resolver,
    comms: CommInterner,
    prefixes: Interner,
    prefix_buf: String,
    /// Raw prefix (the path up to its `depth`-th component) -> its label:
    /// templating a path costs hundreds of ns, a lookup tens. Emptied when full,
    /// since volatile raw components (pids under /proc) keep making new keys.
    prefix_cache: HashMap<Box<[u8]>, Arc<str>>,
    /// The depth the cached labels were made at.
    prefix_cache_depth: usize,
    /// Interned strings at which unused ones are forgotten (see `flush`).
    collect_at: usize,
    depth: Arc<AtomicUsize>,
    sinks: Vec<Box<dyn Sink>>,
    batch: Vec<Anomaly>,
    stats: PipelineStats,
    redactor: Redactor,
}

impl Pipeline {
    /// `depth` is the `path_prefix` depth, shared so a reload can change it.
    pub fn new(depth: Arc<AtomicUsize>, sinks: Vec<Box<dyn Sink>>, stats: PipelineStats) -> Pipeline {
        Pipeline {
            containers: None,
            resolver: Resolver::new(),
            comms: CommInterner::default(),
            prefixes: Interner::default(),
            prefix_buf: String::new(),
            prefix_cache: HashMap::new(),
            prefix_cache_depth: 0,
            collect_at: COLLECT_AT_LEAST,
            depth,
            sinks,
            batch: Vec::with_capacity(BATCH),
            stats,
            redactor: Redactor::off(),
        }
    }

    /// Looks up each anomaly's container and pod (for OTLP records), and with
    /// `labels` adds them to the metrics' label sets.
    pub fn with_containers(mut self, containers: Arc<Containers>, labels: bool) -> Pipeline {
        let capacity = NonZeroUsize::new(CONTAINER_CACHE).expect("nonzero");
        self.containers = Some(ContainerLookup { containers, labels, by_cgroup: LruCache::new(capacity) });
        self
    }

    /// Redacts every anomaly's paths (`--paths.redact`) before any sink or
    /// label sees them: the one place where redaction happens in `serve`.
    pub fn with_redactor(mut self, redactor: Redactor) -> Pipeline {
        self.redactor = redactor;
        self
    }

    /// Takes one ring-buffer record; hands a full batch to the sinks.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.stats.events_received.inc();
        match OpenEvent::decode(bytes) {
            Ok(event) => self.push(event),
            Err(error) => {
                self.stats.events_undecodable.inc();
                tracing::debug!(%error, "undecodable event");
            }
        }
    }

    pub fn push(&mut self, mut event: OpenEvent) {
        let mut resolved = self.resolver.resolve(&event);
        if let Some(i) = Resolution::ALL.iter().position(|&r| r == resolved.how) {
            self.stats.resolutions[i].inc();
        }
        self.redactor.apply(&mut event, &mut resolved);
        let path_prefix = self.path_prefix(&resolved.path);
        let comm = self.comms.intern(&event.comm);
        let (container, container_attributes, container_labels) = match &mut self.containers {
            Some(lookup) => {
                let e = lookup.entry(&event);
                (e.info, e.attributes, e.labels)
            }
            None => (None, None, None),
        };
        self.batch.push(Anomaly {
            event,
            resolved,
            comm,
            path_prefix,
            record_id: None,
            container,
            container_attributes,
            container_labels,
        });
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// The interned `path_prefix` label of a resolved path.
    fn path_prefix(&mut self, path: &[u8]) -> Arc<str> {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth != self.prefix_cache_depth {
            self.prefix_cache.clear();
            self.prefix_cache_depth = depth;
        }
        let raw = raw_prefix(path, depth);
        if let Some(label) = self.prefix_cache.get(raw) {
            return label.clone();
        }
        path_prefix_into(&mut self.prefix_buf, raw, depth);
        let label = self.prefixes.intern(&self.prefix_buf);
        if self.prefix_cache.len() >= PREFIX_CACHE_MAX {
            self.prefix_cache.clear();
        }
        self.prefix_cache.insert(raw.into(), label.clone());
        label
    }

    /// Hands what is batched to every sink.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        for sink in &mut self.sinks {
            sink.accept(&mut self.batch);
        }
        self.batch.clear();
        // A flood of new paths interns a new prefix every few events; the
        // label sets keep only a bounded number of them. Forget the rest
        // before they pile up (measured: +20 MiB in 10 s without this).
        if self.prefixes.len() + self.comms.len() > self.collect_at {
            self.collect_garbage();
        }
    }

    /// Forgets interned strings no label set holds any more.
    pub fn collect_garbage(&mut self) {
        // The cache holds labels too: empty it so unused ones can go.
        self.prefix_cache.clear();
        self.prefixes.collect();
        self.comms.collect();
        // Twice what is still in use: collecting stays amortized O(1) per event.
        self.collect_at = COLLECT_AT_LEAST.max(2 * (self.prefixes.len() + self.comms.len()));
    }
}

/// One OTLP log record per anomaly, with its container's attributes; `emit`
/// never blocks and counts every record it cannot queue.
pub struct OtlpSink {
    pub otlp: Arc<Otlp>,
}

impl Sink for OtlpSink {
    fn accept(&mut self, batch: &mut [Anomaly]) {
        for a in batch {
            a.record_id =
                self.otlp.emit_with_container(&a.event, &a.resolved, a.container_attributes.clone()).map(|id| id.to_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Aggregates, AnomalyMetrics};
    use std::sync::Mutex;

    fn event(i: usize, path: &[u8]) -> OpenEvent {
        OpenEvent {
            start_ns: i as u64,
            latency_ns: 20_000_000 * (i % 2) as u64,
            ret: -2,
            pid: 1,
            tid: 1,
            flags: exporter_common::EVENT_FAILED | if i % 2 == 1 { exporter_common::EVENT_SLOW } else { 0 },
            comm: *b"app\0\0\0\0\0\0\0\0\0\0\0\0\0",
            path: path.to_vec(),
            ..Default::default()
        }
    }

    /// Events through the whole pipeline into the Prometheus aggregates; prints
    /// the rate (a figure, not a target: unoptimized builds are slow).
    #[test]
    fn aggregates_every_event_and_shares_label_strings() {
        let aggregates = Arc::new(Mutex::new(Aggregates::new(2000, std::time::Duration::from_secs(3600))));
        let mut registry = Registry::default();
        let stats = PipelineStats::register(&mut registry);
        let sinks: Vec<Box<dyn Sink>> = vec![Box::new(AnomalyMetrics { aggregates: aggregates.clone() })];
        let mut pipeline = Pipeline::new(Arc::new(AtomicUsize::new(3)), sinks, stats.clone());
        const N: usize = 200_000;
        let paths: Vec<Vec<u8>> = (0..50).map(|i| format!("/var/lib/app{i}/data/{}.db", 1000 + i).into_bytes()).collect();
        let start = std::time::Instant::now();
        for i in 0..N {
            pipeline.push(event(i, &paths[i % paths.len()]));
        }
        pipeline.flush();
        let elapsed = start.elapsed();
        eprintln!("pipeline: {N} events in {elapsed:?}, {:.0} events/s", N as f64 / elapsed.as_secs_f64());
        let a = aggregates.lock().unwrap();
        assert_eq!(a.failures.len(), 50);
        assert_eq!(a.failures.iter().map(|(_, f)| f.count).sum::<u64>(), N as u64);
        assert_eq!(a.slow.iter().map(|(_, s)| s.count).sum::<u64>(), N as u64 / 2);
        assert_eq!(stats.resolutions[0].get(), N as u64, "all absolute");
        // One shared string per distinct prefix.
        assert_eq!(pipeline.prefixes.len(), 50);
        let ((_, _, prefix, container), _) = a.failures.iter().next().unwrap();
        assert_eq!(*container, None, "no container labels unless asked for");
        assert!(prefix.starts_with("/var/lib/app"));
    }

    /// The container lookup of the pipeline over a fake hierarchy (plain
    /// directories: their inode numbers play the cgroup ids): each anomaly
    /// gets its container's attributes and labels, made once per cgroup.
    #[test]
    fn anomalies_get_their_container_once_per_cgroup() {
        use crate::containers::{cgroup_id_of_dir, ContainersOptions};
        let root = std::env::temp_dir().join(format!("badfd-pipeline-containers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let uid = "3f0c2a4e-7b1d-4c8e-9a6f-5d2b1e0c9a87";
        let id = "8f2c7d5b4a3e19c0d6b7a8e9f0123456789abcdef0123456789abcdef0a1b2c3";
        let scope = root.join(format!("kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope", uid.replace('-', "_")));
        std::fs::create_dir_all(&scope).unwrap();
        let cgroup_id = cgroup_id_of_dir(&scope).unwrap();
        let options = ContainersOptions { cgroup_root: Some(root.clone()), proc_fallback: false, ..Default::default() };
        let containers = Arc::new(Containers::new(options));

        struct Keep(Arc<std::sync::Mutex<Vec<Anomaly>>>);
        impl Sink for Keep {
            fn accept(&mut self, batch: &mut [Anomaly]) {
                self.0.lock().unwrap().extend(batch.iter().cloned());
            }
        }
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stats = PipelineStats::register(&mut Registry::default());
        let mut pipeline = Pipeline::new(Arc::new(AtomicUsize::new(3)), vec![Box::new(Keep(kept.clone()))], stats)
            .with_containers(containers, true);
        for i in 0..3 {
            pipeline.push(OpenEvent { cgroup_id, ..event(i, b"/etc/app.conf") });
        }
        // A host process: a cgroup this hierarchy does not have.
        pipeline.push(OpenEvent { cgroup_id: u64::MAX - 3, ..event(4, b"/etc/app.conf") });
        pipeline.flush();
        let kept = kept.lock().unwrap();
        assert_eq!(kept.len(), 4);
        let first = kept[0].container.as_ref().expect("the container");
        assert_eq!((first.container_id.as_deref(), first.pod_uid.as_deref()), (Some(id), Some(uid)));
        let attributes = kept[0].container_attributes.as_ref().unwrap();
        assert!(attributes.contains(&("container.id", id.to_string())) && attributes.contains(&("k8s.pod.uid", uid.to_string())));
        assert_eq!(kept[0].container_labels.as_ref().unwrap().container_id, format!("containerd://{id}"));
        for a in &kept[1..3] {
            assert!(Arc::ptr_eq(a.container.as_ref().unwrap(), first), "one lookup per cgroup, shared");
            assert!(Arc::ptr_eq(a.container_labels.as_ref().unwrap(), kept[0].container_labels.as_ref().unwrap()));
        }
        assert!(kept[3].container.is_none() && kept[3].container_attributes.is_none());
        assert_eq!(**kept[3].container_labels.as_ref().unwrap(), ContainerLabels::default(), "empty labels for the host");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The label cache follows a depth change (a reload), and a flood of new
    /// paths leaves a bounded number of interned strings behind, every event
    /// still counted.
    #[test]
    fn prefix_cache_follows_depth_and_strings_stay_bounded() {
        let aggregates = Arc::new(Mutex::new(Aggregates::new(100, std::time::Duration::from_secs(3600))));
        let mut registry = Registry::default();
        let stats = PipelineStats::register(&mut registry);
        let sinks: Vec<Box<dyn Sink>> = vec![Box::new(AnomalyMetrics { aggregates: aggregates.clone() })];
        let depth = Arc::new(AtomicUsize::new(3));
        let mut pipeline = Pipeline::new(depth.clone(), sinks, stats);
        pipeline.push(event(0, b"/var/lib/app/data/x.db"));
        depth.store(2, Ordering::Relaxed);
        pipeline.push(event(0, b"/var/lib/app/data/x.db"));
        pipeline.flush();
        {
            let a = aggregates.lock().unwrap();
            let mut prefixes: Vec<String> = a.failures.iter().map(|((_, _, p, _), _)| p.to_string()).collect();
            prefixes.sort();
            assert_eq!(prefixes, ["/var/lib", "/var/lib/app"]);
        }
        const N: usize = 200_000;
        for i in 0..N {
            // Letters, not digits: each is its own label value.
            let name: String = (0..4).map(|k| (b'a' + ((i / 26usize.pow(k)) % 26) as u8) as char).collect();
            pipeline.push(event(i, format!("/srv/{name}/file").as_bytes()));
            assert!(pipeline.prefixes.len() <= COLLECT_AT_LEAST + BATCH, "{} interned at {i}", pipeline.prefixes.len());
        }
        pipeline.flush();
        let a = aggregates.lock().unwrap();
        assert_eq!(a.failures.iter().map(|(_, f)| f.count).sum::<u64>(), N as u64 + 2);
        assert!(a.failures.len() <= 100);
    }
}

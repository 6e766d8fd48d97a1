//! Which container and pod made an open: the event's cgroup id mapped to the
//! cgroup's path (`cgroupfs`), the path to a container id, runtime, pod UID or
//! systemd unit (`path`), and the pod UID to the pod's name, namespace and
//! container names from the Kubernetes API (`k8s`, in a cluster only).
//!
//! The API is [`Containers::lookup`] (or [`Containers::lookup_event`]), which
//! gives a [`ContainerInfo`] and may walk the cgroup hierarchy; the pipeline's
//! stage ([`ContainerLookup`]) keeps a small cache by cgroup in front of it and
//! calls it from a worker thread only, never on the event thread.

pub mod cgroupfs;
pub mod k8s;
mod lookup;
pub mod path;

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use lru::LruCache;

pub use cgroupfs::{cgroup2_mount, cgroup_dir, cgroup_id_of_dir, Cgroup, CgroupPaths, CgroupPathsOptions, CgroupPathsStats};
pub use k8s::{PodCache, PodMeta, PodWatcher};
pub use path::{owner_from_proc_cgroup, parse_cgroup_path, CgroupOwner, Runtime};

pub use lookup::{ContainerLookup, ContainerLookupStats, LOOKUP_QUEUE};

use crate::{pipeline::labels::OTHER, OpenEvent};

/// Everything known about the cgroup of an event. Fields are `None` where not
/// known (a host process has no container; outside a cluster there are no pod
/// names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub cgroup_id: u64,
    /// Relative to the cgroup v2 root (`/kubepods.slice/...`); from
    /// `/proc/PID/cgroup` where the v2 hierarchy does not say (cgroup v1 hosts).
    pub cgroup_path: String,
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    /// For a process outside containers: its systemd unit (`nginx.service`).
    pub systemd_unit: Option<String>,
}

impl ContainerInfo {
    /// OpenTelemetry resource/record attributes (semantic conventions) for
    /// what is known, with the node's name if given.
    pub fn otel_attributes(&self, node_name: Option<&str>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |key: &'static str, value: &Option<String>| {
            if let Some(v) = value {
                out.push((key, v.clone()));
            }
        };
        put("container.id", &self.container_id);
        put("k8s.pod.name", &self.pod_name);
        put("k8s.pod.uid", &self.pod_uid);
        put("k8s.namespace.name", &self.namespace);
        put("k8s.container.name", &self.container_name);
        if self.pod_uid.is_some() {
            put("k8s.node.name", &node_name.map(String::from));
        }
        // `container.runtime.name` (it replaced `container.runtime` in the
        // semantic conventions); a systemd unit is no container.
        if let Some(runtime) = self.runtime.filter(|_| self.container_id.is_some()) {
            out.push(("container.runtime.name", runtime.name().to_string()));
        }
        out
    }

    /// The container label values of a metric series (see [`ContainerLabels`]).
    pub fn metric_labels(&self) -> ContainerLabels {
        let id = match (&self.container_id, self.runtime) {
            (Some(id), Some(runtime)) if runtime != Runtime::Systemd => format!("{}://{id}", runtime.name()),
            (Some(id), _) => id.clone(),
            (None, _) => String::new(),
        };
        ContainerLabels {
            namespace: self.namespace.clone().unwrap_or_default(),
            pod: self.pod_name.clone().unwrap_or_default(),
            container: self.container_name.clone().unwrap_or_default(),
            container_id: id,
        }
    }

    fn from_owner(cgroup_id: u64, cgroup_path: String, owner: CgroupOwner) -> ContainerInfo {
        ContainerInfo {
            cgroup_id,
            cgroup_path,
            container_id: owner.container_id,
            runtime: owner.runtime,
            pod_uid: owner.pod_uid,
            systemd_unit: owner.systemd_unit,
            ..ContainerInfo::default()
        }
    }

    /// Fills pod name, namespace, container name (and the runtime, where the
    /// path did not say) from the API's view of the node's pods.
    fn enrich(&mut self, pods: &PodCache) {
        let pod = match (&self.pod_uid, &self.container_id) {
            (Some(uid), _) => pods.pod(uid),
            (None, Some(id)) => pods.pod_of_container(id),
            (None, None) => None,
        };
        let Some(pod) = pod else { return };
        self.pod_uid.get_or_insert_with(|| pod.uid.clone());
        self.pod_name = Some(pod.name.clone());
        self.namespace = Some(pod.namespace.clone());
        if let Some(c) = self.container_id.as_deref().and_then(|id| pod.container(id)) {
            self.container_name = Some(c.name.clone());
            if self.runtime.is_none() {
                self.runtime = c.runtime;
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ContainersOptions {
    /// The cgroup v2 hierarchy; found in /proc/self/mountinfo when `None`
    /// (a DaemonSet mounting the host's at /host/sys/fs/cgroup sets it).
    pub cgroup_root: Option<PathBuf>,
    pub paths: CgroupPathsOptions,
    /// Where the v2 hierarchy does not say (the task is in its root: cgroup v1
    /// or hybrid hosts), read `/proc/PID/cgroup` while the process lives.
    pub proc_fallback: bool,
    /// How long a process's `/proc/PID/cgroup` answer is kept.
    pub proc_ttl: Duration,
}

impl Default for ContainersOptions {
    fn default() -> Self {
        ContainersOptions {
            cgroup_root: None,
            paths: CgroupPathsOptions::default(),
            proc_fallback: true,
            proc_ttl: Duration::from_secs(5),
        }
    }
}

/// `/proc/PID/cgroup` answers by pid: when read, the owner, the v1 path.
type ByPid = LruCache<u32, (Instant, CgroupOwner, String)>;

/// Cgroup id (or event) to [`ContainerInfo`], safe to share between threads.
pub struct Containers {
    paths: Option<Mutex<CgroupPaths>>,
    by_pid: Option<Mutex<ByPid>>,
    proc_ttl: Duration,
    pods: Option<Arc<RwLock<PodCache>>>,
    node_name: Option<String>,
    lookup_stats: ContainerLookupStats,
}

impl Containers {
    /// Without a cgroup v2 hierarchy (a cgroup v1 host) only the /proc fallback answers.
    pub fn new(options: ContainersOptions) -> Containers {
        let root = options.cgroup_root.clone().or_else(cgroup2_mount);
        if root.is_none() {
            tracing::info!("no cgroup v2 hierarchy mounted; containers are found from /proc/PID/cgroup");
        }
        let capacity = NonZeroUsize::new(options.paths.capacity.max(1)).expect("nonzero");
        Containers {
            paths: root.map(|r| Mutex::new(CgroupPaths::new(r, options.paths.clone()))),
            by_pid: options.proc_fallback.then(|| Mutex::new(LruCache::new(capacity))),
            proc_ttl: options.proc_ttl,
            pods: None,
            node_name: None,
            lookup_stats: ContainerLookupStats::default(),
        }
    }

    /// Counts the pipeline's lookups in `stats` (registered self-metrics).
    pub fn with_lookup_stats(mut self, stats: ContainerLookupStats) -> Containers {
        self.lookup_stats = stats;
        self
    }

    pub fn lookup_stats(&self) -> &ContainerLookupStats {
        &self.lookup_stats
    }

    /// Holds the hierarchy's cache locked: a lookup waits until the guard goes.
    #[cfg(test)]
    pub(crate) fn hold_paths_for_test(&self) -> Option<std::sync::MutexGuard<'_, CgroupPaths>> {
        self.paths.as_ref().map(|p| p.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds pod names from the API (a [`PodWatcher`]'s cache) for `node_name`.
    pub fn with_pods(mut self, pods: Arc<RwLock<PodCache>>, node_name: &str) -> Containers {
        self.pods = Some(pods);
        self.node_name = Some(node_name.to_string());
        self
    }

    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    pub fn cgroup_stats(&self) -> Option<CgroupPathsStats> {
        self.paths.as_ref().map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).stats())
    }

    /// What is known about the cgroup with this v2 id; `None` if the
    /// hierarchy has no such cgroup (any more).
    pub fn lookup(&self, cgroup_id: u64) -> Option<ContainerInfo> {
        let cgroup = self.paths.as_ref()?.lock().unwrap_or_else(|e| e.into_inner()).lookup(cgroup_id)?;
        let mut info = ContainerInfo::from_owner(cgroup_id, cgroup.path, cgroup.owner);
        self.enrich(&mut info);
        Some(info)
    }

    /// As `lookup`, and where the v2 cgroup says nothing (the task sits in the
    /// v2 root, as every task does on a cgroup v1 host), from the process's
    /// `/proc/PID/cgroup` v1 lines while it lives.
    pub fn lookup_event(&self, event: &OpenEvent) -> Option<ContainerInfo> {
        self.lookup_task(event.cgroup_id, event.pid)
    }

    /// As `lookup_event`, for the task `pid` in the cgroup `cgroup_id`.
    pub fn lookup_task(&self, cgroup_id: u64, pid: u32) -> Option<ContainerInfo> {
        let found = self.lookup(cgroup_id);
        let says_something = found.as_ref().is_some_and(|i| i.cgroup_path != "/");
        if says_something {
            return found;
        }
        match self.lookup_pid(pid) {
            Some((owner, path)) => {
                let mut info = ContainerInfo::from_owner(cgroup_id, path, owner);
                self.enrich(&mut info);
                Some(info)
            }
            None => found,
        }
    }

    fn lookup_pid(&self, pid: u32) -> Option<(CgroupOwner, String)> {
        let mut cache = self.by_pid.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some((when, owner, path)) = cache.get(&pid) {
            if now.duration_since(*when) < self.proc_ttl {
                return Some((owner.clone(), path.clone()));
            }
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let owner = owner_from_proc_cgroup(&text);
        if owner.is_empty() {
            return None;
        }
        // The v1 line the owner came from, for the record.
        let path = text
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .find(|p| parse_cgroup_path(p) == owner)
            .unwrap_or("/")
            .to_string();
        cache.put(pid, (now, owner.clone(), path.clone()));
        Some((owner, path))
    }

    fn enrich(&self, info: &mut ContainerInfo) {
        if let Some(pods) = &self.pods {
            info.enrich(&pods.read().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// The container labels of a series, with `badfd serve --metrics.container-labels`:
/// named as kube-state-metrics and cAdvisor name them, so that series join
/// with theirs (`kube_pod_container_info` has the same `container_id`,
/// `<runtime>://<id>`). Empty where not known: a host process has none, and
/// outside a cluster only `container_id` is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContainerLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
}

impl ContainerLabels {
    /// What a folded label set carries: `other` everywhere.
    pub fn other() -> ContainerLabels {
        ContainerLabels { namespace: OTHER.into(), pod: OTHER.into(), container: OTHER.into(), container_id: OTHER.into() }
    }

    /// As (name, value) pairs, in exposition order.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [("namespace", &self.namespace), ("pod", &self.pod), ("container", &self.container), ("container_id", &self.container_id)]
    }
}

#[cfg(test)]
mod tests;

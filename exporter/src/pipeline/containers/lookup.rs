//! The pipeline's container stage: a small cache by cgroup id in front of
//! [`Containers`] (whose own caches are shared and locked), so that an event
//! costs one hash lookup, and each cgroup's OpenTelemetry attributes and
//! metric labels are made once.

use std::{
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;

use super::{ContainerInfo, ContainerLabels, Containers};
use crate::{pipeline::OtelAttributes, OpenEvent};

/// How long the pipeline trusts what it found about a cgroup before asking
/// again (pod names arrive from the API a little after the pod starts; the
/// cgroup cache below rechecks that the cgroup still exists).
const CONTAINER_RECHECK: Duration = Duration::from_secs(5);
/// Cgroups whose container the pipeline remembers.
const CONTAINER_CACHE: usize = 4096;

/// What the pipeline found about one cgroup: what an anomaly of it carries.
#[derive(Clone)]
pub struct CgroupEntry {
    checked: Instant,
    pub info: Option<Arc<ContainerInfo>>,
    /// Its OpenTelemetry attributes (`container.id`, `k8s.pod.name`, ...).
    pub attributes: Option<OtelAttributes>,
    /// Its metric labels, with `--metrics.container-labels` only.
    pub labels: Option<Arc<ContainerLabels>>,
}

pub struct ContainerLookup {
    containers: Arc<Containers>,
    /// Whether the metrics carry container labels.
    labels: bool,
    /// (cgroup id, pid or 0) to what was found.
    by_cgroup: LruCache<(u64, u32), CgroupEntry>,
}

impl ContainerLookup {
    pub fn new(containers: Arc<Containers>, labels: bool) -> ContainerLookup {
        let capacity = NonZeroUsize::new(CONTAINER_CACHE).expect("nonzero");
        ContainerLookup { containers, labels, by_cgroup: LruCache::new(capacity) }
    }

    /// Keyed by cgroup id, and by pid too where the v2 cgroup says nothing
    /// (a task in the v2 root, as on cgroup v1 hosts: `/proc/PID/cgroup` tells).
    pub fn entry(&mut self, event: &OpenEvent) -> CgroupEntry {
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

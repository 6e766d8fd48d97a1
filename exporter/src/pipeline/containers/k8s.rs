//! Pod name, namespace and container name from the Kubernetes API, for the
//! pods of this node only: a watch with the field selector
//! `spec.nodeName=<node>` (kube's watcher: list, then watch from the list's
//! resourceVersion, relisting when the watch expires), kept in a cache keyed by
//! pod UID and by container id. Outside a cluster (no KUBERNETES_SERVICE_HOST)
//! nothing is started and nothing costs anything.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    runtime::{watcher, WatchStreamExt as _},
    Api, Client,
};

use super::path::Runtime;

/// What the API says about one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Containers (regular, init and ephemeral) that have an id: id (without
    /// its `containerd://` scheme), name, runtime from the scheme.
    pub containers: Vec<PodContainer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    pub id: String,
    pub name: String,
    pub runtime: Option<Runtime>,
}

impl PodMeta {
    /// The pod's metadata, or `None` for a pod without a UID (never from a
    /// real API server).
    pub fn from_pod(pod: &Pod) -> Option<PodMeta> {
        let uid = pod.metadata.uid.clone()?;
        let mut containers = Vec::new();
        if let Some(status) = &pod.status {
            let all = [&status.container_statuses, &status.init_container_statuses, &status.ephemeral_container_statuses];
            for statuses in all.into_iter().flatten() {
                for s in statuses {
                    let Some(full) = s.container_id.as_deref().filter(|id| !id.is_empty()) else { continue };
                    let (scheme, id) = full.split_once("://").unwrap_or(("", full));
                    containers.push(PodContainer {
                        id: id.to_ascii_lowercase(),
                        name: s.name.clone(),
                        runtime: Runtime::from_scheme(scheme),
                    });
                }
            }
        }
        Some(PodMeta {
            uid,
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            containers,
        })
    }

    pub fn container(&self, id: &str) -> Option<&PodContainer> {
        self.containers.iter().find(|c| c.id == id)
    }
}

/// What the cache did, for self-metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCacheStats {
    /// Watch events applied (adds, updates, deletes, relisted pods).
    pub events: u64,
    /// Complete lists received (the first, and each relist after a watch expired).
    pub lists: u64,
    /// Errors from the API (the watcher retries with backoff).
    pub errors: u64,
}

/// The pods of this node, by UID and by container id.
#[derive(Debug, Default)]
pub struct PodCache {
    pods: HashMap<String, Arc<PodMeta>>,
    by_container: HashMap<String, String>,
    /// Pods of a list in progress; they replace `pods` when it is complete.
    relist: Option<HashMap<String, Arc<PodMeta>>>,
    /// Whether a complete list has been received.
    synced: bool,
    stats: PodCacheStats,
}

impl PodCache {
    pub fn new() -> PodCache {
        PodCache::default()
    }

    /// Applies one event of kube's watcher.
    pub fn apply(&mut self, event: watcher::Event<Pod>) {
        self.stats.events += 1;
        match event {
            watcher::Event::Apply(pod) => {
                if let Some(meta) = PodMeta::from_pod(&pod) {
                    self.insert(Arc::new(meta));
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.remove(uid);
                }
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(meta) = PodMeta::from_pod(&pod) {
                    self.relist.get_or_insert_with(HashMap::new).insert(meta.uid.clone(), Arc::new(meta));
                }
            }
            watcher::Event::InitDone => {
                let pods = self.relist.take().unwrap_or_default();
                self.pods.clear();
                self.by_container.clear();
                for meta in pods.into_values() {
                    self.insert(meta);
                }
                self.synced = true;
                self.stats.lists += 1;
            }
        }
    }

    fn insert(&mut self, meta: Arc<PodMeta>) {
        if let Some(old) = self.pods.remove(&meta.uid) {
            for c in &old.containers {
                self.by_container.remove(&c.id);
            }
        }
        for c in &meta.containers {
            self.by_container.insert(c.id.clone(), meta.uid.clone());
        }
        self.pods.insert(meta.uid.clone(), meta);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            for c in &old.containers {
                self.by_container.remove(&c.id);
            }
        }
    }

    pub fn pod(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.pods.get(uid).cloned()
    }

    /// The pod that runs this container.
    pub fn pod_of_container(&self, container_id: &str) -> Option<Arc<PodMeta>> {
        self.pods.get(self.by_container.get(container_id)?).cloned()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn stats(&self) -> PodCacheStats {
        self.stats
    }

    pub fn count_error(&mut self) {
        self.stats.errors += 1;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("KUBERNETES_SERVICE_HOST is set but NODE_NAME is not: set NODE_NAME from the downward API (spec.nodeName)")]
    NoNodeName,
    #[error("in-cluster Kubernetes config: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Whether this process runs in a Kubernetes pod (the kubelet sets
/// KUBERNETES_SERVICE_HOST in every container).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
}

/// The watch of this node's pods, running on the tokio runtime; dropping it stops it.
pub struct PodWatcher {
    cache: Arc<RwLock<PodCache>>,
    node_name: String,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatcher {
    /// In a cluster: watches the pods of `$NODE_NAME` with the pod's service
    /// account. Outside one: `Ok(None)`, and nothing runs. Call inside a tokio
    /// runtime.
    pub fn from_env() -> Result<Option<PodWatcher>, K8sError> {
        if !in_cluster() {
            return Ok(None);
        }
        let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()).ok_or(K8sError::NoNodeName)?;
        let config = kube::Config::incluster()?;
        let client = Client::try_from(config)?;
        Ok(Some(PodWatcher::start(client, &node)))
    }

    /// Watches the pods of `node_name` through `client`. Call inside a tokio runtime.
    pub fn start(client: Client, node_name: &str) -> PodWatcher {
        let cache = Arc::new(RwLock::new(PodCache::new()));
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
        let stream = watcher(api, config).default_backoff();
        let task = {
            let cache = cache.clone();
            let node = node_name.to_string();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(event) => cache.write().unwrap_or_else(|e| e.into_inner()).apply(event),
                        Err(error) => {
                            cache.write().unwrap_or_else(|e| e.into_inner()).count_error();
                            tracing::warn!(%error, node, "watching this node's pods failed; retrying");
                        }
                    }
                }
            })
        };
        PodWatcher { cache, node_name: node_name.to_string(), task }
    }

    pub fn cache(&self) -> Arc<RwLock<PodCache>> {
        self.cache.clone()
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }
}

impl Drop for PodWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

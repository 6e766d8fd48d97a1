//! The container lookup end to end without root: a fake cgroup tree shaped
//! like kubelet's, and the pod cache filled from example recordings of the
//! Kubernetes API (tests/fixtures/k8s, see its README), both fed directly and
//! served to kube's real client from a local HTTP server.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::WatchEvent};
use kube::runtime::watcher::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/k8s").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const LIST: &str = "podlist-node-a.recorded-example.json";
const WATCH: &str = "watch-node-a.recorded-example.jsonl";

const WEB_UID: &str = "3f0c2a4e-7b1d-4c8e-9a6f-5d2b1e0c9a87";
const DNS_UID: &str = "b5e1d2c3-4a5b-4c6d-8e7f-901a2b3c4d5e";
const BATCH_UID: &str = "c0ffee00-1234-4abc-9def-0123456789ab";
const API_UID: &str = "d4c3b2a1-0f9e-4d8c-b7a6-5f4e3d2c1b0a";
const NGINX_ID: &str = "8f2c7d5b4a3e19c0d6b7a8e9f0123456789abcdef0123456789abcdef0a1b2c3";
const NGINX_RESTARTED_ID: &str = "0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b";
const SHIPPER_ID: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";
const MIGRATE_ID: &str = "aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900";
const DNS_ID: &str = "5d41402abc4b2a76b9719d911017c592ae2b5c1f0e7d3a9b8c6f4e2d1a0b9c8d";
const BATCH_ID: &str = "9b8a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a";

/// The list as the watcher delivers it: Init, one InitApply per pod, InitDone.
fn list_events() -> Vec<Event<Pod>> {
    let list: k8s_openapi::List<Pod> = serde_json::from_str(&fixture(LIST)).expect("the PodList parses");
    let mut events = vec![Event::Init];
    events.extend(list.items.into_iter().map(Event::InitApply));
    events.push(Event::InitDone);
    events
}

fn watch_events() -> Vec<Event<Pod>> {
    fixture(WATCH)
        .lines()
        .filter_map(|line| match serde_json::from_str::<WatchEvent<Pod>>(line).expect("a watch event parses") {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => Some(Event::Apply(p)),
            WatchEvent::Deleted(p) => Some(Event::Delete(p)),
            WatchEvent::Bookmark { .. } => None,
            WatchEvent::ErrorStatus(e) => panic!("no error in the fixture: {e:?}"),
            WatchEvent::ErrorOther(e) => panic!("no error in the fixture: {e:?}"),
        })
        .collect()
}

/// What the cache must hold after the list alone.
fn assert_listed(cache: &PodCache) {
    assert!(cache.synced());
    assert_eq!(cache.len(), 3);
    let web = cache.pod(WEB_UID).expect("web is listed");
    assert_eq!((web.name.as_str(), web.namespace.as_str()), ("web-7d4b9c6f8-x2k9p", "shop"));
    let names: Vec<(&str, &str, Option<Runtime>)> =
        web.containers.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.runtime)).collect();
    assert_eq!(
        names,
        [
            (NGINX_ID, "nginx", Some(Runtime::Containerd)),
            (SHIPPER_ID, "log-shipper", Some(Runtime::Containerd)),
            (MIGRATE_ID, "migrate", Some(Runtime::Containerd)),
        ]
    );
    let dns = cache.pod_of_container(DNS_ID).expect("coredns by its container id");
    assert_eq!((dns.name.as_str(), dns.namespace.as_str()), ("coredns-668d6bf9bc-7lq4m", "kube-system"));
    assert_eq!(dns.container(DNS_ID).unwrap().runtime, Some(Runtime::CriO));
    let batch = cache.pod(BATCH_UID).expect("the pending pod is listed");
    assert!(batch.containers.is_empty(), "no container id while ContainerCreating");
}

/// What it must hold after the watch events too.
fn assert_watched(cache: &PodCache) {
    assert_eq!(cache.len(), 3, "one added, one deleted");
    assert!(cache.pod(DNS_UID).is_none(), "coredns was deleted");
    assert!(cache.pod_of_container(DNS_ID).is_none());
    let api = cache.pod(API_UID).expect("api was added");
    assert_eq!((api.name.as_str(), api.namespace.as_str()), ("api-5f6d7c8b9-kz4wd", "shop"));
    assert_eq!(cache.pod_of_container(BATCH_ID).map(|p| p.uid.clone()).as_deref(), Some(BATCH_UID));
    // nginx restarted: the new id names it, the old one no longer does.
    let web = cache.pod_of_container(NGINX_RESTARTED_ID).expect("the restarted container");
    assert_eq!(web.uid, WEB_UID);
    assert_eq!(web.container(NGINX_RESTARTED_ID).unwrap().name, "nginx");
    assert!(cache.pod_of_container(NGINX_ID).is_none());
    assert!(cache.pod_of_container(SHIPPER_ID).is_some());
}

#[test]
fn pod_cache_from_the_recorded_list_and_watch() {
    let mut cache = PodCache::new();
    assert!(!cache.synced());
    for e in list_events() {
        cache.apply(e);
    }
    assert_listed(&cache);
    for e in watch_events() {
        cache.apply(e);
    }
    assert_watched(&cache);
    assert_eq!(cache.stats().lists, 1);

    // A relist (the watch expired) replaces everything, dropping pods that
    // went while nobody watched.
    cache.apply(Event::Init);
    let list: k8s_openapi::List<Pod> = serde_json::from_str(&fixture(LIST)).unwrap();
    let web = list.items.into_iter().find(|p| p.metadata.uid.as_deref() == Some(WEB_UID)).unwrap();
    cache.apply(Event::InitApply(web));
    assert_eq!(cache.len(), 3, "the old view stays until the list is complete");
    cache.apply(Event::InitDone);
    assert_eq!(cache.len(), 1);
    assert!(cache.pod(API_UID).is_none());
    assert_eq!(cache.stats().lists, 2);
}

/// A fake cgroup v2 tree (plain directories: their inode numbers play the
/// cgroup ids), with a kubelet container and a host service.
struct FakeHierarchy {
    root: PathBuf,
}

impl FakeHierarchy {
    fn new(tag: &str) -> FakeHierarchy {
        let root = std::env::temp_dir().join(format!("badfd-containers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        FakeHierarchy { root }
    }

    fn make(&self, rel: &str) -> u64 {
        let dir = self.root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        cgroup_id_of_dir(&dir).unwrap()
    }
}

impl Drop for FakeHierarchy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn lookup_joins_the_cgroup_path_and_the_api() {
    let tree = FakeHierarchy::new("lookup");
    let web_uid_ = WEB_UID.replace('-', "_");
    let nginx_path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{web_uid_}.slice/cri-containerd-{NGINX_ID}.scope"
    );
    let nginx = tree.make(&nginx_path);
    // kubelet's cgroupfs driver names the container by its bare id: the
    // runtime then comes from the pod's status (cri-o://).
    let dns = tree.make(&format!("/kubepods/burstable/pod{DNS_UID}/{DNS_ID}"));
    let sshd = tree.make("/system.slice/sshd.service");
    let unknown_pod = tree.make(&format!("/kubepods/besteffort/pod{API_UID}/{BATCH_ID}"));

    let pods = Arc::new(RwLock::new(PodCache::new()));
    for e in list_events() {
        pods.write().unwrap().apply(e);
    }
    let options = ContainersOptions { cgroup_root: Some(tree.root.clone()), ..ContainersOptions::default() };
    let containers = Containers::new(options).with_pods(pods.clone(), "node-a");

    let info = containers.lookup(nginx).expect("the nginx scope");
    assert_eq!(
        info,
        ContainerInfo {
            cgroup_id: nginx,
            cgroup_path: nginx_path.clone(),
            container_id: Some(NGINX_ID.into()),
            runtime: Some(Runtime::Containerd),
            pod_uid: Some(WEB_UID.into()),
            pod_name: Some("web-7d4b9c6f8-x2k9p".into()),
            namespace: Some("shop".into()),
            container_name: Some("nginx".into()),
            systemd_unit: None,
        }
    );
    assert_eq!(
        info.otel_attributes(containers.node_name()),
        [
            ("container.id", NGINX_ID.to_string()),
            ("k8s.pod.name", "web-7d4b9c6f8-x2k9p".into()),
            ("k8s.pod.uid", WEB_UID.into()),
            ("k8s.namespace.name", "shop".into()),
            ("k8s.container.name", "nginx".into()),
            ("k8s.node.name", "node-a".into()),
            ("container.runtime.name", "containerd".into()),
        ]
    );
    // The metric labels, named as kube-state-metrics names them.
    assert_eq!(
        info.metric_labels(),
        ContainerLabels {
            namespace: "shop".into(),
            pod: "web-7d4b9c6f8-x2k9p".into(),
            container: "nginx".into(),
            container_id: format!("containerd://{NGINX_ID}"),
        }
    );

    let info = containers.lookup(dns).unwrap();
    assert_eq!(info.runtime, Some(Runtime::CriO), "from the pod's containerID scheme");
    assert_eq!(info.container_name.as_deref(), Some("coredns"));
    assert_eq!(info.namespace.as_deref(), Some("kube-system"));

    let info = containers.lookup(sshd).unwrap();
    assert_eq!((info.systemd_unit.as_deref(), info.runtime), (Some("sshd.service"), Some(Runtime::Systemd)));
    assert_eq!(info.container_id, None);
    assert!(info.otel_attributes(Some("node-a")).is_empty(), "a host service has no k8s attributes");

    // A pod the API has not told about (yet): what the path says.
    let info = containers.lookup(unknown_pod).unwrap();
    assert_eq!(info.pod_uid.as_deref(), Some(API_UID));
    assert_eq!(info.container_id.as_deref(), Some(BATCH_ID));
    assert_eq!((info.pod_name, info.runtime), (None, None));
    // ...until the watch brings it.
    for e in watch_events() {
        pods.write().unwrap().apply(e);
    }
    assert_eq!(containers.lookup(unknown_pod).unwrap().pod_name.as_deref(), Some("api-5f6d7c8b9-kz4wd"));

    // Not a cgroup at all.
    assert_eq!(containers.lookup(u64::MAX - 7), None);
}

/// Without pods (outside a cluster): the path alone, no API, no names.
#[test]
fn lookup_without_a_cluster_gives_what_the_path_says() {
    let tree = FakeHierarchy::new("nocluster");
    let id = tree.make(&format!("/system.slice/docker-{NGINX_ID}.scope"));
    let containers = Containers::new(ContainersOptions { cgroup_root: Some(tree.root.clone()), ..Default::default() });
    let info = containers.lookup(id).unwrap();
    assert_eq!((info.container_id.as_deref(), info.runtime), (Some(NGINX_ID), Some(Runtime::Docker)));
    assert_eq!(info.pod_uid, None);
    assert_eq!(
        info.otel_attributes(None),
        [("container.id", NGINX_ID.to_string()), ("container.runtime.name", "docker".into())]
    );
    let labels = info.metric_labels();
    assert_eq!((labels.namespace.as_str(), labels.pod.as_str()), ("", ""), "no names outside a cluster");
    assert_eq!(labels.container_id, format!("docker://{NGINX_ID}"));
    assert_eq!(containers.node_name(), None);
}

/// A local stand-in for the API server: answers the list with the recorded
/// PodList and the first watch with the recorded events (later watches hang,
/// as a quiet watch does). Records every request line.
async fn serve_recordings(listener: tokio::net::TcpListener, requests: Arc<Mutex<Vec<String>>>) {
    let list = fixture(LIST);
    let watch = fixture(WATCH);
    let mut watches = 0;
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let request_line = head.lines().next().unwrap_or_default().to_string();
        requests.lock().unwrap().push(request_line.clone());
        if request_line.contains("watch=true") {
            watches += 1;
            let first = watches == 1;
            let watch = watch.clone();
            tokio::spawn(async move {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                if first {
                    for line in watch.lines() {
                        let chunk = format!("{line}\n");
                        let _ = socket.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await;
                    }
                }
                // Keep the watch open, quiet.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        } else {
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}",
                list.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_against_a_local_api_server_serving_the_recordings() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve_recordings(listener, requests.clone()));

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).expect("a client for the local server");
    let watcher = PodWatcher::start(client, "node-a");
    assert_eq!(watcher.node_name(), "node-a");
    let cache = watcher.cache();

    // Init + 3 listed + InitDone + 4 watch events.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cache.read().unwrap().stats().events < 9 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = cache.read().unwrap().stats();
    assert_eq!((stats.events, stats.lists, stats.errors), (9, 1, 0), "requests: {:?}", requests.lock().unwrap());
    assert_watched(&cache.read().unwrap());

    // The pods of this node only, listed then watched from the list's version.
    let requests = requests.lock().unwrap().clone();
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(requests[0].starts_with("GET /api/v1/pods?"), "{requests:?}");
    for r in &requests {
        assert!(r.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{r}");
    }
    assert!(!requests[0].contains("watch=true"));
    assert!(requests[1].contains("watch=true") && requests[1].contains("resourceVersion=184501"), "{}", requests[1]);
    drop(watcher);
    server.abort();
}

#[test]
fn outside_a_cluster_nothing_starts() {
    // The test environment is not a pod.
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        assert!(!k8s::in_cluster());
        assert!(PodWatcher::from_env().expect("no error outside a cluster").is_none());
    }
}

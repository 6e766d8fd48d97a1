//! The pipeline end to end into its sinks, without the kernel.

use std::sync::{atomic::Ordering, Mutex};

use prometheus_client::registry::Registry;

use super::*;
use crate::{
    pipeline::{containers::ContainerLabels, labels::COLLECT_AT_LEAST},
    sinks::metrics::{Aggregates, MetricsSink},
};

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
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(MetricsSink { aggregates: aggregates.clone() })];
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
    assert_eq!(pipeline.labels.prefixes_interned(), 50);
    let ((_, _, _, prefix, container), _) = a.failures.iter().next().unwrap();
    assert_eq!(*container, None, "no container labels unless asked for");
    assert!(prefix.starts_with("/var/lib/app"));
}

/// The container lookup of the pipeline over a fake hierarchy (plain
/// directories: their inode numbers play the cgroup ids): the first event of
/// a cgroup goes on at once without its container (the lookup runs on a
/// worker thread); later ones get its attributes and labels, made once per
/// cgroup.
#[test]
fn anomalies_get_their_container_once_per_cgroup() {
    use crate::pipeline::containers::{cgroup_id_of_dir, ContainersOptions};
    let root = std::env::temp_dir().join(format!("badfd-pipeline-containers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let uid = "3f0c2a4e-7b1d-4c8e-9a6f-5d2b1e0c9a87";
    let id = "8f2c7d5b4a3e19c0d6b7a8e9f0123456789abcdef0123456789abcdef0a1b2c3";
    let scope = root.join(format!("kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope", uid.replace('-', "_")));
    std::fs::create_dir_all(&scope).unwrap();
    let cgroup_id = cgroup_id_of_dir(&scope).unwrap();
    let options = ContainersOptions { cgroup_root: Some(root.clone()), proc_fallback: false, ..Default::default() };
    let containers = Arc::new(Containers::new(options));
    let lookups = containers.lookup_stats().clone();

    struct Keep(Arc<std::sync::Mutex<Vec<Anomaly>>>);
    impl Sink for Keep {
        fn accept(&mut self, batch: &[Anomaly]) {
            self.0.lock().unwrap().extend(batch.iter().cloned());
        }
    }
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stats = PipelineStats::register(&mut Registry::default());
    let mut pipeline = Pipeline::new(Arc::new(AtomicUsize::new(3)), vec![Box::new(Keep(kept.clone()))], stats)
        .with_containers(containers, true);
    // A host process: a cgroup this hierarchy does not have.
    let host = u64::MAX - 3;
    pipeline.push(OpenEvent { cgroup_id, ..event(0, b"/etc/app.conf") });
    pipeline.push(OpenEvent { cgroup_id: host, ..event(1, b"/etc/app.conf") });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lookups.done.get() < 2 {
        assert!(std::time::Instant::now() < deadline, "the lookups never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for i in 2..5 {
        pipeline.push(OpenEvent { cgroup_id, ..event(i, b"/etc/app.conf") });
    }
    pipeline.push(OpenEvent { cgroup_id: host, ..event(1, b"/etc/app.conf") });
    pipeline.flush();
    let kept = kept.lock().unwrap();
    assert_eq!(kept.len(), 6);
    for first in &kept[0..2] {
        assert!(first.container.is_none() && first.container_attributes.is_none(), "not known yet: goes on at once");
        assert_eq!(**first.container_labels.as_ref().unwrap(), ContainerLabels::default(), "empty labels meanwhile");
    }
    let known = kept[2].container.as_ref().expect("the container");
    assert_eq!((known.container_id.as_deref(), known.pod_uid.as_deref()), (Some(id), Some(uid)));
    let attributes = kept[2].container_attributes.as_ref().unwrap();
    assert!(attributes.contains(&("container.id", id.to_string())) && attributes.contains(&("k8s.pod.uid", uid.to_string())));
    assert_eq!(kept[2].container_labels.as_ref().unwrap().container_id, format!("containerd://{id}"));
    for a in &kept[3..5] {
        assert!(Arc::ptr_eq(a.container.as_ref().unwrap(), known), "one lookup per cgroup, shared");
        assert!(Arc::ptr_eq(a.container_labels.as_ref().unwrap(), kept[2].container_labels.as_ref().unwrap()));
    }
    assert!(kept[5].container.is_none() && kept[5].container_attributes.is_none());
    assert_eq!(**kept[5].container_labels.as_ref().unwrap(), ContainerLabels::default(), "empty labels for the host");
    assert_eq!(lookups.done.get(), 2, "one lookup per cgroup");
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
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(MetricsSink { aggregates: aggregates.clone() })];
    let depth = Arc::new(AtomicUsize::new(3));
    let mut pipeline = Pipeline::new(depth.clone(), sinks, stats);
    pipeline.push(event(0, b"/var/lib/app/data/x.db"));
    depth.store(2, Ordering::Relaxed);
    pipeline.push(event(0, b"/var/lib/app/data/x.db"));
    pipeline.flush();
    {
        let a = aggregates.lock().unwrap();
        let mut prefixes: Vec<String> = a.failures.iter().map(|((_, _, _, p, _), _)| p.to_string()).collect();
        prefixes.sort();
        assert_eq!(prefixes, ["/var/lib", "/var/lib/app"]);
    }
    const N: usize = 200_000;
    for i in 0..N {
        // Letters, not digits: each is its own label value.
        let name: String = (0..4).map(|k| (b'a' + ((i / 26usize.pow(k)) % 26) as u8) as char).collect();
        pipeline.push(event(i, format!("/srv/{name}/file").as_bytes()));
        assert!(pipeline.labels.prefixes_interned() <= COLLECT_AT_LEAST + BATCH, "{} interned at {i}", pipeline.labels.prefixes_interned());
    }
    pipeline.flush();
    let a = aggregates.lock().unwrap();
    assert_eq!(a.failures.iter().map(|(_, f)| f.count).sum::<u64>(), N as u64 + 2);
    assert!(a.failures.len() <= 100 + 1, "100 named label sets and one other: {}", a.failures.len());
}

/// Every anomaly reaches the sinks with its wall time and the record id the
/// admission gave it (a refused one has none), whatever the order of sinks.
#[test]
fn anomalies_carry_wall_time_and_record_ids_before_any_sink() {
    use std::sync::atomic::AtomicU64;

    use crate::pipeline::{clock::monotonic_ns, record_ids::RecordAdmission};

    /// Admits every other anomaly, and counts the refused ones.
    #[derive(Default)]
    struct EveryOther(AtomicU64, AtomicU64);
    impl RecordAdmission for EveryOther {
        fn admit(&self, _: &Anomaly) -> bool {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            if n % 2 == 1 {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
            n % 2 == 0
        }
    }
    struct Keep(Arc<Mutex<Vec<Anomaly>>>);
    impl Sink for Keep {
        fn accept(&mut self, batch: &[Anomaly]) {
            self.0.lock().unwrap().extend(batch.iter().cloned());
        }
    }
    let (first, second) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let admission = Arc::new(EveryOther::default());
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(Keep(first.clone())), Box::new(Keep(second.clone()))];
    let mut pipeline = Pipeline::new(Arc::new(AtomicUsize::new(3)), sinks, PipelineStats::default()).with_record_ids(admission.clone());
    let now = monotonic_ns();
    for i in 0..4 {
        pipeline.push(OpenEvent { start_ns: now - 1_000_000_000, ..event(i, b"/etc/app.conf") });
    }
    pipeline.finish();
    let first = first.lock().unwrap();
    let ids: Vec<Option<RecordId>> = first.iter().map(|a| a.record_id).collect();
    assert!(ids[0].is_some() && ids[1].is_none() && ids[2].is_some() && ids[3].is_none(), "{ids:?}");
    assert_ne!(ids[0], ids[2], "each record its own id");
    assert_eq!(admission.1.load(Ordering::Relaxed), 2, "the refusals are the admission's to count");
    let second_ids: Vec<Option<RecordId>> = second.lock().unwrap().iter().map(|a| a.record_id).collect();
    assert_eq!(ids, second_ids, "every sink sees the same ids");
    let age = std::time::SystemTime::now().duration_since(first[0].wall_time()).unwrap();
    assert!(age >= std::time::Duration::from_secs(1) && age < std::time::Duration::from_secs(2), "{age:?}");
}

//! The pipeline's container stage: a small cache by cgroup id in front of
//! [`Containers`], filled by a worker thread of its own.
//!
//! Finding a cgroup that is not known yet walks the cgroup hierarchy; on a
//! systemd host users own delegated subtrees, so anyone can make that walk
//! long (thousands of cgroups) and frequent (a new cgroup per process). The
//! event thread therefore never walks: an unknown cgroup is queued for the
//! worker (one lookup per cgroup in flight, at most [`LOOKUP_QUEUE`] queued;
//! past that the lookup is dropped and counted, and asked for again at the
//! cgroup's next event) and its event goes on at once. The pipeline queues
//! the lookup when an event arrives ([`ContainerLookup::prefetch`]) and reads
//! what is known when the event leaves ([`ContainerLookup::entry`], after the
//! found-later hold of a failure): without an answer by then, the event
//! carries what a host process's would, no container and empty container
//! labels; every later event of the cgroup carries the answer. At the end of
//! the stream the pipeline waits for answers a little (`wait_for_answers`).
//! A cgroup known for longer than [`CONTAINER_RECHECK`] keeps what was found
//! while the worker checks it again.

use std::{
    collections::HashSet,
    num::NonZeroUsize,
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant},
};

use lru::LruCache;
use prometheus_client::{metrics::counter::Counter, registry::Registry};

use super::{ContainerInfo, ContainerLabels, Containers};
use crate::{pipeline::OtelAttributes, OpenEvent};

/// How long the pipeline trusts what it found about a cgroup before asking
/// again (pod names arrive from the API a little after the pod starts; the
/// cgroup cache below rechecks that the cgroup still exists).
const CONTAINER_RECHECK: Duration = Duration::from_secs(5);
/// Cgroups whose container the pipeline remembers.
const CONTAINER_CACHE: usize = 4096;
/// Lookups waiting for the worker at most: with a walk of a big hierarchy
/// taking milliseconds, a full queue is a storm of new cgroups.
pub const LOOKUP_QUEUE: usize = 256;

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

/// The lookups' self-metrics; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct ContainerLookupStats {
    /// Lookups the worker finished (found or not).
    pub done: Counter,
    /// Lookups not queued because the queue was full.
    pub dropped: Counter,
}

impl ContainerLookupStats {
    pub fn register(registry: &mut Registry) -> ContainerLookupStats {
        let stats = ContainerLookupStats::default();
        registry.register(
            "container_lookups",
            "Cgroups looked up (off the event thread) for their container and pod, found or not",
            stats.done.clone(),
        );
        registry.register(
            "container_lookups_dropped",
            "Cgroup lookups not queued because the queue was full (a storm of new cgroups); the cgroup's events carry empty container labels until a later event's lookup is queued",
            stats.dropped.clone(),
        );
        stats
    }
}

/// (cgroup id, pid or 0): the cache key. The pid is 0 unless the v2 cgroup
/// says nothing (a task in the v2 root, as on cgroup v1 hosts:
/// `/proc/PID/cgroup` tells).
type Key = (u64, u32);

struct Request {
    key: Key,
    cgroup_id: u64,
    pid: u32,
}

struct Answer {
    /// The key the request was made under (in flight until answered).
    requested: Key,
    /// The key the answer belongs under.
    key: Key,
    entry: CgroupEntry,
}

pub struct ContainerLookup {
    by_cgroup: LruCache<Key, CgroupEntry>,
    /// Cgroups whose v2 path says nothing: looked up per pid.
    per_pid: LruCache<u64, ()>,
    in_flight: HashSet<Key>,
    requests: SyncSender<Request>,
    answers: Receiver<Answer>,
    /// What an event carries while its cgroup is not known (yet).
    unknown: CgroupEntry,
    stats: ContainerLookupStats,
}

impl ContainerLookup {
    /// Starts the worker; it ends when this is dropped (after the lookup it is in).
    pub fn new(containers: Arc<Containers>, labels: bool) -> ContainerLookup {
        let capacity = NonZeroUsize::new(CONTAINER_CACHE).expect("nonzero");
        let (requests, queue) = mpsc::sync_channel(LOOKUP_QUEUE);
        let (answer, answers) = mpsc::channel();
        let stats = containers.lookup_stats().clone();
        let done = stats.done.clone();
        let spawned = std::thread::Builder::new()
            .name("badfd-containers".into())
            .spawn(move || work(&containers, labels, &queue, &answer, &done));
        if let Err(error) = spawned {
            // Every lookup is then dropped (and counted): events go on without containers.
            tracing::error!(%error, "starting the container lookup thread failed: no container labels or attributes");
        }
        ContainerLookup {
            by_cgroup: LruCache::new(capacity),
            per_pid: LruCache::new(capacity),
            in_flight: HashSet::new(),
            requests,
            answers,
            unknown: CgroupEntry {
                checked: Instant::now(),
                info: None,
                attributes: None,
                labels: labels.then(|| Arc::new(ContainerLabels::default())),
            },
            stats,
        }
    }

    /// Queues the lookup of `event`'s cgroup if it is not known (or due for a
    /// recheck), so that its answer may be there when the event is decided.
    pub fn prefetch(&mut self, event: &OpenEvent) {
        self.entry(event);
    }

    /// What is known now of `event`'s cgroup, without waiting: if nothing yet,
    /// no container and empty labels (and its lookup is queued).
    pub fn entry(&mut self, event: &OpenEvent) -> CgroupEntry {
        self.take_answers();
        let now = Instant::now();
        let mut stale = None;
        for key in [(event.cgroup_id, 0), (event.cgroup_id, event.pid)] {
            if let Some(e) = self.by_cgroup.get(&key) {
                if now.duration_since(e.checked) < CONTAINER_RECHECK {
                    return e.clone();
                }
                stale = Some((key, e.clone()));
                break;
            }
        }
        let key = match &stale {
            Some((key, _)) => *key,
            None if self.per_pid.contains(&event.cgroup_id) => (event.cgroup_id, event.pid),
            None => (event.cgroup_id, 0),
        };
        self.request(key, event);
        match stale {
            Some((_, entry)) => entry,
            None => self.unknown.clone(),
        }
    }

    /// Lookups queued or being done now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits for the lookups in flight, `limit` at most: at the end of the
    /// stream, where no later event could carry their answers and no event
    /// waits behind.
    pub fn wait_for_answers(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.take_answers();
        while !self.in_flight.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return };
            match self.answers.recv_timeout(left) {
                Ok(answer) => self.store(answer),
                Err(_) => return,
            }
        }
    }

    fn request(&mut self, key: Key, event: &OpenEvent) {
        if self.in_flight.contains(&key) {
            return;
        }
        match self.requests.try_send(Request { key, cgroup_id: event.cgroup_id, pid: event.pid }) {
            Ok(()) => {
                self.in_flight.insert(key);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.inc();
            }
        }
    }

    fn take_answers(&mut self) {
        while let Ok(answer) = self.answers.try_recv() {
            self.store(answer);
        }
    }

    fn store(&mut self, answer: Answer) {
        self.in_flight.remove(&answer.requested);
        if answer.key.1 != 0 {
            self.per_pid.put(answer.key.0, ());
        }
        self.by_cgroup.put(answer.key, answer.entry);
    }
}

/// The worker: one lookup at a time, in the order queued, until the
/// pipeline's side is dropped.
fn work(containers: &Containers, labels: bool, queue: &Receiver<Request>, answers: &mpsc::Sender<Answer>, done: &Counter) {
    while let Ok(request) = queue.recv() {
        let now = Instant::now();
        let found = containers.lookup(request.cgroup_id);
        let (info, key) = if request.key.1 == 0 && found.as_ref().is_some_and(|i| i.cgroup_path != "/") {
            (found, (request.cgroup_id, 0))
        } else {
            (containers.lookup_task(request.cgroup_id, request.pid), (request.cgroup_id, request.pid))
        };
        let entry = CgroupEntry {
            checked: now,
            attributes: info.as_ref().map(|i| i.otel_attributes(containers.node_name()).into()),
            labels: labels.then(|| Arc::new(info.as_ref().map(ContainerInfo::metric_labels).unwrap_or_default())),
            info: info.map(Arc::new),
        };
        done.inc();
        if answers.send(Answer { requested: request.key, key, entry }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::containers::{cgroup_id_of_dir, ContainersOptions};

    fn event(cgroup_id: u64, pid: u32) -> OpenEvent {
        OpenEvent { cgroup_id, pid, ..OpenEvent::default() }
    }

    /// Waits (for the worker) until nothing is in flight.
    fn settle(lookup: &mut ContainerLookup) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lookup.in_flight() > 0 {
            assert!(Instant::now() < deadline, "the worker never answered");
            std::thread::sleep(Duration::from_millis(5));
            lookup.take_answers();
        }
    }

    /// The first event of a cgroup goes on at once without its container;
    /// one lookup is made however many events come meanwhile; later events
    /// carry what it found.
    #[test]
    fn first_events_go_on_at_once_and_later_ones_carry_the_container() {
        let root = std::env::temp_dir().join(format!("badfd-lookup-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let id = "ab".repeat(32);
        let scope = root.join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&scope).unwrap();
        let cgroup_id = cgroup_id_of_dir(&scope).unwrap();
        let options = ContainersOptions { cgroup_root: Some(root.clone()), proc_fallback: false, ..Default::default() };
        let containers = Arc::new(Containers::new(options));
        let stats = containers.lookup_stats().clone();
        let mut lookup = ContainerLookup::new(containers, true);

        for pid in 1..=50 {
            let first = lookup.entry(&event(cgroup_id, pid));
            assert!(first.info.is_none() && first.attributes.is_none(), "not known yet");
            assert_eq!(**first.labels.as_ref().unwrap(), ContainerLabels::default(), "empty labels meanwhile");
        }
        assert!(lookup.in_flight() <= 1, "one lookup per cgroup in flight");
        settle(&mut lookup);
        assert_eq!(stats.done.get(), 1, "deduplicated: one lookup for 50 events");
        let later = lookup.entry(&event(cgroup_id, 7));
        assert_eq!(later.info.as_ref().unwrap().container_id.as_deref(), Some(id.as_str()));
        assert_eq!(later.labels.as_ref().unwrap().container_id, format!("docker://{id}"));
        assert_eq!(stats.dropped.get(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Past `LOOKUP_QUEUE` waiting lookups, new ones are dropped and counted
    /// exactly; a dropped cgroup is asked for again at its next event.
    #[test]
    fn a_full_queue_drops_lookups_and_counts_them() {
        // The worker is held inside its first lookup: the hierarchy's lock is taken here.
        let root = std::env::temp_dir().join(format!("badfd-lookup-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let options = ContainersOptions { cgroup_root: Some(root.clone()), proc_fallback: false, ..Default::default() };
        let containers = Arc::new(Containers::new(options));
        let stats = containers.lookup_stats().clone();
        let hold = containers.hold_paths_for_test();
        let mut lookup = ContainerLookup::new(containers.clone(), false);
        // The first request is taken by the worker (which then waits on the
        // lock); wait until it has been taken so the queue is empty again.
        lookup.entry(&event(1_000_000, 1));
        std::thread::sleep(Duration::from_millis(200));
        let extra = 10u64;
        for i in 0..(LOOKUP_QUEUE as u64 + extra) {
            lookup.entry(&event(2_000_000 + i, 1));
        }
        assert_eq!(stats.dropped.get(), extra, "exactly the lookups past the queue");
        // Again for a queued cgroup: deduplicated, nothing more dropped.
        lookup.entry(&event(2_000_000, 1));
        assert_eq!(stats.dropped.get(), extra);
        // Again for a dropped one: asked for again, and dropped again while full.
        lookup.entry(&event(2_000_000 + LOOKUP_QUEUE as u64, 1));
        assert_eq!(stats.dropped.get(), extra + 1);
        drop(hold);
        settle(&mut lookup);
        assert_eq!(stats.done.get(), 1 + LOOKUP_QUEUE as u64);
        lookup.entry(&event(2_000_000 + LOOKUP_QUEUE as u64, 1));
        settle(&mut lookup);
        assert_eq!(stats.done.get(), 2 + LOOKUP_QUEUE as u64, "the dropped cgroup was looked up at its next event");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

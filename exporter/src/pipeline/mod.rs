//! The one path of an event in userspace, for `serve` and `trace` alike:
//!
//! ```text
//! ring buffer bytes                       (probe: EventReader, drained by event_loop.rs)
//!   -> decode          event.rs           OpenEvent, or counted undecodable
//!   -> found notices   found_later.rs     a successful open that found earlier failures: consumed here
//!   -> resolve         resolve.rs         the absolute path, against the opener's cwd or dirfd
//!   -> filter          filter.rs          what the kernel cannot decide (trace's --errno, --path-prefix)
//!   -> redact          redact.rs          --paths.redact, before any label, record or line sees a path
//!   -> labels          labels/            the interned `comm` and `path_prefix` label values
//!   -> container       containers/        container and pod, by cgroup (when a sink uses them)
//!   -> executable      executable.rs      /proc/PID/exe, read on arrival (OTLP records, trace --json): looked up
//!                                         off this thread, read when the anomaly is decided (below)
//!   -> wall time       clock.rs           the one monotonic-to-wall clock
//!   -> found later     found_later.rs     a failure is held until its process found the name (a probe) or its window closed
//!   -> record id       record_ids.rs      which anomalies get an OTLP record, and its id
//!   -> why             missing.rs         an ENOENT's first missing path component (trace, OTLP records)
//!   = Anomaly          anomaly.rs         complete: sinks only read it
//!   -> sinks, in batches                  (sinks/: metrics, OTLP, terminal)
//! ```
//!
//! Every stage runs on the event thread ([`event_loop`]), one anomaly at a
//! time; the sinks get batches of up to [`BATCH`] anomalies, each batch once
//! per sink, in order. [`Pipeline::flush`] runs on every wake of the event
//! loop (at least every `POLL_INTERVAL`, events or not) and
//! [`Pipeline::finish`] once at the end of the stream: a stage that holds
//! anomalies for a while (to classify them by what follows) releases them
//! there, to every sink at once.

pub mod anomaly;
pub mod clock;
pub mod containers;
pub mod event;
pub mod event_loop;
pub mod executable;
pub mod filter;
pub mod found_later;
pub mod labels;
pub mod missing;
pub mod open_flags;
pub mod record_ids;
pub mod redact;
pub mod resolve;
pub mod stats;

use std::sync::{atomic::AtomicUsize, Arc};

pub use anomaly::{Anomaly, OtelAttributes, RecordId};
pub use stats::PipelineStats;

use self::{
    clock::WallClock,
    containers::{ContainerLookup, Containers},
    event::OpenEvent,
    filter::Filter,
    found_later::{FoundLaterStage, Notice},
    labels::Labeler,
    missing::MissingLookup,
    record_ids::{RecordAdmission, RecordIds},
    redact::Redactor,
    resolve::{Resolution, Resolver},
};

/// A consumer of anomalies: the metrics, the OTLP records, the terminal.
/// Called on the event thread; must not block for long (hand slow work to a
/// thread of its own, as the OTLP sink does).
pub trait Sink: Send {
    /// The next anomalies, in the order the pipeline made them.
    fn accept(&mut self, batch: &[Anomaly]);
    /// Periodic upkeep on the event thread (expiring idle series).
    fn housekeeping(&mut self) {}
    /// The stream has ended: every anomaly has been accepted.
    fn finish(&mut self) {}
}

/// Anomalies handed to sinks at once: big enough to amortize locks, small
/// enough to keep memory flat during a flood.
pub const BATCH: usize = 1024;

/// How long the end of the stream waits for container lookups in flight.
const END_OF_STREAM_LOOKUPS: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Pipeline {
    resolver: Resolver,
    filter: Filter,
    redactor: Redactor,
    labels: Labeler,
    containers: Option<ContainerLookup>,
    clock: WallClock,
    executables: Option<executable::ExecutableCache>,
    found_later: Option<FoundLaterStage>,
    record_ids: Option<RecordIds>,
    /// With whether every not-found failure is looked up (trace) or only
    /// those with a record id (serve: bounded by the OTLP rate limit).
    missing: Option<(MissingLookup, bool)>,
    batch: Vec<Anomaly>,
    sinks: Vec<Box<dyn Sink>>,
    stats: PipelineStats,
}

impl Pipeline {
    /// `depth` is the `path_prefix` depth, shared so that a reload can change it.
    pub fn new(depth: Arc<AtomicUsize>, sinks: Vec<Box<dyn Sink>>, stats: PipelineStats) -> Pipeline {
        Pipeline {
            resolver: Resolver::new(),
            filter: Filter::default(),
            redactor: Redactor::off(),
            labels: Labeler::new(depth),
            containers: None,
            clock: WallClock::now(),
            executables: None,
            found_later: None,
            record_ids: None,
            missing: None,
            batch: Vec::with_capacity(BATCH),
            sinks,
            stats,
        }
    }

    /// Looks up each anomaly's container and pod, and with `labels` makes
    /// their metric labels too (`--metrics.container-labels`).
    pub fn with_containers(mut self, containers: Arc<Containers>, labels: bool) -> Pipeline {
        self.containers = Some(ContainerLookup::new(containers, labels));
        self
    }

    /// Reads each anomaly's executable (`/proc/PID/exe`) as it arrives, while
    /// its process most likely still runs (a failure is decided up to its
    /// found-later window later).
    pub fn with_executables(mut self) -> Pipeline {
        self.executables = Some(executable::ExecutableCache::default());
        self
    }

    /// Drops the anomalies `filter` does not keep (counted as `filtered`).
    pub fn with_filter(mut self, filter: Filter) -> Pipeline {
        self.filter = filter;
        self
    }

    /// Redacts every anomaly's paths (`--paths.redact`) before any label,
    /// record or line sees them: the one place where redaction happens.
    pub fn with_redactor(mut self, redactor: Redactor) -> Pipeline {
        self.redactor = redactor;
        self
    }

    /// Holds each failure until it is decided found later or not (the
    /// kernel's window, `window_ns`; the probe must stream found notices,
    /// `CONFIG_FOUND_NOTICES`). 0: off, failures pass undecided.
    pub fn with_found_later(mut self, window_ns: u64) -> Pipeline {
        self.found_later = FoundLaterStage::new(window_ns);
        self
    }

    /// Names the first missing path component of ENOENT/ENOTDIR failures
    /// never found: of every one (`all`, trace) or of those with an OTLP
    /// record (serve), a few `stat`s each.
    pub fn with_missing_components(mut self, all: bool) -> Pipeline {
        self.missing = Some((MissingLookup::new(), all));
        self
    }

    /// Gives the anomalies that `admission` admits an OTLP record id.
    pub fn with_record_ids(mut self, admission: Arc<dyn RecordAdmission>) -> Pipeline {
        self.record_ids = Some(RecordIds::new(admission));
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

    /// Takes one decoded event through every stage.
    pub fn push(&mut self, event: OpenEvent) {
        let mut event = match &mut self.found_later {
            Some(stage) => match stage.notice(event) {
                Notice::Consumed => {
                    self.stats.found_notices.inc();
                    return;
                }
                Notice::NoticeAndShown(event) => {
                    self.stats.found_notices.inc();
                    event
                }
                Notice::NotANotice(event) => event,
            },
            // Notices are asked for only with the stage; a stray one is no anomaly.
            None if !event.shown() => return,
            None => event,
        };
        let mut resolved = self.resolver.resolve(&event);
        if let Some(i) = Resolution::ALL.iter().position(|&r| r == resolved.how) {
            self.stats.resolutions[i].inc();
        }
        if !self.filter.keep(&event, &resolved.path) {
            self.stats.filtered.inc();
            return;
        }
        self.redactor.apply(&mut event, &mut resolved);
        let path_prefix = match event.path_unreadable() {
            true => self.labels.path_prefix(labels::path_prefix::UNREADABLE_PREFIX.as_bytes()),
            false => self.labels.path_prefix(&resolved.path),
        };
        let comm = self.labels.comm(&event.comm);
        // Queued now, read when the anomaly is decided (`decided`): a failure
        // held for the found-later window gives the lookup that long.
        if let Some(lookup) = &mut self.containers {
            lookup.prefetch(&event);
        }
        let executable = self.executables.as_mut().map(|cache| {
            let path = cache.lookup(event.pid, event.tid, &event.comm, std::time::Instant::now())?;
            // Redacted as the paths are (a home directory names its user).
            match self.redactor.is_off() {
                true => Some(path),
                false => Some(self.redactor.redact_absolute(&path).map_or(path, Arc::from)),
            }
        });
        let anomaly = Anomaly {
            wall_ns: self.clock.wall_ns(event.start_ns),
            event,
            resolved,
            record_id: None,
            found_later: None,
            missing: None,
            comm,
            path_prefix,
            container: None,
            container_attributes: None,
            container_labels: None,
            executable,
        };
        match self.found_later.take() {
            Some(mut stage) => {
                let early = stage.counts().decided_early;
                stage.push(anomaly, clock::monotonic_ns(), &mut |a| self.decided(a));
                self.stats.found_later_decided_early.inc_by(stage.counts().decided_early - early);
                self.found_later = Some(stage);
            }
            None => self.decided(anomaly),
        }
    }

    /// The stages after found-later classification: the record id, the batch.
    fn decided(&mut self, mut anomaly: Anomaly) {
        // What is known of the container now; never waits (containers/lookup.rs).
        if let Some(lookup) = &mut self.containers {
            let e = lookup.entry(&anomaly.event);
            (anomaly.container, anomaly.container_attributes, anomaly.container_labels) = (e.info, e.attributes, e.labels);
        }
        if let Some(ids) = &self.record_ids {
            anomaly.record_id = ids.assign(&anomaly);
        }
        if let Some((lookup, all)) = &self.missing {
            if anomaly.found_later != Some(true) && (*all || anomaly.record_id.is_some()) {
                anomaly.missing = lookup.lookup(&anomaly);
            }
        }
        self.batch.push(anomaly);
        if self.batch.len() >= BATCH {
            self.hand_to_sinks();
        }
    }

    /// Hands on the failures decided by now, then what is batched to every sink.
    pub fn flush(&mut self) {
        if let Some(mut stage) = self.found_later.take() {
            stage.release_due(clock::monotonic_ns(), &mut |a| self.decided(a));
            self.found_later = Some(stage);
        }
        self.hand_to_sinks();
    }

    fn hand_to_sinks(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        for sink in &mut self.sinks {
            sink.accept(&self.batch);
        }
        self.batch.clear();
        self.labels.collect_if_due();
        self.clock.refresh();
    }

    /// Periodic upkeep: forgets label strings nothing holds any more, and
    /// lets each sink do its own (expire idle series).
    pub fn housekeeping(&mut self) {
        self.labels.collect_garbage();
        for sink in &mut self.sinks {
            sink.housekeeping();
        }
    }

    /// The end of the stream: hands over what is left and tells every sink.
    pub fn finish(&mut self) {
        // The failures still held get their containers if the lookups in
        // flight answer soon (a short `trace -- command` ends within them).
        if let Some(lookup) = &mut self.containers {
            lookup.wait_for_answers(END_OF_STREAM_LOOKUPS);
        }
        if let Some(mut stage) = self.found_later.take() {
            stage.release_all(&mut |a| self.decided(a));
            self.found_later = Some(stage);
        }
        self.flush();
        for sink in &mut self.sinks {
            sink.finish();
        }
    }

    /// The found-later stage's counts, and failures held now; `None` when off.
    pub fn found_later(&self) -> Option<(found_later::FoundLaterCounts, usize)> {
        self.found_later.as_ref().map(|s| (s.counts(), s.held()))
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;

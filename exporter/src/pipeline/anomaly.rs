//! The one anomaly type: what the pipeline makes of an event, and all that a
//! sink needs to count, log or show it.

use std::{sync::Arc, time::SystemTime};

use super::{
    clock,
    containers::{ContainerInfo, ContainerLabels},
    missing::MissingComponent,
    resolve::ResolvedPath,
};
use crate::OpenEvent;

/// The id of an anomaly's OTLP log record (the record's trace id): the metrics
/// attach it as an exemplar, to jump from a series to the record.
pub type RecordId = [u8; 16];

/// Semantic-convention attributes of a container, shared between anomalies.
pub type OtelAttributes = Arc<[(&'static str, String)]>;

/// One anomaly, with everything a sink needs to label, log or show it. Made
/// by the pipeline, complete before any sink sees it; sinks only read it.
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub event: OpenEvent,
    /// The absolute path (unless `resolved.how` is `Unresolved`) and how it was made.
    pub resolved: ResolvedPath,
    /// Wall-clock time of the open's start, in ns since the Unix epoch (the
    /// pipeline's one clock).
    pub wall_ns: u64,
    /// The id of its OTLP log record: `None` when there is no OTLP sink or
    /// its rate limit refused a record for this anomaly.
    pub record_id: Option<RecordId>,
    /// For a failure: whether its process found a file of the same name soon
    /// after (a search path's probe: `true`) or not (`false`); `None` for a
    /// slow successful open, or where the classification is off.
    pub found_later: Option<bool>,
    /// For an ENOENT/ENOTDIR failure never found: the first component of its
    /// path that was missing when badfd looked, after the fact (trace, and
    /// anomalies with an OTLP record).
    pub missing: Option<MissingComponent>,
    /// `comm` as a label value (odd bytes replaced), shared between anomalies.
    pub comm: Arc<str>,
    /// The `path_prefix` label value, shared between anomalies.
    pub path_prefix: Arc<str>,
    /// What is known of the opener's container and pod (when the pipeline
    /// has a container lookup: OTLP, container labels, `trace --json`).
    pub container: Option<Arc<ContainerInfo>>,
    /// Its OpenTelemetry attributes (`container.id`, `k8s.pod.name`, ...),
    /// made once per cgroup.
    pub container_attributes: Option<OtelAttributes>,
    /// Its metric labels, with `--metrics.container-labels` only.
    pub container_labels: Option<Arc<ContainerLabels>>,
    /// The opener's executable (`/proc/PID/exe`) as the pipeline's executable
    /// stage read it on arrival (`Some(None)`: unreadable, the process had
    /// exited); `None` where the stage is off.
    pub executable: Option<Option<Arc<[u8]>>>,
}

impl Anomaly {
    /// An anomaly of `event` at `wall_ns` without labels, container or record
    /// (what the pipeline's later stages add): for renderings and tests.
    pub fn new(event: OpenEvent, resolved: ResolvedPath, wall_ns: u64) -> Anomaly {
        Anomaly {
            event,
            resolved,
            wall_ns,
            record_id: None,
            found_later: None,
            missing: None,
            comm: Arc::from(""),
            path_prefix: Arc::from(""),
            container: None,
            container_attributes: None,
            container_labels: None,
            executable: None,
        }
    }

    /// A failure that was never found (or not classified): what a person is
    /// shown first.
    pub fn not_found(&self) -> bool {
        self.event.failed() && self.found_later != Some(true)
    }

    pub fn wall_time(&self) -> SystemTime {
        clock::system_time(self.wall_ns)
    }
}

//! The record-id stage: which anomalies get an OTLP log record, and its id,
//! decided before any sink sees the anomaly, so that the metrics' exemplar and
//! the record carry the same id whatever order the sinks run in, and whenever
//! the record is sent.

use std::sync::Arc;

use super::{Anomaly, RecordId};

/// Decides which anomalies get a log record (the OTLP sink's rate limit per
/// user, cgroup and errno implements it): a refused anomaly has no record id, and
/// the admission counts it.
pub trait RecordAdmission: Send + Sync {
    fn admit(&self, anomaly: &Anomaly) -> bool;
}

/// Gives each admitted anomaly a fresh random id (16 bytes, a trace id).
pub struct RecordIds {
    admission: Arc<dyn RecordAdmission>,
}

impl RecordIds {
    pub fn new(admission: Arc<dyn RecordAdmission>) -> RecordIds {
        RecordIds { admission }
    }

    pub fn assign(&self, anomaly: &Anomaly) -> Option<RecordId> {
        self.admission.admit(anomaly).then(rand::random)
    }
}

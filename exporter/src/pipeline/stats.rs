//! The pipeline's own counters: what it received, dropped and resolved.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::resolve::Resolution;

/// The pipeline's counters; clones share them. `register` exposes all but
/// `filtered` (only `trace` filters, and says so in its summary).
#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub events_received: Counter,
    pub events_undecodable: Counter,
    /// Indexed like `Resolution::ALL`.
    pub resolutions: [Counter; 4],
    /// Anomalies the userspace filters hid (`trace --errno`, `--path-prefix`).
    pub filtered: Counter,
    /// Found notices taken from the stream (successful opens that found
    /// earlier failures of their process).
    pub found_notices: Counter,
    /// Failures decided as not found before their window closed: more than
    /// `found_later::HELD_MAX` were waiting (a flood).
    pub found_later_decided_early: Counter,
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
        registry.register(
            "found_later_notices",
            "Successful opens that found earlier failures of their process (streamed by the kernel to decide the failures found later)",
            stats.found_notices.clone(),
        );
        registry.register(
            "found_later_decided_early",
            "Failures decided as not found before their found-later window closed, because too many were waiting (a flood)",
            stats.found_later_decided_early.clone(),
        );
        PipelineStats { resolutions, ..stats }
    }
}

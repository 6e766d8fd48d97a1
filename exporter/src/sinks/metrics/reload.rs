//! `badfd_config_last_reload_successful` and
//! `badfd_config_last_reload_success_timestamp_seconds`, as Prometheus names
//! its own (`prometheus_config_last_reload_*`): the start-up load counts as
//! the first successful one, so an alert on `== 0` fires only after a failed
//! SIGHUP, and clears at the next good one.

use std::{
    sync::atomic::AtomicU64,
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{metrics::gauge::Gauge, registry::Registry};

/// The handle the reload path sets at each of its two outcomes.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    successful: Gauge,
    success_timestamp: Gauge<f64, AtomicU64>,
}

impl ReloadStatus {
    /// Registers both gauges (under the registry's `badfd_` prefix), set as
    /// a success at `now` (the configuration read at start-up).
    pub fn register(registry: &mut Registry, now: SystemTime) -> ReloadStatus {
        let status = ReloadStatus::default();
        registry.register(
            "config_last_reload_successful",
            "1 if the last configuration load (start-up or SIGHUP) succeeded, 0 if it failed and the previous configuration runs on",
            status.successful.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or SIGHUP)",
            status.success_timestamp.clone(),
        );
        status.succeeded(now);
        status
    }

    pub fn succeeded(&self, now: SystemTime) {
        self.successful.set(1);
        self.success_timestamp.set(now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0));
    }

    /// The timestamp keeps the last success.
    pub fn failed(&self) {
        self.successful.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_success() {
        let mut registry = Registry::with_prefix("badfd");
        let start = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        let status = ReloadStatus::register(&mut registry, start);
        let render = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text
        };
        let text = render(&registry);
        assert!(text.contains("\nbadfd_config_last_reload_successful 1\n"), "{text}");
        assert!(text.contains("\nbadfd_config_last_reload_success_timestamp_seconds 1700000000.5\n"), "{text}");
        status.failed();
        let text = render(&registry);
        assert!(text.contains("\nbadfd_config_last_reload_successful 0\n"), "{text}");
        assert!(text.contains("\nbadfd_config_last_reload_success_timestamp_seconds 1700000000.5\n"), "the last success stays: {text}");
        status.succeeded(start + std::time::Duration::from_secs(60));
        let text = render(&registry);
        assert!(text.contains("\nbadfd_config_last_reload_successful 1\n") && text.contains("_seconds 1700000060.5\n"), "{text}");
    }
}

//! The anomaly series at scrape time: copied under the lock, encoded outside it.

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::MetricType,
};

use super::{
    aggregates::{Aggregates, BucketHistogram, CommKey, Container, FailureKey, SlowKey},
    exemplar::{counter, counter_with_exemplar},
    FAILURES_METRIC, SLOW_DURATION_METRIC, SLOW_OPENS_METRIC,
};
use crate::{errno, pipeline::RecordId};

/// The label set of a series: `base`, then the container labels if any.
fn with_container<'a, const N: usize>(base: [(&'static str, &'a str); N], c: &'a Container) -> Vec<(&'static str, &'a str)> {
    let mut labels = Vec::with_capacity(N + 4);
    labels.extend(base);
    if let Some(c) = c {
        labels.extend(c.pairs());
    }
    labels
}

/// Encodes the anomaly aggregates at scrape time.
#[derive(Debug)]
pub struct AggregatesCollector {
    pub aggregates: Arc<Mutex<Aggregates>>,
}

/// What a scrape encodes of the aggregates, copied under the lock (label
/// values are shared strings, so this is a few ns per label set) so that
/// encoding, which takes ms at many label sets, does not hold up the event
/// thread.
/// A label set's key (see [`FailureKey`], [`SlowKey`]), its count, and the
/// OTLP record id of its exemplar.
type SeriesCopy<K> = (K, u64, Option<RecordId>);

struct AggregatesSnapshot {
    failures: Vec<SeriesCopy<FailureKey>>,
    slow: Vec<SeriesCopy<SlowKey>>,
    slow_duration: Vec<(CommKey, BucketHistogram)>,
    folded: [u64; 3],
    expired: [u64; 3],
}

impl AggregatesSnapshot {
    fn of(a: &Aggregates) -> AggregatesSnapshot {
        AggregatesSnapshot {
            failures: a.failures.iter().map(|(k, f)| (k.clone(), f.count, f.last_record)).collect(),
            slow: a.slow.iter().map(|(k, s)| (k.clone(), s.count, s.last_record)).collect(),
            // Shared handles: each is read under its own lock while encoding.
            slow_duration: a.slow_duration.iter().map(|(c, h)| (c.clone(), h.clone())).collect(),
            folded: [a.failures.folded, a.slow.folded, a.slow_duration.folded],
            expired: [a.failures.expired, a.slow.expired, a.slow_duration.expired],
        }
    }
}

impl Collector for AggregatesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let a = AggregatesSnapshot::of(&self.aggregates.lock().unwrap_or_else(|e| e.into_inner()));
        let mut m = encoder.encode_descriptor("anomaly_failures", "Failed opens streamed as anomalies, by errno, whether the process found the name later (found_later=\"true\": a search path's probe), comm and path prefix; counted once the found-later window has closed (label sets bounded; see badfd_label_sets_folded_total).", None, MetricType::Counter)?;
        for ((e, found_later, comm, prefix, c), count, record) in &a.failures {
            let found_later = if *found_later { "true" } else { "false" };
            let labels = with_container([("errno", errno::name(*e)), ("found_later", found_later), ("comm", comm), ("path_prefix", prefix)], c);
            counter_with_exemplar(&mut m, &labels, *count, *record)?;
        }
        let mut m = encoder.encode_descriptor("anomaly_slow_opens", "Opens at or over the slow threshold streamed as anomalies, by comm and path prefix.", None, MetricType::Counter)?;
        for ((comm, prefix, c), count, record) in &a.slow {
            counter_with_exemplar(&mut m, &with_container([("comm", &**comm), ("path_prefix", &**prefix)], c), *count, *record)?;
        }
        let mut m = encoder.encode_descriptor("anomaly_slow_open_duration_seconds", "Latency of slow opens streamed as anomalies, by comm.", None, MetricType::Histogram)?;
        for ((comm, c), h) in &a.slow_duration {
            // Each bucket's exemplar is its latest slow open's record (the
            // classic format strips them).
            h.inner().encode(m.encode_family(&with_container([("comm", &**comm)], c))?)?;
        }
        let metrics = [FAILURES_METRIC, SLOW_OPENS_METRIC, SLOW_DURATION_METRIC];
        let mut m = encoder.encode_descriptor("label_sets_folded", "Label sets folded into comm=\"other\"/path_prefix=\"other\" because the metric was at its label-set budget.", None, MetricType::Counter)?;
        for (metric, n) in metrics.iter().zip(a.folded) {
            counter(&mut m, &[("metric", *metric)], n)?;
        }
        let mut m = encoder.encode_descriptor("label_sets_expired", "Label sets dropped after being idle for the TTL.", None, MetricType::Counter)?;
        for (metric, n) in metrics.iter().zip(a.expired) {
            counter(&mut m, &[("metric", *metric)], n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{
        pipeline::{
            containers::ContainerLabels,
            resolve::{Resolution, ResolvedPath},
            Anomaly,
        },
        sinks::metrics::{Exposition, Format},
    };

    /// The exemplar's `log_record_uid` is the record's id in hex; the classic format
    /// gets none (not made, not just stripped), and both formats show the same
    /// counts.
    #[test]
    fn exemplars_only_in_openmetrics() {
        let aggregates = Arc::new(Mutex::new(Aggregates::new(10, Duration::from_secs(60))));
        {
            let mut a = aggregates.lock().unwrap();
            let f = a.failures.get_mut(&(2, false, Arc::from("app"), Arc::from("/etc"), None), 0);
            f.count = 3;
            f.last_record = Some([0x0f; 16]);
        }
        let mut exposition = Exposition::new();
        exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates }));
        let om = exposition.render(Format::OpenMetrics);
        let line = om.lines().find(|l| l.starts_with("badfd_anomaly_failures_total{")).unwrap();
        assert_eq!(
            line,
            "badfd_anomaly_failures_total{errno=\"ENOENT\",found_later=\"false\",comm=\"app\",path_prefix=\"/etc\"} 3 # {log_record_uid=\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\"} 1.0"
        );
        let classic = exposition.render(Format::Classic);
        assert!(classic.contains("\nbadfd_anomaly_failures_total{errno=\"ENOENT\",found_later=\"false\",comm=\"app\",path_prefix=\"/etc\"} 3\n"), "{classic}");
        assert!(!classic.contains("log_record_uid"));
        // The next OpenMetrics render has its exemplars again.
        assert!(exposition.render(Format::OpenMetrics).contains("log_record_uid"));
    }

    fn anomaly(comm: &str, prefix: &str, container: Option<ContainerLabels>) -> Anomaly {
        let event = crate::OpenEvent {
            ret: -2,
            latency_ns: 20_000_000,
            flags: exporter_common::EVENT_FAILED | exporter_common::EVENT_SLOW,
            ..Default::default()
        };
        let resolved = ResolvedPath { path: prefix.as_bytes().to_vec(), how: Resolution::Absolute };
        Anomaly {
            comm: Arc::from(comm),
            path_prefix: Arc::from(prefix),
            container_labels: container.map(Arc::new),
            ..Anomaly::new(event, resolved, 0)
        }
    }

    /// The histogram's bucket of a slow open names its record; the classic
    /// format strips it and keeps the counts.
    #[test]
    fn slow_open_histogram_bucket_names_the_record() {
        let mut a = Aggregates::new(10, Duration::from_secs(60));
        a.record(&Anomaly { record_id: Some([0xa5; 16]), ..anomaly("app", "/etc", None) });
        a.record(&anomaly("app", "/etc", None));
        let mut exposition = Exposition::new();
        exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates: Arc::new(Mutex::new(a)) }));
        let om = exposition.render(Format::OpenMetrics);
        // 20 ms: the first bucket that holds it is le="0.025".
        let bucket = "badfd_anomaly_slow_open_duration_seconds_bucket{le=\"0.025\",comm=\"app\"} 2";
        assert!(om.contains(&format!("{bucket} # {{log_record_uid=\"{}\"}} 0.02\n", "a5".repeat(16))), "{om}");
        assert_eq!(om.matches("log_record_uid").count(), 3, "the bucket, the failure and the slow-opens counters: {om}");
        let classic = exposition.render(Format::Classic);
        assert!(classic.contains(&format!("{bucket}\n")) && !classic.contains("log_record_uid"), "{classic}");
    }

    fn render(aggregates: Aggregates) -> String {
        let mut registry = Registry::with_prefix("badfd");
        registry.register_collector(Box::new(AggregatesCollector { aggregates: Arc::new(Mutex::new(aggregates)) }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn container_labels_only_when_asked_and_folded_within_the_budget() {
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        a.record(&anomaly("app", "/etc", None));
        let text = render(a);
        assert!(text.contains("badfd_anomaly_failures_total{errno=\"ENOENT\",found_later=\"false\",comm=\"app\",path_prefix=\"/etc\"} 1\n"), "{text}");
        assert!(!text.contains("namespace="), "no container labels unless asked for: {text}");

        let web = |pod: &str| ContainerLabels {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "nginx".into(),
            container_id: "containerd://8f2c".into(),
        };
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        a.record(&anomaly("nginx", "/etc", Some(web("web-1"))));
        a.record(&anomaly("nginx", "/etc", Some(web("web-1"))));
        a.record(&anomaly("sh", "/tmp", Some(ContainerLabels::default())));
        let text = render(a);
        assert!(
            text.contains("badfd_anomaly_failures_total{errno=\"ENOENT\",found_later=\"false\",comm=\"nginx\",path_prefix=\"/etc\",namespace=\"shop\",pod=\"web-1\",container=\"nginx\",container_id=\"containerd://8f2c\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("comm=\"sh\",path_prefix=\"/tmp\",namespace=\"\",pod=\"\",container=\"\",container_id=\"\"} 1\n"), "a host process: {text}");
        assert!(text.contains("badfd_anomaly_slow_open_duration_seconds_count{comm=\"nginx\",namespace=\"shop\",pod=\"web-1\""), "{text}");

        // Pods past the budget fold into `other`, container labels too.
        let mut a = Aggregates::new(3, Duration::from_secs(3600));
        for i in 0..10 {
            a.record(&anomaly("nginx", "/etc", Some(web(&format!("web-{i}")))));
        }
        assert_eq!(a.failures.len(), 4, "three named, one other");
        assert_eq!(a.failures.folded, 7);
        assert_eq!(a.failures.iter().map(|(_, f)| f.count).sum::<u64>(), 10, "nothing lost in the folding");
        let text = render(a);
        assert!(
            text.contains("{errno=\"ENOENT\",found_later=\"false\",comm=\"other\",path_prefix=\"other\",namespace=\"other\",pod=\"other\",container=\"other\",container_id=\"other\"} 7\n"),
            "{text}"
        );
    }
}

//! OTLP log records (issue 4): real anomaly events from the kernel, the real
//! exporter, real OTLP receivers (gRPC and HTTP/protobuf) on 127.0.0.1.
//! Run as root: the events come from the loaded eBPF program, which must load.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use badfd::{
    config::OtlpArgs,
    pipeline::resolve::{ResolvedPath, Resolver},
    sinks::otlp::{Otlp, OtlpConfig, Protocol, EVENT_FAILED, EVENT_SLOW, EVENT_SUPPRESSED},
    OpenEvent,
};
use badfd_tests::{
    load_probe, otlp_receiver::{Receiver, ReceivedRecord, Transport},
    run_workload, Collector, TempDir,
};
use exporter_common::Config;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prometheus_client::registry::Registry;

const WAIT: Duration = Duration::from_secs(5);
const FIFO_DELAY_MS: u64 = 80;

/// Real anomalies, gathered once per test binary: the `failures` workload's
/// failed opens, the `fifo` workload's slow open, and EMFILE from a shell whose
/// descriptor limit is too small for `cat` to start.
struct RealEvents {
    events: Vec<OpenEvent>,
    /// Wall-clock span in which the opens happened.
    from: SystemTime,
    to: SystemTime,
}

fn real_events() -> &'static RealEvents {
    static EVENTS: OnceLock<RealEvents> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut probe = load_probe(Config { slow_threshold_ns: 30_000_000, ..Config::DEFAULT });
        let collector = Collector::start(&mut probe);
        let from = SystemTime::now();
        let dir = TempDir::new("otlp-failures");
        let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
        // Only the failures: a successful open of a loaded machine may be slow too.
        let mut events: Vec<OpenEvent> =
            collector.wait_for(&run, run.failures().len(), WAIT).into_iter().filter(|e| e.failed()).collect();
        assert_eq!(events.len(), run.failures().len(), "every failure of the workload is an event");

        let dir = TempDir::new("otlp-fifo");
        let run = run_workload(&["fifo", dir.path().to_str().unwrap(), &FIFO_DELAY_MS.to_string()]);
        let fifo: Vec<OpenEvent> = collector
            .wait_for(&run, run.failures().len() + 1, WAIT)
            .into_iter()
            .filter(|e| e.failed() || (e.slow() && e.path.ends_with(b"/fifo")))
            .collect();
        assert_eq!(fifo.iter().filter(|e| e.slow()).count(), 1, "one slow FIFO open: {fifo:?}");
        events.extend(fifo);

        let child = Command::new("sh")
            .args(["-c", "ulimit -n 3; exec cat /etc/hostname"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        let deadline = Instant::now() + WAIT;
        let emfile = loop {
            let e: Vec<OpenEvent> = collector.of_pid(pid).into_iter().filter(|e| e.errno() == Some(libc::EMFILE)).collect();
            if !e.is_empty() || Instant::now() > deadline {
                break e;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(!emfile.is_empty(), "no EMFILE event from the shell with `ulimit -n 3`");
        events.extend(emfile);
        let to = SystemTime::now();
        drop(probe);
        RealEvents { events, from, to }
    })
}

fn config(endpoint: &str, protocol: Protocol, tune: impl FnOnce(&mut OtlpArgs)) -> OtlpConfig {
    let mut args = OtlpArgs::with_endpoint(endpoint, protocol);
    args.otlp_batch_delay_ms = Some(50);
    tune(&mut args);
    args.resolve_with(|_| None).expect("valid config").expect("endpoint set")
}

fn registry() -> Registry {
    Registry::with_prefix("badfd")
}

fn metrics_text(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn resolve_all(events: &[OpenEvent]) -> Vec<(OpenEvent, ResolvedPath)> {
    let mut r = Resolver::new();
    events.iter().map(|e| (e.clone(), r.resolve(e))).collect()
}

fn wall_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn one_record_per_anomaly(transport: Transport) {
    let real = real_events();
    let anomalies = resolve_all(&real.events);
    let receiver = Receiver::bind(transport, true).await;
    let protocol = if transport == Transport::Grpc { Protocol::Grpc } else { Protocol::HttpProtobuf };
    let mut registry = registry();
    let otlp = Otlp::start(
        config(&receiver.endpoint(), protocol, |a| {
            a.otlp_headers = Some("x-badfd-test=yes%2C%20really".into());
            a.otlp_resource_attributes = Some("deployment.environment.name=test,k8s.node.name=node-1".into());
            // Exercise compression on HTTP; gRPC stays plain.
            a.otlp_compression = (transport == Transport::Http).then(|| "gzip".into());
        }),
        &mut registry,
    )
    .unwrap();

    let mut by_uid = BTreeMap::new();
    for (event, resolved) in &anomalies {
        let id = otlp.emit(event, resolved).expect("queued, not suppressed or dropped");
        assert_eq!(id.to_string().len(), 32, "32 hex digits");
        assert!(by_uid.insert(id.to_string(), (event, resolved)).is_none(), "ids are unique");
    }
    let n = anomalies.len() as u64;
    assert_eq!(receiver.wait_for(n, WAIT).await, n, "one record per anomaly");
    let report = otlp.shutdown(Duration::from_secs(2)).await;
    assert!(report.flushed);
    assert_eq!(report.counts.exported, n);
    assert_eq!(report.counts.anomalies_accounted(), n, "{:?}", report.counts);
    assert_eq!(receiver.record_count(), n, "no record twice");
    assert!(receiver.headers().contains(&("x-badfd-test".to_string(), "yes, really".to_string())), "{:?}", receiver.headers());

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let records: Vec<ReceivedRecord> = receiver.records();
    let (mut failed, mut slow, mut errors) = (0, 0, 0);
    for r in &records {
        let s = |k| r.resource_attr(k).cloned();
        assert_eq!(s("service.name"), Some(Value::StringValue("badfd".into())));
        assert_eq!(s("host.name"), Some(Value::StringValue(host.clone())));
        assert_eq!(s("deployment.environment.name"), Some(Value::StringValue("test".into())));
        assert_eq!(s("k8s.node.name"), Some(Value::StringValue("node-1".into())));

        let uid = r.str_attr("log.record.uid").expect("every record has its log.record.uid");
        let (e, resolved) = by_uid.get(uid).expect("the record carries the id emit returned");
        assert!(r.record.trace_id.is_empty() && r.record.span_id.is_empty(), "no made-up trace context");
        assert_eq!(r.int_attr("process.pid"), Some(e.pid as i64));
        assert_eq!(r.int_attr("thread.id"), Some(e.tid as i64));
        assert_eq!(r.int_attr("process.real_user.id"), Some(e.uid as i64));
        // The workloads run as root, neither setuid nor setgid: effective = real.
        assert_eq!(e.euid, Some(e.uid), "the kernel read the effective uid (BTF)");
        assert_eq!(r.int_attr("process.user.id"), Some(e.uid as i64));
        assert_eq!(r.str_attr("thread.name"), Some(e.comm_lossy().as_str()));
        // The processes have exited by now: /proc/PID/exe is gone, and nothing is guessed.
        assert_eq!(r.attr("process.executable.path"), None);
        assert_eq!(r.attr("process.executable.name"), None);
        assert_eq!(r.str_attr("file.path"), Some(lossy(&resolved.path).as_str()));
        assert_eq!(r.str_attr("badfd.file.path.opened"), Some(lossy(&e.path).as_str()));
        assert_eq!(r.str_attr("badfd.file.path.resolution"), Some(resolved.how.name()));
        assert_eq!(r.str_attr("badfd.syscall"), Some(e.syscall.name()));
        assert_eq!(r.int_attr("badfd.open.flags"), Some(e.open_flags as i64));
        assert_eq!(r.int_attr("badfd.cgroup.id"), Some(e.cgroup_id as i64));
        assert_eq!(r.attr("badfd.open.duration"), Some(&Value::DoubleValue(e.latency_ns as f64 / 1e9)));
        assert_eq!(r.attr("badfd.file.path.truncated").is_some(), e.path_truncated());
        // The time of the open, not of the export.
        let t = r.record.time_unix_nano;
        assert!(t >= wall_ns(real.from) - 50_000_000 && t <= wall_ns(real.to) + 50_000_000, "time {t} outside the run");
        assert!(r.record.observed_time_unix_nano >= t);
        let body = r.body().expect("a body");
        assert!(body.starts_with(&format!("{} (pid {})", e.comm_lossy(), e.pid)), "{body}");
        if e.failed() {
            failed += 1;
            let errno = e.errno().unwrap();
            let name = badfd::errno::name(errno);
            assert_eq!(r.record.event_name, EVENT_FAILED);
            assert_eq!(r.str_attr("error.type"), Some(name));
            assert!(body.contains(name) && body.contains(badfd::errno::meaning(errno)), "{body}");
            let (number, text) = match errno {
                libc::EMFILE => (17, "ERROR"),
                libc::ENOENT | libc::ENOTDIR | libc::EEXIST => (9, "INFO"),
                _ => (13, "WARN"),
            };
            assert_eq!((r.record.severity_number, r.record.severity_text.as_str()), (number, text), "{name}");
            if errno == libc::EMFILE {
                errors += 1;
            }
        } else {
            slow += 1;
            assert!(e.slow());
            assert_eq!(r.record.event_name, EVENT_SLOW);
            assert_eq!(r.attr("error.type"), None);
            assert_eq!((r.record.severity_number, r.record.severity_text.as_str()), (13, "WARN"));
            assert!(body.contains(" s to open "), "{body}");
        }
    }
    assert_eq!(slow, 1);
    assert!(errors >= 1);
    assert_eq!(failed + slow, records.len());

    let text = metrics_text(&registry);
    assert!(text.contains(&format!("badfd_otlp_records_total{{kind=\"anomaly\",outcome=\"exported\"}} {n}\n")), "{text}");
    assert!(text.contains("badfd_otlp_records_total{kind=\"anomaly\",outcome=\"dropped_queue_full\"} 0\n"), "{text}");
    assert!(text.contains("badfd_otlp_queue_capacity_records 16384\n"), "{text}");
    assert!(text.contains(&format!("badfd_otlp_executable_unknown_total {n}\n")), "{text}");
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receives_one_record_per_real_anomaly() {
    one_record_per_anomaly(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_receives_one_record_per_real_anomaly() {
    one_record_per_anomaly(Transport::Http).await;
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn collector_down_then_up(transport: Transport) {
    let anomalies = resolve_all(&real_events().events);
    let n = anomalies.len() as u64;
    // A port nobody listens on until the receiver starts.
    let port = badfd_tests::free_port("127.0.0.1");
    let protocol = if transport == Transport::Grpc { Protocol::Grpc } else { Protocol::HttpProtobuf };
    let mut registry = registry();
    let otlp = Otlp::start(
        config(&format!("http://127.0.0.1:{port}"), protocol, |a| a.otlp_timeout_ms = Some(500)),
        &mut registry,
    )
    .unwrap();

    // Down: the batch fails after the exporter's retries and is counted.
    for (e, r) in &anomalies {
        assert!(otlp.emit(e, r).is_some());
    }
    wait_until("the records sent to the absent collector are accounted for", Duration::from_secs(10), || {
        otlp.counts().anomalies_accounted() == n
    })
    .await;
    let down = otlp.counts();
    assert_eq!(down.dropped_export_failed, n, "{down:?}");
    assert_eq!(down.exported, 0);
    assert!(down.export_failures >= 1);

    // Up: what is sent from now on arrives.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the reserved port");
    let receiver = Receiver::start(listener, transport, true);
    for (e, r) in &anomalies {
        assert!(otlp.emit(e, r).is_some());
    }
    // The backoff after the failure is at most a few seconds here.
    assert_eq!(receiver.wait_for(n, Duration::from_secs(15)).await, n, "records after the collector came up arrive");
    let report = otlp.shutdown(Duration::from_secs(2)).await;
    assert!(report.flushed);
    let c = report.counts;
    assert_eq!(c.exported, n);
    assert_eq!(c.dropped_export_failed, n, "drops counted exactly: {c:?}");
    assert_eq!(c.anomalies_accounted(), 2 * n);
    assert_eq!(receiver.record_count(), n);
    assert!(metrics_text(&registry).contains(&format!(
        "badfd_otlp_records_total{{kind=\"anomaly\",outcome=\"dropped_export_failed\"}} {n}\n"
    )));
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_collector_down_at_start_then_up() {
    collector_down_then_up(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collector_down_at_start_then_up() {
    collector_down_then_up(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_larger_than_the_queue_is_counted_exactly() {
    let anomalies = resolve_all(&real_events().events);
    let receiver = Receiver::bind(Transport::Grpc, false).await;
    let mut registry = registry();
    let otlp = Otlp::start(
        config(&receiver.endpoint(), Protocol::Grpc, |a| {
            a.otlp_queue_size = Some(64);
            a.otlp_max_batch = Some(16);
            a.otlp_rate_limit = 0;
        }),
        &mut registry,
    )
    .unwrap();
    const SENT: u64 = 20_000;
    let mut queued = 0;
    for i in 0..SENT as usize {
        let (e, r) = &anomalies[i % anomalies.len()];
        queued += otlp.emit(e, r).is_some() as u64;
    }
    let report = otlp.shutdown(Duration::from_secs(5)).await;
    let c = report.counts;
    assert!(report.flushed, "{c:?}");
    assert!(c.dropped_queue_full > 0, "a burst of {SENT} into a queue of 64 must overflow: {c:?}");
    assert_eq!(c.dropped_queue_full, SENT - queued, "each refused emit is one drop");
    assert_eq!(c.exported, queued);
    assert_eq!(receiver.record_count(), c.exported, "received == exported");
    assert_eq!(c.exported + c.dropped_queue_full, SENT, "received + dropped == sent: {c:?}");
    assert_eq!(c.suppressed + c.dropped_export_failed + c.dropped_shutdown, 0);
    assert!(metrics_text(&registry).contains(&format!(
        "badfd_otlp_records_total{{kind=\"anomaly\",outcome=\"dropped_queue_full\"}} {}\n",
        c.dropped_queue_full
    )));
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_is_rate_limited_per_command_and_errno_with_summaries() {
    let anomalies = resolve_all(&real_events().events);
    let (storm_event, storm_path) =
        anomalies.iter().find(|(e, _)| e.errno() == Some(libc::ENOENT)).expect("an ENOENT from the workload");
    let (other_event, other_path) =
        anomalies.iter().find(|(e, _)| e.errno() == Some(libc::ELOOP)).expect("an ELOOP from the workload");
    let receiver = Receiver::bind(Transport::Http, true).await;
    let mut registry = registry();
    let otlp = Otlp::start(
        config(&receiver.endpoint(), Protocol::HttpProtobuf, |a| {
            a.otlp_rate_limit = 10;
            a.otlp_rate_burst = 20;
        }),
        &mut registry,
    )
    .unwrap();
    const STORM: u64 = 5_000;
    let mut passed = 0;
    for _ in 0..STORM {
        passed += otlp.emit(storm_event, storm_path).is_some() as u64;
    }
    assert!(otlp.emit(other_event, other_path).is_some(), "another errno of the same command still passes");
    assert!((20..40).contains(&passed), "burst of 20 plus 10/s: {passed}");
    // The summary goes out on the next summary tick.
    wait_until("the summary arrives", Duration::from_secs(5), || {
        receiver.records().iter().any(|r| r.record.event_name == EVENT_SUPPRESSED)
    })
    .await;
    let report = otlp.shutdown(Duration::from_secs(2)).await;
    let c = report.counts;
    assert_eq!(c.suppressed, STORM - passed);
    assert_eq!(c.exported, passed + 1);
    assert_eq!(c.anomalies_accounted(), STORM + 1);
    let records = receiver.records();
    let summaries: Vec<&ReceivedRecord> = records.iter().filter(|r| r.record.event_name == EVENT_SUPPRESSED).collect();
    let suppressed_in_summaries: i64 = summaries.iter().map(|s| s.int_attr("badfd.suppressed.count").unwrap()).sum();
    assert_eq!(suppressed_in_summaries as u64, c.suppressed, "the summaries carry every suppressed record");
    assert_eq!(c.summaries_exported, summaries.len() as u64);
    for s in &summaries {
        assert_eq!(s.str_attr("thread.name"), Some("workload"));
        assert_eq!(s.str_attr("error.type"), Some("ENOENT"));
        assert_eq!(s.record.severity_text, "WARN");
        assert!(s.body().unwrap().starts_with("suppressed "), "{:?}", s.body());
    }
    assert_eq!(records.len() as u64, c.exported + c.summaries_exported, "received == exported");
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_queue_within_the_timeout() {
    let anomalies = resolve_all(&real_events().events);
    let n = anomalies.len() as u64;
    let receiver = Receiver::bind(Transport::Grpc, false).await;
    let mut registry = registry();
    // Batches would wait a minute: only shutdown sends them.
    let otlp = Otlp::start(
        config(&receiver.endpoint(), Protocol::Grpc, |a| a.otlp_batch_delay_ms = Some(60_000)),
        &mut registry,
    )
    .unwrap();
    for (e, r) in &anomalies {
        otlp.emit(e, r).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.record_count(), 0, "nothing is sent before the batch delay");
    let started = Instant::now();
    let report = otlp.shutdown(Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert!(report.flushed);
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(receiver.record_count(), n, "shutdown flushed the queue");
    assert_eq!(report.counts.exported, n);
    // After shutdown, emit is refused and counted, never blocks.
    assert!(otlp.emit(&anomalies[0].0, &anomalies[0].1).is_none());
    assert_eq!(otlp.counts().dropped_shutdown, 1);
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_an_absent_collector_is_bounded_and_counted() {
    let anomalies = resolve_all(&real_events().events);
    let n = anomalies.len() as u64;
    let port = badfd_tests::free_port("127.0.0.1");
    let mut registry = registry();
    let otlp = Otlp::start(
        config(&format!("http://127.0.0.1:{port}"), Protocol::Grpc, |a| {
            a.otlp_batch_delay_ms = Some(60_000);
            a.otlp_timeout_ms = Some(30_000);
        }),
        &mut registry,
    )
    .unwrap();
    for (e, r) in &anomalies {
        otlp.emit(e, r).unwrap();
    }
    let started = Instant::now();
    let report = otlp.shutdown(Duration::from_secs(1)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?} with a 1 s limit");
    let c = report.counts;
    assert_eq!(c.exported, 0);
    assert_eq!(c.dropped_shutdown + c.dropped_export_failed, n, "{c:?}");
}

/// The real exporter: `badfd serve` sends a record per anomaly to a collector,
/// and on SIGTERM flushes what it still holds (nothing is sent before then: the
/// batch delay is a minute) and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flushes_queued_records_on_sigterm() {
    let receiver = Receiver::bind(Transport::Grpc, true).await;
    let endpoint = receiver.endpoint();
    // No rate limit: the limit is per (user, cgroup, errno) host-wide, and other
    // tests' `workload` processes on the host would use up this one's budget.
    let serve = tokio::task::spawn_blocking(move || {
        badfd_tests::Serve::start(&["--otlp-endpoint", &endpoint, "--otlp-protocol", "grpc", "--otlp-batch-delay-ms", "60000", "--otlp-max-batch", "100000", "--otlp-rate-limit", "0"])
    })
    .await
    .unwrap();
    let dir = TempDir::new("otlp-sigterm");
    let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let wanted = run.failures().len();
    // Wait until the exporter has taken the workload's events in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = serve.try_get("/metrics", None).map(|(_, b)| b).unwrap_or_default();
        let anomalies: f64 = body
            .lines()
            .filter(|l| l.starts_with("badfd_anomaly_failures_total{") && l.contains("comm=\"workload\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if anomalies as usize >= wanted {
            break;
        }
        assert!(Instant::now() < deadline, "the exporter saw {anomalies} of {wanted} failures");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.record_count(), 0, "records were sent before the batch delay");
    // Every failure series of the workload carries an exemplar naming a record.
    let (_, openmetrics) = serve.try_get("/metrics", None).unwrap();
    let exemplars: Vec<String> = openmetrics
        .lines()
        .filter(|l| l.starts_with("badfd_anomaly_failures_total{") && l.contains("comm=\"workload\""))
        .map(|l| {
            let (_, ex) = l.split_once(" # {log_record_uid=\"").unwrap_or_else(|| panic!("no exemplar on {l}"));
            ex[..32].to_string()
        })
        .collect();
    assert!(!exemplars.is_empty());
    serve.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let mut serve = serve;
        let status = serve.child.wait().unwrap();
        drop(serve);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "badfd serve exited with {status} on SIGTERM");
    let records = receiver.records();
    let ours = records.iter().filter(|r| r.int_attr("process.pid") == Some(run.pid as i64)).count();
    assert!(ours >= wanted, "{ours} of the workload's {wanted} failures were flushed on SIGTERM");
    // Each failure record says whether its process found the name later;
    // only those that it did are below INFO (one filter drops the probes).
    for r in records.iter().filter(|r| r.int_attr("process.pid") == Some(run.pid as i64)) {
        let found_later = r.bool_attr("badfd.found_later").unwrap_or_else(|| panic!("no badfd.found_later on {:?}", r.body()));
        assert_eq!(r.record.severity_text == "DEBUG", found_later, "{:?}", r.body());
    }
    let record_ids: std::collections::BTreeSet<&str> = records.iter().filter_map(|r| r.str_attr("log.record.uid")).collect();
    for id in &exemplars {
        assert!(record_ids.contains(id.as_str()), "exemplar log_record_uid {id} names no record the collector received");
    }
}

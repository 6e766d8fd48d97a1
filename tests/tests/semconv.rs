//! Semantic conventions of the OTLP records and the link from a metric to its
//! record (issue 20): the real exporter (`badfd serve`), a real OTLP receiver,
//! and one process whose thread name, executable, real and effective uid all
//! differ from what a naive reading would report. Run as root: the events come
//! from the loaded eBPF program, which must load.

use std::time::{Duration, Instant};

use badfd_tests::{
    otlp_receiver::{ReceivedRecord, Receiver, Transport},
    run_workload, workload_path, TempDir,
};

const FIFO_DELAY_MS: u64 = 150;
/// How long the workload lives on after its opens: its records are queued
/// (and `/proc/PID/exe` read) within milliseconds of each open.
const LINGER_MS: u64 = 1500;
/// The thread name the workload gives itself (at most 15 bytes).
const COMM: &str = "semconv-probe";

/// The records of `pid` whose `file.path` ends with each of `names`, once all have arrived.
async fn wait_for_records(receiver: &Receiver, pid: u32, names: &[&str]) -> Vec<ReceivedRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = receiver.records();
        let ours: Vec<Option<&ReceivedRecord>> = names
            .iter()
            .map(|name| {
                records.iter().find(|r| {
                    r.int_attr("process.pid") == Some(pid as i64) && r.str_attr("file.path").is_some_and(|p| p.ends_with(name))
                })
            })
            .collect();
        if ours.iter().all(Option::is_some) {
            return ours.into_iter().map(|r| r.unwrap().clone()).collect();
        }
        assert!(Instant::now() < deadline, "the records of pid {pid} for {names:?} did not all arrive: {ours:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The failed and the slow open's records name the process as the
/// conventions define it, and the slow-open histogram's exemplar in the
/// OpenMetrics exposition is the slow record's `log.record.uid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_the_conventions_and_the_histogram_exemplar_names_the_slow_record() {
    let receiver = Receiver::bind(Transport::Grpc, true).await;
    let endpoint = receiver.endpoint();
    let serve = tokio::task::spawn_blocking(move || {
        badfd_tests::Serve::start(&[
            "--otlp-endpoint", &endpoint, "--otlp-protocol", "grpc", "--otlp-batch-delay-ms", "50",
            "--otlp-rate-limit", "0", "--slow-threshold", "50ms",
            // The workload's real uid (65534) is not its effective uid (0):
            // reading its /proc/PID/exe takes CAP_SYS_PTRACE then, as for any
            // process whose ids differ from badfd's (a setuid program).
            "--capabilities.keep", "sys_ptrace",
        ])
    })
    .await
    .unwrap();
    let dir = TempDir::new("semconv");
    let run = {
        let dir = dir.path().to_str().unwrap().to_string();
        tokio::task::spawn_blocking(move || run_workload(&["semconv", &dir, &FIFO_DELAY_MS.to_string(), &LINGER_MS.to_string()]))
            .await
            .unwrap()
    };
    // One failure (semconv-missing), one slow open (the FIFO, on the main thread).
    let records = wait_for_records(&receiver, run.pid, &["/semconv-missing", "/fifo"]).await;
    let (failed, slow) = (&records[0], &records[1]);
    assert_eq!(failed.str_attr("error.type"), Some("ENOENT"));
    assert_eq!(slow.attr("error.type"), None, "the slow open succeeded");
    let exe = std::fs::canonicalize(workload_path()).unwrap();
    for r in [failed, slow] {
        assert_eq!(r.str_attr("thread.name"), Some(COMM), "the comm is the thread's name");
        assert_eq!(r.str_attr("process.executable.path"), exe.to_str(), "/proc/PID/exe, read while the process lived");
        assert_eq!(r.str_attr("process.executable.name"), Some("workload"));
        assert_eq!(r.int_attr("process.user.id"), Some(0), "the effective uid");
        assert_eq!(r.int_attr("process.real_user.id"), Some(65534), "the real uid");
        assert!(r.record.trace_id.is_empty() && r.record.span_id.is_empty(), "no made-up trace context");
        let uid = r.str_attr("log.record.uid").expect("log.record.uid");
        assert!(uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit()), "{uid}");
    }
    let slow_uid = slow.str_attr("log.record.uid").unwrap();

    // The histogram series of this thread name: one observation, so exactly
    // one bucket line (the first that holds it) carries an exemplar, and it
    // names the slow record.
    let (status, openmetrics) = serve.try_get("/metrics", Some("application/openmetrics-text; version=1.0.0")).unwrap();
    assert_eq!(status, 200);
    let buckets: Vec<&str> = openmetrics
        .lines()
        .filter(|l| l.starts_with("badfd_anomaly_slow_open_duration_seconds_bucket{") && l.contains(&format!("comm=\"{COMM}\"")))
        .collect();
    assert!(!buckets.is_empty(), "no histogram of {COMM}: {openmetrics}");
    let exemplars: Vec<&str> = buckets.iter().filter_map(|l| l.split_once(" # ").map(|(_, ex)| ex)).collect();
    assert_eq!(exemplars.len(), 1, "{buckets:#?}");
    assert!(exemplars[0].starts_with(&format!("{{log_record_uid=\"{slow_uid}\"}} ")), "{buckets:#?}");
    // The slow-opens counter points at the same record; the failures counter at the failed one.
    let line = |metric: &str| {
        openmetrics
            .lines()
            .find(|l| l.starts_with(metric) && l.contains(&format!("comm=\"{COMM}\"")))
            .unwrap_or_else(|| panic!("no {metric} of {COMM}"))
            .to_string()
    };
    assert!(line("badfd_anomaly_slow_opens_total{").contains(&format!("# {{log_record_uid=\"{slow_uid}\"}} 1")));
    let failed_uid = failed.str_attr("log.record.uid").unwrap();
    assert!(line("badfd_anomaly_failures_total{").contains(&format!("# {{log_record_uid=\"{failed_uid}\"}} 1")));
    // The classic format has none.
    let (_, classic) = serve.try_get("/metrics", Some("text/plain")).unwrap();
    assert!(classic.contains(&format!("comm=\"{COMM}\"")) && !classic.contains("log_record_uid"));
    drop(serve);
    receiver.stop().await;
}

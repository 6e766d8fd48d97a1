//! Hostile load at the OTLP exporter (issue "Hostile load", comm squatting):
//! an attacker of its own uid and cgroup floods failing opens for 10 s under
//! the same command name as its victim (both are `workload`: a comm is one
//! `prctl` away), through the real `badfd serve` with the OTLP rate limit on.
//! A limiter keyed by comm would let the attacker spend the victim's budget;
//! keyed by (uid, cgroup, errno) every victim failure still becomes a record.
//! Counted exactly: serve watches only the two test cgroups, so the kernel's
//! and the exporter's counts are the two workloads' alone. Run as root; fails,
//! never skips, when BPF cannot be loaded.

use std::time::{Duration, Instant};

use badfd_tests::{otlp_receiver::Receiver, otlp_receiver::Transport, Scrape, Serve, TempDir, TestCgroup, UidWorkload, FAIRNESS_UID};

const ATTACKER_UID: u32 = FAIRNESS_UID + 3;
const VICTIM_UID: u32 = FAIRNESS_UID + 4;
const ATTACK_SECS: u64 = 10;
const VICTIM_FAILURES: u64 = 20;

/// (kernel submitted, throttled by fairness, lost to a full ring).
fn kernel_outcomes(s: &Scrape) -> (f64, f64, f64) {
    (
        s.sum("badfd_kernel_events_total", &[("outcome", "submitted")]),
        s.sum("badfd_kernel_events_lost_total", &[("reason", "source_throttled")]),
        s.sum("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_of_the_victims_command_name_cannot_suppress_its_records() {
    let receiver = Receiver::bind(Transport::Grpc, true).await;
    let attacker_cgroup = TestCgroup::new("otlp-attacker");
    let victim_cgroup = TestCgroup::new("otlp-victim");
    let endpoint = receiver.endpoint();
    let watched = format!("{},{}", attacker_cgroup.0.display(), victim_cgroup.0.display());
    let serve = tokio::task::spawn_blocking(move || {
        Serve::start(&[
            "--filter.cgroup",
            &watched,
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
            "--otlp-rate-limit",
            "10",
            "--otlp-rate-burst",
            "20",
        ])
    })
    .await
    .unwrap();
    let before = kernel_outcomes(&serve.scrape());

    let attacker_dir = TempDir::lettered("otlp-attacker");
    let victim_dir = TempDir::lettered("otlp-victim");
    let (attacker_made, victim_made) = tokio::task::spawn_blocking({
        let (a, v) = (attacker_dir.path().to_owned(), victim_dir.path().to_owned());
        let (ac, vc) = (attacker_cgroup.0.clone(), victim_cgroup.0.clone());
        move || {
            // The only test of this binary: the workload joins the cgroup this names.
            std::env::set_var("BADFD_WORKLOAD_CGROUP", &ac);
            let attacker =
                UidWorkload::spawn(&["uidflood", a.to_str().unwrap(), &ATTACK_SECS.to_string(), &ATTACKER_UID.to_string(), "1"]);
            std::thread::sleep(Duration::from_secs(3));
            std::env::set_var("BADFD_WORKLOAD_CGROUP", &vc);
            let victim = UidWorkload::spawn(&[
                "uidfail",
                v.to_str().unwrap(),
                &VICTIM_FAILURES.to_string(),
                &VICTIM_UID.to_string(),
                "100",
            ]);
            std::env::remove_var("BADFD_WORKLOAD_CGROUP");
            (attacker.failures(), victim.failures())
        }
    })
    .await
    .unwrap();
    assert_eq!(victim_made, VICTIM_FAILURES);

    // Every anomaly the kernel submitted ends in one OTLP outcome once its
    // found-later window has closed and its batch has gone out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (scrape, submitted, throttled, full) = loop {
        let s = serve.scrape();
        let now = kernel_outcomes(&s);
        let (submitted, throttled, full) = (now.0 - before.0, now.1 - before.1, now.2 - before.2);
        let accounted = s.otlp_anomalies_accounted();
        let queued = s.sum("badfd_otlp_queue_records", &[]);
        if accounted == submitted && queued == 0.0 {
            break (s, submitted, throttled, full);
        }
        assert!(Instant::now() < deadline, "OTLP accounted for {accounted} of {submitted} anomalies ({queued} queued)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        submitted + throttled + full,
        (attacker_made + VICTIM_FAILURES) as f64,
        "every failure of the two streamed or counted as dropped in the kernel"
    );

    let victim_prefix = victim_dir.path().to_str().unwrap().to_owned();
    let records = receiver.records();
    let mut victim_paths: Vec<String> = records
        .iter()
        .filter_map(|r| r.str_attr("file.path"))
        .filter(|p| p.starts_with(&victim_prefix))
        .map(str::to_owned)
        .collect();
    victim_paths.sort();
    let mut want: Vec<String> = (0..VICTIM_FAILURES).map(|i| format!("{victim_prefix}/quiet-{i}")).collect();
    want.sort();
    assert_eq!(victim_paths, want, "every victim failure is a record, once, though its command name is the attacker's");
    for r in records.iter().filter(|r| r.str_attr("file.path").is_some_and(|p| p.starts_with(&victim_prefix))) {
        assert_eq!(r.str_attr("process.executable.name").or(r.str_attr("thread.name")), Some("workload"));
    }

    let exported = scrape.otlp_anomalies("exported");
    let suppressed = scrape.otlp_anomalies("suppressed");
    let attacker_records = records
        .iter()
        .filter(|r| r.str_attr("file.path").is_some_and(|p| p.starts_with(attacker_dir.path().to_str().unwrap())))
        .count() as f64;
    eprintln!(
        "comm squatting: attacker made {attacker_made} failures in {ATTACK_SECS} s: {} streamed, {throttled} throttled in the kernel, \
         {full} lost to a full ring; OTLP: {attacker_records} attacker records exported, {suppressed} suppressed; victim: {} of \
         {VICTIM_FAILURES} records",
        submitted - VICTIM_FAILURES as f64,
        victim_paths.len()
    );
    assert_eq!(exported, attacker_records + VICTIM_FAILURES as f64, "exported = received: the attacker's and the victim's");
    assert!(suppressed > 0.0, "the attack never reached the rate limit: it did not flood");
    assert_eq!(exported + suppressed, submitted, "nothing else dropped: every streamed anomaly exported or suppressed");
    let summarized: i64 = records.iter().filter_map(|r| r.int_attr("badfd.suppressed.count")).sum();
    assert!(summarized as f64 <= suppressed, "summaries name at most what was suppressed");
    drop(serve);
    receiver.stop().await;
}

//! Soak (issue 10): `badfd serve` under mixed load for BADFD_SOAK_SECS
//! seconds (default 600) with a scrape every second and an OTLP collector:
//!
//! - its own memory (RssAnon: heap and stacks; the ring buffer's mapping is
//!   the kernel's, fixed at load) grows by at most `RSS_GROWTH_BOUND` after
//!   the warm-up (the first fifth of the run, which fills the label-set budget);
//! - no labeled metric ever has more series than the label-set budget;
//! - every scrape answers, the exporter stays ready;
//! - the in-flight gauge is back to (about) 0 once the load stops;
//! - OTLP records are all accounted for, none failed to export.
//!
//! The load: failing opens under ever new directories (so new label sets keep
//! coming and are folded), slow FIFO opens, fast successful opens, bursts of
//! one failure. Ignored in the plain `cargo test` run (it takes ten minutes);
//! scripts/test.sh runs it with `--ignored` beside the kernel matrix.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use badfd_tests::{
    otlp_receiver::{Receiver, Transport},
    letters, run_workload, Scrape, Serve, TempDir,
};

/// Label sets per labeled metric at most (`--metrics.max-label-sets`).
const BUDGET: usize = 300;
/// How much RssAnon may grow from the end of the warm-up to the end of the run.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;
/// Opens in progress host-wide that may remain after the load (other
/// processes on the host, e.g. a shell blocked on a FIFO).
const INFLIGHT_LEFT_BOUND: f64 = 8.0;

fn soak_duration() -> Duration {
    let secs = match std::env::var("BADFD_SOAK_SECS") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("BADFD_SOAK_SECS={s:?}: expected whole seconds")),
        Err(_) => 600,
    };
    assert!(secs >= 30, "BADFD_SOAK_SECS={secs}: at least 30 (a fifth is warm-up)");
    Duration::from_secs(secs)
}

fn rss_anon_kib(pid: u32) -> u64 {
    badfd_tests::proc_status_kib(pid, "RssAnon").expect("the exporter alive, with RssAnon in /proc/PID/status")
}

/// Distinct label sets (ignoring `le`) of each labeled anomaly metric.
fn series_per_metric(s: &Scrape) -> Vec<(&'static str, usize)> {
    ["badfd_anomaly_failures_total", "badfd_anomaly_slow_opens_total", "badfd_anomaly_slow_open_duration_seconds_bucket"]
        .into_iter()
        .map(|name| {
            // Named label sets: the `other` ones (one per errno and
            // found_later) come on top of the budget.
            let sets: BTreeSet<Vec<(String, String)>> = s
                .matching(name, &[])
                .filter(|x| x.labels.get("comm").map(String::as_str) != Some("other"))
                .map(|x| x.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect())
                .collect();
            (name, sets.len())
        })
        .collect()
}

/// One round of mixed load; returns the failures it made.
fn round(base: &Path, n: u64) -> u64 {
    // A directory of its own: its 100 subdirectories are new label sets.
    let dir = base.join(format!("round-{}", letters(n)));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let mut failures = 0;
    run_workload(&["prefixes", d, "100"]);
    failures += 100;
    let fifo = run_workload(&["fifo", d, "40"]);
    failures += fifo.failures().len() as u64;
    run_workload(&["fast", d, "2000"]);
    run_workload(&["burst", d, "200"]);
    failures += 200;
    std::fs::remove_dir_all(&dir).unwrap();
    failures
}

#[test]
#[ignore = "ten minutes; scripts/test.sh runs it with --ignored (BADFD_SOAK_SECS sets the length)"]
fn soak_mixed_load_with_scrapes_every_second() {
    let duration = soak_duration();
    let warm_up = duration / 5;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let receiver = runtime.block_on(Receiver::bind(Transport::Http, false));
    let base = TempDir::lettered("soak");
    // One label set per directory the `prefixes` workload opens under: 100 new ones a round.
    let depth = base.path().components().count() + 2;
    let serve = Serve::start(&[
        "--slow-threshold",
        "20ms",
        "--metrics.max-label-sets",
        &BUDGET.to_string(),
        "--path-prefix.depth",
        &depth.to_string(),
        "--ringbuf-bytes",
        "8388608",
        "--otlp-endpoint",
        &receiver.endpoint(),
        "--otlp-batch-delay-ms",
        "200",
    ]);
    let pid = serve.child.id();
    let inflight_before = serve.scrape().one("badfd_inflight_opens", &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, made, base) = (stop.clone(), made.clone(), base.path().to_path_buf());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                made.fetch_add(round(&base, n), Ordering::Relaxed);
                n += 1;
                // About 1500 failures a second: steady, not a flood (the
                // kernel matrix's host run shares the machine).
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };

    let started = Instant::now();
    let mut rss_after_warm_up = None;
    let mut rss_max_after = 0;
    let mut max_series = 0;
    let mut scrapes = 0;
    let mut slowest_scrape = Duration::ZERO;
    while started.elapsed() < duration {
        let t = Instant::now();
        let s = serve.scrape();
        slowest_scrape = slowest_scrape.max(t.elapsed());
        scrapes += 1;
        assert_eq!(s.one("badfd_ready", &[]), 1.0, "ready throughout");
        for (name, n) in series_per_metric(&s) {
            assert!(n <= BUDGET, "{name} has {n} series, over the budget of {BUDGET}, after {:?}", started.elapsed());
            max_series = max_series.max(n);
        }
        let rss = rss_anon_kib(pid);
        match rss_after_warm_up {
            None if started.elapsed() >= warm_up => {
                eprintln!("warm-up over after {:?}: RssAnon {rss} KiB", started.elapsed());
                rss_after_warm_up = Some(rss);
            }
            Some(_) => rss_max_after = rss_max_after.max(rss),
            None => {}
        }
        if scrapes % 60 == 0 {
            eprintln!("{:>5.0} s: RssAnon {rss} KiB, series max {max_series}, failures made {}", started.elapsed().as_secs_f64(), made.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = load.join().expect("the load thread");

    // The load has stopped: nothing of it is in flight any more.
    let deadline = Instant::now() + Duration::from_secs(10);
    let inflight = loop {
        let n = serve.scrape().one("badfd_inflight_opens", &[]);
        if n <= INFLIGHT_LEFT_BOUND.max(inflight_before) || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = serve.scrape();
    let received = s.one("badfd_events_received_total", &[]);
    let lost: f64 = s.sum("badfd_kernel_events_lost_total", &[]);
    let folded: f64 = s.sum("badfd_label_sets_folded_total", &[]);
    let otlp = |outcome: &str| s.sum("badfd_otlp_records_total", &[("kind", "anomaly"), ("outcome", outcome)]);
    let rss_start = rss_after_warm_up.expect("the run outlasted its warm-up");
    eprintln!(
        "soak {duration:?}: {rounds} rounds, {} failures made, {received} events received, {lost} lost in the kernel, {folded} label sets folded; \
         {scrapes} scrapes (slowest {slowest_scrape:?}); series max {max_series} of {BUDGET}; RssAnon {rss_start} KiB after warm-up, max {rss_max_after} KiB after; \
         in flight {inflight_before} before, {inflight} after; OTLP exported {} suppressed {} queue-full {} failed {}",
        made.load(Ordering::Relaxed),
        otlp("exported"),
        otlp("suppressed"),
        otlp("dropped_queue_full"),
        otlp("dropped_export_failed"),
    );
    assert!(scrapes as u64 >= duration.as_secs() * 9 / 10, "a scrape about every second: {scrapes}");
    assert!(folded > 0.0, "the load went past the label-set budget, so folding was exercised");
    assert!(
        rss_max_after <= rss_start + RSS_GROWTH_BOUND_KIB,
        "RssAnon grew from {rss_start} KiB to {rss_max_after} KiB after the warm-up (bound: +{RSS_GROWTH_BOUND_KIB} KiB)"
    );
    assert!(inflight <= INFLIGHT_LEFT_BOUND.max(inflight_before), "{inflight} opens still in flight after the load");
    assert!(otlp("exported") > 0.0, "records reached the collector");
    assert_eq!(otlp("dropped_export_failed"), 0.0, "a healthy collector loses nothing");
    assert!(receiver.record_count() as f64 >= otlp("exported"), "received >= exported");
    drop(serve);
    drop(receiver);
}

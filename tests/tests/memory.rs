//! Memory bounded by configuration (issue 21): a user holding many slow FIFO
//! opens, each under its own comm and directory, fills the slow label-set
//! budget with multi-second latencies; the exporter keeps exactly the budget's
//! label sets by name, folds the rest into `other`, and its resident memory
//! stays under the documented worst case (docs/security.md, "Memory").
//! Run as root; it fails, never skips, when BPF cannot be loaded.

use std::time::{Duration, Instant};

use badfd_tests::{hold_slow_fifo_opens, proc_status_kib, Serve, TempDir};

/// The default `--metrics.max-label-sets`.
const BUDGET: usize = 2000;
/// Slow label sets made: the budget and 100 more, folded.
const SLOW_OPENERS: usize = BUDGET + 100;
/// How long each FIFO open waits for its writer.
const HOLD: Duration = Duration::from_secs(3);
/// The worst-case resident memory of docs/security.md (a correctness bound,
/// not a speed target).
const RSS_BOUND_KIB: u64 = 128 * 1024;

#[test]
fn slow_series_fill_their_budget_and_memory_stays_bounded() {
    let dir = TempDir::lettered("memory");
    let pid = std::process::id().to_string();
    // The default ring buffer (the harness's roomy one would add up to 64 MiB
    // of touched ring pages that no default exporter has); only this
    // process's opens, so every count is this test's; a 500 ms threshold so
    // that only the held FIFO opens are slow, not an open of the writer's
    // end that a busy machine preempted for 10 ms.
    let serve = Serve::start(&["--ringbuf-bytes", "8388608", "--filter.pid", &pid, "--slow-threshold", "500ms"]);
    let started = Instant::now();
    hold_slow_fifo_opens(dir.path(), SLOW_OPENERS, HOLD, "mem-");

    let (named, folded, other) = loop {
        let m = serve.scrape();
        let slow: Vec<badfd_tests::Sample> = m.samples.iter().filter(|s| s.name == "badfd_anomaly_slow_opens_total").cloned().collect();
        let total: f64 = slow.iter().map(|s| s.value).sum();
        if total >= SLOW_OPENERS as f64 || started.elapsed() > Duration::from_secs(45) {
            let named: Vec<badfd_tests::Sample> =
                slow.iter().filter(|s| s.labels.get("comm").is_some_and(|c| c.starts_with("mem-"))).cloned().collect();
            let other: f64 = slow.iter().filter(|s| s.labels.get("comm").map(String::as_str) == Some("other")).map(|s| s.value).sum();
            let folded = m.sum("badfd_label_sets_folded_total", &[("metric", "badfd_anomaly_slow_opens_total")]);
            assert_eq!(total, SLOW_OPENERS as f64, "every slow FIFO open counted once: {slow:?}");
            break (named, folded, other);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(named.len(), BUDGET, "exactly the budget's label sets are named");
    let prefix = dir.path().to_str().unwrap();
    for s in &named {
        assert_eq!(s.value, 1.0, "one slow open per label set: {s:?}");
        assert!(s.labels["path_prefix"].starts_with(prefix), "{s:?}");
    }
    assert_eq!(folded, (SLOW_OPENERS - BUDGET) as f64, "the rest folded, each once");
    assert_eq!(other, (SLOW_OPENERS - BUDGET) as f64, "and counted under other");

    // The landing page reads every slow series' quantiles (the slowest at
    // least HOLD: the histograms hold multi-second latencies).
    let (status, page) = serve.get("/", None);
    assert_eq!(status, 200);
    assert!(page.contains("mem-"), "the landing page lists the slow label sets");

    let hwm = proc_status_kib(serve.pid(), "VmHWM").expect("VmHWM of badfd serve");
    let rss = proc_status_kib(serve.pid(), "VmRSS").expect("VmRSS of badfd serve");
    println!("badfd serve: VmRSS {rss} KiB, VmHWM {hwm} KiB with {BUDGET} slow label sets of {} s latencies", HOLD.as_secs());
    assert!(hwm < RSS_BOUND_KIB, "peak RSS {hwm} KiB is over the {RSS_BOUND_KIB} KiB bound");
}

//! Memory bounded by configuration (issue 21): a user holding many slow FIFO
//! opens, each under its own comm and directory, fills the slow label-set
//! budget with multi-second latencies; the exporter keeps exactly the budget's
//! label sets by name, folds the rest into `other`, and its resident memory
//! stays under the documented worst case (docs/security.md, "Memory").
//! Run as root; it fails, never skips, when BPF cannot be loaded.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use badfd_tests::{letters, proc_status_kib, Serve, TempDir};

/// The default `--metrics.max-label-sets`.
const BUDGET: usize = 2000;
/// Slow label sets made: the budget and 100 more, folded.
const SLOW_OPENERS: usize = BUDGET + 100;
/// How long each FIFO open waits for its writer.
const HOLD: Duration = Duration::from_secs(3);
/// The worst-case resident memory of docs/security.md (a correctness bound,
/// not a speed target).
const RSS_BOUND_KIB: u64 = 128 * 1024;

fn c(path: &std::path::Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// `n` FIFO opens, each on its own thread under its own comm (`mem-<letters>`)
/// and in its own directory (its own `path_prefix`), all blocked until `hold`
/// has passed, then released by opening their writing ends.
fn hold_slow_fifo_opens(dir: &std::path::Path, n: usize, hold: Duration) {
    let fifos: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = dir.join(format!("s{}", letters(i as u64)));
            std::fs::create_dir(&d).unwrap();
            let fifo = d.join("fifo");
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0, "mkfifo {}", fifo.display());
            fifo
        })
        .collect();
    let readers: Vec<_> = fifos
        .iter()
        .enumerate()
        .map(|(i, fifo)| {
            let path = c(fifo);
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let comm = CString::new(format!("mem-{}", letters(i as u64))).unwrap();
                    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
                    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
                    // SAFETY: a valid C string; blocks until a writer opens.
                    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                    assert!(fd >= 0, "open FIFO for reading: {}", std::io::Error::last_os_error());
                    // SAFETY: our own fd.
                    unsafe { libc::close(fd) };
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(hold);
    for fifo in &fifos {
        let path = c(fifo);
        // A non-blocking open for writing succeeds once its reader waits (ENXIO before).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
            if fd >= 0 {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
                break;
            }
            assert!(Instant::now() < deadline, "{}: no reader after 10 s", fifo.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for r in readers {
        r.join().unwrap();
    }
}

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
    hold_slow_fifo_opens(dir.path(), SLOW_OPENERS, HOLD);

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

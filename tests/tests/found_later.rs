//! Kernel tests of the found-later classification: a failed open is a probe
//! of a search path when the same process opens a file of the same basename
//! successfully within the window after it. Every count is checked exactly:
//! the failures are ELOOP (a symlink opened with O_NOFOLLOW), which nothing
//! else on a test machine makes, and the stream is filtered to this process.
//! Run as root; they fail, never skip, when BPF cannot be loaded.

use std::{
    fs::OpenOptions,
    os::unix::fs::{symlink, OpenOptionsExt},
    path::Path,
    time::Duration,
};

use badfd::{probe::FoundLaterTally, OpenEvent, ProbeOptions};
use badfd_tests::{load_probe_with, monotonic_ns, test_attach_mode, Collector, Serve, TempDir};
use exporter_common::{basename_hash, found_errno_slot, Config, CONFIG_FOUND_NOTICES};

/// Opens the symlink `path` without following it: ELOOP.
fn fail(path: &Path) {
    let err = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{}", path.display());
}

fn succeed(path: &Path) {
    std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The scenario, in one process: names under `a/` are symlinks (their opens
/// fail), the same names under `b/` are files.
///   lib.so    3 failures, then found            -> 3 found later
///   never.so  2 failures, never opened again    -> 2 not found
///   late.so   1 failure, found after the window -> 1 not found
///   child.so  1 failure, opened by a child      -> 1 not found (another process)
fn run_scenario(dir: &Path, window: Duration) {
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for name in ["lib.so", "never.so", "late.so", "child.so"] {
        std::fs::write(b.join(name), b"x").unwrap();
        symlink(b.join(name), a.join(name)).unwrap();
    }
    for _ in 0..3 {
        fail(&a.join("lib.so"));
    }
    for _ in 0..2 {
        fail(&a.join("never.so"));
    }
    fail(&a.join("late.so"));
    fail(&a.join("child.so"));
    succeed(&b.join("lib.so"));
    let status = std::process::Command::new("cat").arg(b.join("child.so")).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success());
    std::thread::sleep(window + Duration::from_millis(300));
    succeed(&b.join("late.so"));
}

fn check(timing: bool) {
    let pid = std::process::id();
    let config = Config { filter_pid: pid, flags: CONFIG_FOUND_NOTICES, ..Config::DEFAULT };
    let window = Duration::from_nanos(config.found_later_window_ns);
    let mut probe = load_probe_with(&ProbeOptions { attach: test_attach_mode(), timing, config, ..ProbeOptions::default() });
    let mut tally = FoundLaterTally::new(&probe.config(), monotonic_ns()).expect("found-later is on by default");
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("found-later");
    run_scenario(dir.path(), window);

    // Every epoch of the scenario decided: read the counters as epochs close.
    let end = monotonic_ns() + tally.delay_ns() + 200_000_000;
    while monotonic_ns() < end {
        tally.harvest(&probe.counters().unwrap(), monotonic_ns());
        std::thread::sleep(Duration::from_millis(100));
    }
    tally.harvest(&probe.counters().unwrap(), monotonic_ns());
    let eloop = found_errno_slot(libc::ELOOP as u64);
    let totals = tally.totals();
    assert_eq!(
        (totals.found[eloop], totals.not_found[eloop]),
        (3, 4),
        "ELOOP failures found later / not found (timing {timing})"
    );
    assert_eq!((tally.late_epochs, tally.excess_finds), (0, 0));

    // The stream: every failure carries its basename's hash; one notice, for
    // the open of b/lib.so that found the three.
    let prefix = dir.path().as_os_str().as_encoded_bytes();
    let ours: Vec<OpenEvent> = collector.of_pid(pid).into_iter().filter(|e| e.path.starts_with(prefix)).collect();
    let failures: Vec<&OpenEvent> = ours.iter().filter(|e| e.failed()).collect();
    assert_eq!(failures.len(), 7, "{ours:#?}");
    for f in &failures {
        assert_eq!(Some(f.name_hash), basename_hash(&f.path), "{:?}", String::from_utf8_lossy(&f.path));
        assert!(!f.found_notice());
    }
    let notices: Vec<&OpenEvent> = ours.iter().filter(|e| e.found_notice()).collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let notice = notices[0];
    assert!(notice.path.ends_with(b"/b/lib.so") && notice.ret >= 0 && !notice.failed(), "{notice:?}");
    assert_eq!(Some(notice.name_hash), basename_hash(b"lib.so"));
    assert_eq!(notice.latency_ns().is_some(), timing, "a notice is timed as its open is");
}

/// The same scenario under `badfd serve`: the labeled series and the exact
/// split say the same as the kernel.
fn check_serve() {
    let serve = Serve::start(&["--found-later.window", "1s"]);
    let dir = TempDir::new("found-later-serve");
    run_scenario(dir.path(), Duration::from_secs(1));
    // The window, the pipeline's grace, one epoch and a harvest.
    std::thread::sleep(Duration::from_millis(3500));
    let scrape = serve.scrape();
    // This thread's comm is its name (the kernel keeps 15 bytes); the label
    // value names the directory with its digits as <n>.
    let comm: String = std::thread::current().name().unwrap().chars().take(15).collect();
    let ours = |found_later: &str| scrape.sum("badfd_anomaly_failures_total", &[("errno", "ELOOP"), ("found_later", found_later), ("comm", &comm)]);
    let eloop: Vec<_> = scrape.matching("badfd_anomaly_failures_total", &[("errno", "ELOOP")]).collect();
    // (Host-wide floods beyond the stage's bound would decide failures early,
    // as not found: badfd_found_later_decided_early_total, in the message.)
    let early = scrape.one("badfd_found_later_decided_early_total", &[]);
    assert_eq!((ours("true"), ours("false")), (3.0, 4.0), "labeled failures found later / not found ({early} decided early): {eloop:#?}");
    let classified = |found_later| scrape.one("badfd_open_failures_classified_total", &[("errno", "ELOOP"), ("found_later", found_later)]);
    assert_eq!((classified("true"), classified("false")), (3.0, 4.0), "exact split; labeled ELOOPs: {eloop:#?}");
    assert_eq!(scrape.sum("badfd_found_later_inexact_total", &[]), 0.0);
    assert!(scrape.one("badfd_found_later_notices_total", &[]) >= 1.0);
    // The series alerts use exist at 0 from start.
    assert_eq!(classified_or_missing(&scrape, "EMFILE"), Some(0.0));
}

fn classified_or_missing(scrape: &badfd_tests::Scrape, errno: &str) -> Option<f64> {
    scrape.matching("badfd_open_failures_classified_total", &[("errno", errno), ("found_later", "false")]).map(|s| s.value).next()
}

#[test]
fn failures_are_found_later_exactly_by_the_same_process_within_the_window() {
    // One after the other: each would count the others' ELOOPs.
    check(true);
    check(false);
    check_serve();
}

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
use badfd_tests::{load_probe_with, monotonic_ns, test_attach_mode, Collector, TempDir};
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

#[test]
fn failures_are_found_later_exactly_by_the_same_process_within_the_window() {
    // One after the other: both would count this process's ELOOPs.
    check(true);
    check(false);
}

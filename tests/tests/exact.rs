//! Kernel tests of issue 18's kernel side: io_uring opens, 32-bit (ia32)
//! opens, signal-ended opens (EINTR, restarted, killed), failed opens whose
//! in-flight entry is missing or stale, and missed runs per program. Events
//! are filtered to the workload's own pid; counter deltas are checked on rows
//! nothing else on a test machine moves (io_uring and ia32 rows, openat's
//! EINTR). Run as root; they fail, never skip, when BPF cannot be loaded.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use badfd::{AttachMode, OpenEvent, Probe, ProbeOptions};
use badfd_tests::{kernel_version, load_probe_with, test_attach_mode, workload_path, Collector, TempDir};
use exporter_common::{
    Config, Counters, Loss, Stream, Syscall, EVENT_FAILED, EVENT_INTERRUPTED, EVENT_SLOW, EVENT_UNTIMED,
};

const ENOENT: usize = libc::ENOENT as usize;
const ENAMETOOLONG: usize = libc::ENAMETOOLONG as usize;
const EINTR: usize = libc::EINTR as usize;

fn load(config: Config) -> Probe {
    load_probe_with(&ProbeOptions { attach: test_attach_mode(), config, ..ProbeOptions::default() })
}

fn counters(probe: &Probe) -> Counters {
    probe.counters().expect("read the counters")
}

fn errno(c: &Counters, s: Syscall, e: usize) -> u64 {
    c.errnos[s as usize][e]
}

fn successes(c: &Counters, s: Syscall) -> u64 {
    c.opens[s as usize][0]
}

/// Events of `pid` once `count` of them arrived (or 5 s passed), and 200 ms
/// more so that any extra event would show.
fn events_of(collector: &Collector, pid: u32, count: usize) -> Vec<OpenEvent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while collector.of_pid(pid).len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    collector.of_pid(pid)
}

// ---------------------------------------------------------------------------
// io_uring
// ---------------------------------------------------------------------------

/// 40 IORING_OP_OPENAT and 40 IORING_OP_OPENAT2 of missing files, 2
/// successful OPENAT, 2 OPENAT whose path is too long to copy (they fail
/// before they run): counted exactly under io_uring_openat/io_uring_openat2,
/// each failure streamed once with its path and errno.
#[test]
fn io_uring_opens_are_counted_exactly_and_streamed() {
    let mut probe = load(Config::DEFAULT);
    println!("{}", probe.describe());
    if let Some(why) = probe.io_uring_unseen() {
        assert!(probe.describe().contains("io_uring_unseen="), "the startup line names the blind spot: {}", probe.describe());
        // Every kernel the matrix boots from 6.1 on has the hooks in both modes.
        assert!(kernel_version() < (6, 1), "io_uring opens unseen on {:?}: {why}", kernel_version());
        return;
    }
    let collector = Collector::start(&mut probe);
    let before = counters(&probe);
    let dir = TempDir::new("uring");
    let n = 40;
    let child = Command::new(workload_path())
        .args(["uring", dir.path().to_str().unwrap(), &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "workload uring failed: {:?}", out.status);
    let events = events_of(&collector, pid, 2 * n + 2);
    let after = counters(&probe);
    let d = |s, e| errno(&after, s, e) - errno(&before, s, e);
    println!(
        "io_uring in {} mode: openat ENOENT +{}, ENAMETOOLONG +{}, successes +{}; openat2 ENOENT +{}; {} events of the workload",
        probe.attach_mode(),
        d(Syscall::IoUringOpenat, ENOENT),
        d(Syscall::IoUringOpenat, ENAMETOOLONG),
        successes(&after, Syscall::IoUringOpenat) - successes(&before, Syscall::IoUringOpenat),
        d(Syscall::IoUringOpenat2, ENOENT),
        events.len()
    );
    assert_eq!(d(Syscall::IoUringOpenat, ENOENT), n as u64);
    assert_eq!(d(Syscall::IoUringOpenat2, ENOENT), n as u64);
    assert_eq!(d(Syscall::IoUringOpenat, ENAMETOOLONG), 2);
    assert_eq!(successes(&after, Syscall::IoUringOpenat) - successes(&before, Syscall::IoUringOpenat), 2);

    let of = |s: Syscall, e: usize| events.iter().filter(|ev| ev.syscall == s && ev.ret == -(e as i64)).collect::<Vec<_>>();
    let missing = of(Syscall::IoUringOpenat, ENOENT);
    assert_eq!(missing.len(), n, "every failed OPENAT streamed once: {events:#?}");
    let path = dir.path().join("uring-missing-openat");
    assert!(missing.iter().all(|e| e.path == path.as_os_str().as_encoded_bytes()), "paths: {:?}", missing[0].path);
    assert!(missing.iter().all(|e| e.flags & EVENT_FAILED != 0));
    let missing2 = of(Syscall::IoUringOpenat2, ENOENT);
    assert_eq!(missing2.len(), n, "every failed OPENAT2 streamed once");
    let path2 = dir.path().join("uring-missing-openat2");
    assert!(missing2.iter().all(|e| e.path == path2.as_os_str().as_encoded_bytes()));
    assert!(missing2.iter().all(|e| e.open_flags & libc::O_CLOEXEC as u64 != 0), "openat2's flags from its open_how");
    let too_long = of(Syscall::IoUringOpenat, ENAMETOOLONG);
    assert_eq!(too_long.len(), 2, "the two requests that failed before they ran, streamed");
    let summary: Vec<_> = events
        .iter()
        .filter(|e| e.syscall.is_io_uring())
        .map(|e| (e.syscall.name(), e.ret, e.flags, String::from_utf8_lossy(&e.path[..e.path.len().min(60)]).into_owned()))
        .collect();
    assert_eq!(summary.len(), 2 * n + 2, "nothing else of the ring streamed: {summary:#?}");
}

// ---------------------------------------------------------------------------
// ia32
// ---------------------------------------------------------------------------

static IA32_OPENS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ia32-opens"));

/// A 32-bit process's 25 failing opens of each kind: in fentry mode counted
/// exactly under ia32_open/ia32_openat/ia32_openat2/ia32_creat and streamed
/// with their paths (ia32 registers); in tracepoint mode not seen, and the
/// startup line says so.
#[test]
#[cfg(target_arch = "x86_64")]
fn ia32_opens_count_under_their_own_syscalls() {
    let mut probe = load(Config::DEFAULT);
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("ia32");
    let program = dir.path().join("ia32-opens");
    std::fs::write(&program, IA32_OPENS).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = counters(&probe);
    let n = 25;
    let child = Command::new(&program).args([dir.path().to_str().unwrap(), &n.to_string()]).spawn().unwrap();
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "the ia32 program saw other results than expected: {status:?}");
    let ia32 = [Syscall::Ia32Open, Syscall::Ia32Openat, Syscall::Ia32Openat2, Syscall::Ia32Creat];
    match probe.attach_mode() {
        AttachMode::Tracepoint => {
            let why = probe.ia32_unseen().expect("tracepoint mode names its ia32 blind spot");
            assert!(probe.describe().contains("ia32_unseen="), "{}", probe.describe());
            std::thread::sleep(Duration::from_millis(200));
            let after = counters(&probe);
            for s in ia32 {
                assert_eq!(errno(&after, s, ENOENT), errno(&before, s, ENOENT), "{} not hooked in tracepoint mode", s.name());
            }
            assert!(collector.of_pid(pid).is_empty(), "nothing of a 32-bit process in tracepoint mode");
            println!("ia32 in tracepoint mode: unseen, said at startup: {why}");
        }
        AttachMode::Fentry => {
            assert_eq!(probe.ia32_unseen(), None, "{}", probe.describe());
            let events = events_of(&collector, pid, 4 * n);
            let after = counters(&probe);
            for s in ia32 {
                let delta = errno(&after, s, ENOENT) - errno(&before, s, ENOENT);
                println!("ia32 in fentry mode: {} ENOENT +{delta}", s.name());
                assert_eq!(delta, n as u64, "{}", s.name());
                assert_eq!(events.iter().filter(|e| e.syscall == s && e.ret == -(ENOENT as i64)).count(), n, "{} streamed", s.name());
            }
            let path = |name: &str| dir.path().join(name).as_os_str().as_encoded_bytes().to_vec();
            let first = |s: Syscall| events.iter().find(|e| e.syscall == s).unwrap();
            assert_eq!(first(Syscall::Ia32Open).path, path("ia32-missing-open"));
            assert_eq!(first(Syscall::Ia32Openat).path, b"ia32-missing-openat");
            assert_eq!(first(Syscall::Ia32Openat2).path, path("ia32-missing-openat2"));
            assert!(first(Syscall::Ia32Openat2).open_flags & libc::O_CLOEXEC as u64 != 0, "openat2's open_how read from the ia32 pointer");
            assert_eq!(first(Syscall::Ia32Creat).path, path("ia32-no-such-dir/creat"));
            assert_eq!(first(Syscall::Ia32Creat).mode, 0o640);
            // The one successful open of the directory.
            assert_eq!(successes(&after, Syscall::Ia32Open) - successes(&before, Syscall::Ia32Open), 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// A `workload signal DIR MODE` run: its reader thread blocked in a FIFO open.
struct SignalRun {
    child: Child,
    reader_tid: u32,
    dir: TempDir,
}

fn start_signal(mode: &str) -> SignalRun {
    let dir = TempDir::new("signal");
    let mut child = Command::new(workload_path())
        .args(["signal", dir.path().to_str().unwrap(), mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut reader_tid = None;
    let mut line = String::new();
    while reader_tid.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the workload ended before naming its reader");
        reader_tid = line.trim().strip_prefix("reader ").map(|t| t.parse().unwrap());
    }
    // Let its open reach the FIFO's wait.
    std::thread::sleep(Duration::from_millis(300));
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    SignalRun { child, reader_tid: reader_tid.unwrap(), dir }
}

impl SignalRun {
    fn go(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    fn fifo(&self) -> Vec<u8> {
        self.dir.path().join("fifo").as_os_str().as_encoded_bytes().to_vec()
    }
}

/// 100 ms slow threshold: every blocked FIFO open here is slow.
fn slow_config() -> Config {
    Config { slow_threshold_ns: 100_000_000, ..Config::DEFAULT }
}

fn fifo_events(events: &[OpenEvent], run: &SignalRun) -> Vec<OpenEvent> {
    events.iter().filter(|e| e.tid == run.reader_tid && e.path == run.fifo()).cloned().collect()
}

/// A handler without SA_RESTART: the open returns EINTR, a failure with
/// errno EINTR, timed (slow: it waited 300 ms), streamed once as interrupted.
#[test]
fn an_open_that_returns_eintr_is_a_failure() {
    let mut probe = load(slow_config());
    let collector = Collector::start(&mut probe);
    let before = counters(&probe);
    let mut run = start_signal("eintr");
    run.go();
    assert!(run.child.wait().unwrap().success());
    let pid = run.child.id();
    let events = fifo_events(&events_of(&collector, pid, 1), &run);
    let after = counters(&probe);
    let eintr = errno(&after, Syscall::Openat, EINTR) - errno(&before, Syscall::Openat, EINTR);
    println!("eintr: openat EINTR +{eintr}, events {events:?}");
    assert_eq!(eintr, 1, "one EINTR failure counted");
    assert_eq!(events.len(), 1, "streamed once");
    let e = &events[0];
    assert_eq!(e.ret, -(EINTR as i64));
    assert_eq!(e.flags & (EVENT_FAILED | EVENT_INTERRUPTED | EVENT_SLOW), EVENT_FAILED | EVENT_INTERRUPTED | EVENT_SLOW);
    assert!(e.latency_ns >= 300_000_000, "timed from its entry: {} ns", e.latency_ns);
}

/// SA_RESTART: the kernel restarts the open, which then succeeds when a
/// writer comes. Counted once (one slow success streamed, timed from the
/// first entry), the restart counted as such.
#[test]
fn a_restarted_open_is_counted_once() {
    let mut probe = load(slow_config());
    let collector = Collector::start(&mut probe);
    let before = counters(&probe);
    let mut run = start_signal("restart");
    run.go();
    assert!(run.child.wait().unwrap().success());
    let pid = run.child.id();
    let events = fifo_events(&events_of(&collector, pid, 1), &run);
    let after = counters(&probe);
    let restarted = after.stream[Stream::Restarted as usize] - before.stream[Stream::Restarted as usize];
    let eintr = errno(&after, Syscall::Openat, EINTR) - errno(&before, Syscall::Openat, EINTR);
    println!("restart: restarted +{restarted}, EINTR +{eintr}, events {events:?}");
    assert_eq!(restarted, 1, "one restart");
    assert_eq!(eintr, 0, "a restart is no failure");
    assert_eq!(events.len(), 1, "one open, streamed once: {events:?}");
    let e = &events[0];
    assert!(e.ret >= 0, "it succeeded: {}", e.ret);
    assert_eq!(e.flags & (EVENT_SLOW | EVENT_FAILED | EVENT_INTERRUPTED), EVENT_SLOW);
    assert!(e.latency_ns >= 600_000_000, "timed from its first entry: {} ns", e.latency_ns);
}

/// SIGKILL while the open waits: no result reaches the program; timed, slow,
/// streamed as interrupted (not failed), counted as interrupted.
#[test]
fn a_killed_open_is_timed_and_streamed() {
    let mut probe = load(slow_config());
    let collector = Collector::start(&mut probe);
    let before = counters(&probe);
    let mut run = start_signal("kill");
    run.go();
    std::thread::sleep(Duration::from_millis(100));
    run.child.kill().unwrap();
    let _ = run.child.wait();
    let pid = run.child.id();
    let events = fifo_events(&events_of(&collector, pid, 1), &run);
    let after = counters(&probe);
    let interrupted = after.stream[Stream::Interrupted as usize] - before.stream[Stream::Interrupted as usize];
    println!("kill: interrupted +{interrupted}, events {events:?}");
    assert_eq!(interrupted, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.flags & (EVENT_SLOW | EVENT_FAILED | EVENT_INTERRUPTED), EVENT_SLOW | EVENT_INTERRUPTED);
    assert!(exporter_common::is_restart_code(e.ret), "the kernel's restart code: {}", e.ret);
    assert!(e.latency_ns >= 400_000_000, "{} ns", e.latency_ns);
}

// ---------------------------------------------------------------------------
// Lost and stale entries
// ---------------------------------------------------------------------------

/// An open that began before badfd attached (its entry was never made, as a
/// skipped entry program leaves it) and then failed with EINTR: counted,
/// and streamed with its arguments from the saved registers, untimed.
#[test]
fn a_failure_without_its_entry_is_streamed() {
    let mut run = start_signal("eintr");
    let mut probe = load(slow_config());
    if probe.attach_mode() == AttachMode::Fentry {
        // An fexit attached while the function runs is not called when that
        // call returns: the open that began before attach is not seen at all
        // (the kernel cannot be made to skip an fentry program on demand).
        run.go();
        let _ = run.child.wait();
        return;
    }
    let collector = Collector::start(&mut probe);
    let before = counters(&probe);
    run.go();
    assert!(run.child.wait().unwrap().success());
    let pid = run.child.id();
    let events = fifo_events(&events_of(&collector, pid, 1), &run);
    let after = counters(&probe);
    let eintr = errno(&after, Syscall::Openat, EINTR) - errno(&before, Syscall::Openat, EINTR);
    let without = after.losses[Loss::ExitWithoutEnter as usize] - before.losses[Loss::ExitWithoutEnter as usize];
    println!("lost entry: EINTR +{eintr}, exit_without_enter +{without}, events {events:?}");
    assert_eq!(eintr, 1);
    assert!(without >= 1);
    if !probe.timed() {
        return;
    }
    assert_eq!(events.len(), 1, "streamed from the saved registers (Linux 5.15+): {events:?}");
    let e = &events[0];
    assert_eq!(e.ret, -(EINTR as i64));
    assert_eq!(e.flags & (EVENT_FAILED | EVENT_UNTIMED | EVENT_INTERRUPTED), EVENT_FAILED | EVENT_UNTIMED | EVENT_INTERRUPTED);
    assert_eq!(e.syscall, Syscall::Openat);
}

/// The thread's own entry left behind by a missed exit (planted): its next
/// open counts it stale and goes on as itself, counted and streamed once.
#[test]
fn a_stale_entry_of_the_thread_is_counted_and_replaced() {
    let mut probe = load(Config::DEFAULT);
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("stale");
    let mut child = Command::new(workload_path())
        .args(["stale", dir.path().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut tid = None;
    let mut line = String::new();
    while tid.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0);
        tid = line.trim().strip_prefix("tid ").map(|t| t.parse::<u32>().unwrap());
    }
    let tid = tid.unwrap();
    probe.plant_inflight_entry(tid, 1).unwrap();
    let before = counters(&probe);
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(child.wait().unwrap().success());
    let path = dir.path().join("stale-missing").as_os_str().as_encoded_bytes().to_vec();
    let events: Vec<_> = events_of(&collector, child.id(), 1).into_iter().filter(|e| e.path == path).collect();
    let after = counters(&probe);
    let stale = after.losses[Loss::InflightStale as usize] - before.losses[Loss::InflightStale as usize];
    println!("stale: inflight_stale +{stale}, events {}", events.len());
    if probe.timed() {
        assert_eq!(stale, 1, "the planted entry found stale once");
        assert!(!probe.has_inflight_entry(tid).unwrap(), "the slot is free after the open");
        assert!(events[0].latency_ns < 1_000_000_000, "timed from its own entry, not the stale one");
    }
    assert_eq!(events.len(), 1, "the failure streamed once");
}

/// Every loaded program, the new ones included, reports its missed runs.
#[test]
fn missed_runs_cover_every_program() {
    let probe = load(Config::DEFAULT);
    let runs = probe.missed_runs_by_program();
    println!("{runs:?}");
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    if probe.io_uring_unseen().is_none() {
        let io_uring = names.iter().filter(|n| n.contains("io_uring") || n.contains("io_openat")).count();
        assert!(io_uring >= 1, "the io_uring programs report missed runs: {names:?}");
    }
    assert_eq!(probe.missed_runs(), runs.iter().map(|(_, n)| n).sum::<u64>());
}

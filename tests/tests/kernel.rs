//! Kernel tests of the probe itself (issue 2): real program, real opens, exact
//! counts. Run as root; they fail, never skip, when BPF cannot be loaded.

use std::{collections::BTreeMap, time::Duration};

use badfd::{AttachMode, OpenEvent};
use badfd_tests::{
    cgroup_id_of, kernel_has_fentry_helpers, kernel_locked_down, load_probe, load_probe_with, run_workload, without_missed_runs,
    Collector, OpenRecord, TempDir,
};
use exporter_common::{
    Config, Counters, Loss, Stream, Syscall, CONFIG_FAILURES_ONLY, PATH_MAX, RESULT_FAILED, RESULT_OK,
    SLOW_DISABLED,
};

const WAIT: Duration = Duration::from_secs(5);

fn config(slow_ms: Option<u64>) -> Config {
    Config {
        slow_threshold_ns: slow_ms.map(|ms| ms * 1_000_000).unwrap_or(SLOW_DISABLED),
        ..Config::DEFAULT
    }
}

fn syscall_of(name: &str) -> Syscall {
    Syscall::ALL.into_iter().find(|s| s.name() == name).unwrap()
}

/// The identity of an open as both sides can state it.
fn key_of_record(r: &OpenRecord) -> (u32, Syscall, i64, i32, Vec<u8>) {
    let mut path = r.path.clone();
    path.truncate(PATH_MAX - 1);
    (r.tid, syscall_of(&r.syscall), r.ret, r.dirfd, path)
}

fn key_of_event(e: &OpenEvent) -> (u32, Syscall, i64, i32, Vec<u8>) {
    (e.tid, e.syscall, e.ret, e.dirfd, e.path.clone())
}

fn multiset<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// Tests that block an open for long take turns: one's blocked open is in
/// flight in the other's probe too, and would move its in-flight gauge.
fn blocking_opens_alone() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn delta(after: &Counters, before: &Counters, f: impl Fn(&Counters) -> u64) -> u64 {
    f(after) - f(before)
}

/// Runs the `failures` workload (in a temporary directory named after
/// `name`) until no program run was skipped, and checks that exactly its
/// failed opens were streamed, each once, with its own thread, syscall, errno,
/// dirfd and path (no successful open crossed to userspace). Returns the
/// counters before, the run, its events and the counters after.
fn failures_streamed_exactly(
    probe: &badfd::Probe,
    collector: &Collector,
    name: &str,
) -> (Counters, badfd_tests::WorkloadRun, Vec<OpenEvent>, Counters) {
    let (before, run, events, after) = without_missed_runs(probe, || {
        let dir = TempDir::new(name);
        let before = probe.counters().unwrap();
        let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
        let events = collector.wait_for(&run, run.failures().len(), WAIT);
        (before, run, events, probe.counters().unwrap())
    });
    assert_eq!(
        multiset(events.iter().map(key_of_event)),
        multiset(run.failures().iter().map(|r| key_of_record(r))),
        "events of the workload differ from the failures it made"
    );
    (before, run, events, after)
}

/// The `failures` workload failed at least once through each open syscall of
/// the architecture (all four on x86_64; openat and openat2 on arm64) and
/// through no other, so that the exact comparison of its events covers each
/// (execs have their own test, tests/exec.rs).
fn assert_made_every_open_syscall_of_the_architecture(probe: &badfd::Probe, run: &badfd_tests::WorkloadRun) {
    let failed_through: std::collections::BTreeSet<Syscall> = run.failures().iter().map(|r| syscall_of(&r.syscall)).collect();
    let native: std::collections::BTreeSet<Syscall> = probe.arch().syscalls().iter().copied().filter(|s| !s.is_exec()).collect();
    assert_eq!(failed_through, native, "the open syscalls of {}", probe.arch().name());
}

#[test]
fn streams_exactly_the_failures_with_every_field() {
    let mut probe = load_probe(config(None));
    let collector = Collector::start(&mut probe);
    let (before, run, events, after) = failures_streamed_exactly(&probe, &collector, "failures");
    let errnos: std::collections::BTreeSet<i64> = events.iter().map(|e| -e.ret).collect();
    for errno in [libc::ENOENT, libc::ENOTDIR, libc::EISDIR, libc::EEXIST, libc::ELOOP, libc::ENAMETOOLONG, libc::EBADF, libc::EINVAL] {
        assert!(errnos.contains(&(errno as i64)), "no event with {}", badfd::errno::name(errno));
    }
    let tids: std::collections::BTreeSet<u32> = events.iter().map(|e| e.tid).collect();
    assert!(tids.len() >= 4, "thread opens must carry their thread ids, saw {tids:?}");
    assert!(tids.contains(&run.pid));

    // Every field of a few events.
    let cgroup = cgroup_id_of(std::process::id()).expect("cgroup v2 id of this process");
    for e in &events {
        assert!(e.failed() && !e.slow(), "{e:?}");
        assert_eq!(e.comm_lossy(), "workload");
        assert_eq!(e.uid, 0);
        assert_eq!(e.gid, 0);
        assert_eq!(e.cgroup_id, cgroup, "the workload runs in the test's cgroup");
        assert!(e.latency_ns > 0 && e.latency_ns < 1_000_000_000, "latency {}", e.latency_ns);
        assert!(e.start_ns > 0);
    }
    let eexist = events.iter().find(|e| e.ret == -(libc::EEXIST as i64)).unwrap();
    assert_eq!(eexist.open_flags, (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u64);
    assert_eq!(eexist.mode, 0o600);
    let eloop = events.iter().find(|e| e.ret == -(libc::ELOOP as i64)).unwrap();
    assert_eq!(eloop.open_flags & libc::O_NOFOLLOW as u64, libc::O_NOFOLLOW as u64);
    let einval = events.iter().find(|e| e.ret == -(libc::EINVAL as i64)).unwrap();
    assert_eq!(einval.syscall, Syscall::Openat2);
    assert_eq!(einval.open_flags, 1 << 40, "openat2 flags come from struct open_how");
    assert_made_every_open_syscall_of_the_architecture(&probe, &run);
    if let Some(creat) = events.iter().find(|e| e.syscall == Syscall::Creat) {
        assert_eq!(creat.mode, 0o640);
        assert_eq!(creat.dirfd, libc::AT_FDCWD);
    }
    let relative = events.iter().find(|e| e.path == b"missing-relative").unwrap();
    assert!(relative.dirfd >= 3, "relative open carries its real dirfd, got {}", relative.dirfd);
    let odd = events.iter().find(|e| e.path.ends_with(b"bad\xff\nname\"\\\x01")).expect("odd bytes kept as they are");
    assert!(!odd.path_truncated());

    // Long paths: 4000 bytes whole, over PATH_MAX cut and flagged.
    let long = events.iter().find(|e| e.path.len() == 4000).expect("the 4000-byte path arrives whole");
    assert!(!long.path_truncated());
    assert_eq!(long.ret, -(libc::ENOENT as i64));
    let too_long = events.iter().find(|e| e.ret == -(libc::ENAMETOOLONG as i64)).unwrap();
    assert!(too_long.path_truncated());
    assert_eq!(too_long.path.len(), PATH_MAX - 1);

    // The exact counters saw at least every open the workload made (other
    // processes open files too, so at least, not equal).
    let mut made: BTreeMap<(Syscall, usize), u64> = BTreeMap::new();
    let mut made_errno: BTreeMap<(Syscall, i64), u64> = BTreeMap::new();
    for r in &run.manifest {
        let s = syscall_of(&r.syscall);
        *made.entry((s, if r.ret < 0 { RESULT_FAILED } else { RESULT_OK })).or_default() += 1;
        if r.ret < 0 {
            *made_errno.entry((s, -r.ret)).or_default() += 1;
        }
    }
    for ((s, result), n) in made {
        let d = delta(&after, &before, |c| c.opens[s as usize][result]);
        assert!(d >= n, "{} result {result}: counter delta {d} < {n} opens made", s.name());
    }
    for ((s, errno), n) in made_errno {
        let d = delta(&after, &before, |c| c.errnos[s as usize][errno as usize]);
        assert!(d >= n, "{} {}: counter delta {d} < {n}", s.name(), badfd::errno::name(errno as i32));
    }
    assert!(delta(&after, &before, |c| c.losses[Loss::PathTruncated as usize]) >= 1);
    assert!(delta(&after, &before, |c| c.stream[Stream::Submitted as usize]) >= run.failures().len() as u64);
}

/// A failure names the path the kernel walked, though another thread of the
/// process may rewrite the path's memory while the open goes on: the
/// workload's DIR/a/x fails with ENOTDIR (a is a file), DIR/b/x with ENOENT,
/// so the errno says which one was walked. In timed fentry mode the path is
/// the kernel's own copy (`fexit_do_filp_open`): every event names the path
/// walked, for an io_uring open whose path is rewritten after submission
/// (deterministic) and for openat racing a thread that flips the letter.
/// Tracepoint mode reads the process's memory at the end (docs/security.md):
/// there the io_uring open names the rewritten path where the kernel keeps
/// the user's pointer, and the racing opens may name the other letter.
#[test]
fn a_failure_names_the_path_the_kernel_walked() {
    const OPENS: usize = 3000;
    let mut probe = load_probe(config(None));
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("rewrite");
    let run = run_workload(&["rewrite", dir.path().to_str().unwrap(), &OPENS.to_string()]);
    let failures = run.failures().len();
    assert_eq!(failures, OPENS + 1, "every open of the workload fails");
    let events = collector.wait_for(&run, failures, WAIT);
    let walked = |e: &OpenEvent| dir.path().join(if e.ret == -(libc::ENOTDIR as i64) { "a/x" } else { "b/x" });
    let named = |e: &OpenEvent| std::path::PathBuf::from(String::from_utf8_lossy(&e.path).into_owned());
    let uring: Vec<&OpenEvent> = events.iter().filter(|e| e.syscall == Syscall::IoUringOpenat).collect();
    let syscalls: Vec<&OpenEvent> = events.iter().filter(|e| e.syscall == Syscall::Openat).collect();
    assert_eq!(syscalls.len(), OPENS, "one event per failed openat");
    let other: Vec<&&OpenEvent> = syscalls.iter().filter(|e| named(e) != walked(e)).collect();
    let walked_a = syscalls.iter().filter(|e| e.ret == -(libc::ENOTDIR as i64)).count();
    eprintln!(
        "{} mode: {} of {OPENS} racing openat name a path the kernel did not walk ({walked_a} walked a/x); io_uring: {:?}",
        probe.attach_mode(),
        other.len(),
        uring.iter().map(|e| (e.ret, named(e))).collect::<Vec<_>>()
    );
    if probe.io_uring_unseen().is_none() {
        assert_eq!(uring.len(), 1, "the io_uring open's event");
        // The kernel copied the path at submission, before the rewrite
        // (every kernel badfd runs on does; the rewrite is not what it walked).
        assert_eq!(uring[0].ret, -(libc::ENOTDIR as i64), "the io_uring open walked DIR/a/x");
    }
    match probe.attach_mode() {
        AttachMode::Fentry => {
            assert_eq!(probe.kernel_paths_unused(), None, "{}", probe.describe());
            assert!(other.is_empty(), "events naming a path the kernel did not walk: {other:?}");
            for e in &uring {
                assert_eq!(named(e), walked(e), "the io_uring failure names the path walked, not the rewritten memory");
            }
        }
        AttachMode::Tracepoint => {
            // The documented limit, as it is: the path read at the end.
            if badfd::probe::running_filename_offsets().uptr != exporter_common::FIELD_ABSENT {
                for e in &uring {
                    assert_eq!(named(e), dir.path().join("b/x"), "tracepoint mode reads the rewritten memory at the end");
                }
            }
        }
    }
}

#[test]
fn fast_successful_opens_never_cross_to_userspace() {
    const OPENS: u64 = 2000;
    let mut probe = load_probe(config(Some(1000)));
    let collector = Collector::start(&mut probe);
    let dir = TempDir::new("fast");
    let before = probe.counters().unwrap();

    let run = run_workload(&["fast", dir.path().to_str().unwrap(), &OPENS.to_string()]);
    let events = collector.wait_for(&run, 1, Duration::from_millis(300));
    let after = probe.counters().unwrap();

    assert!(events.is_empty(), "fast successful opens streamed: {events:?}");
    let openat = Syscall::Openat as usize;
    assert!(delta(&after, &before, |c| c.opens[openat][RESULT_OK]) >= OPENS + 1);
    // Every timed open is in the latency histogram, and its sum moved.
    let timed = delta(&after, &before, |c| c.latency[openat].iter().sum());
    assert!(timed >= OPENS + 1, "latency histogram gained {timed}");
    assert!(delta(&after, &before, |c| c.latency_sum_ns[openat]) > 0);
}

#[test]
fn slow_opens_are_timed_per_thread_and_the_threshold_changes_at_run_time() {
    const DELAY_MS: u64 = 80;
    let mut probe = load_probe(config(Some(30)));
    let collector = Collector::start(&mut probe);

    // 1. Threshold 30 ms: the FIFO reader's 80 ms open is slow; the failures a
    // second thread made meanwhile are fast and separately timed.
    let dir = TempDir::new("fifo1");
    let run = run_workload(&["fifo", dir.path().to_str().unwrap(), &DELAY_MS.to_string()]);
    let reader = run.manifest.iter().find(|r| r.flags == libc::O_RDONLY as u64 && r.ret >= 0).unwrap();
    let events = collector.wait_for(&run, run.failures().len() + 1, WAIT);
    let slow: Vec<&OpenEvent> = events.iter().filter(|e| e.slow()).collect();
    assert_eq!(slow.len(), 1, "exactly the FIFO reader is slow: {events:?}");
    let slow = slow[0];
    assert_eq!(slow.tid, reader.tid);
    assert!(!slow.failed());
    assert_eq!(slow.ret, reader.ret);
    assert!(slow.path.ends_with(b"/fifo"));
    assert!(slow.latency_ns >= DELAY_MS * 1_000_000 * 3 / 4, "reader waited {} ns", slow.latency_ns);
    let fast_failures: Vec<&OpenEvent> = events.iter().filter(|e| e.failed()).collect();
    assert_eq!(fast_failures.len(), run.failures().len());
    for e in fast_failures {
        assert!(e.latency_ns < 30_000_000, "a failure made while the reader blocked took {} ns", e.latency_ns);
        assert_ne!(e.tid, reader.tid);
    }

    // 2. Threshold raised to 500 ms while running: the same open is no longer slow.
    probe.set_config(config(Some(500))).unwrap();
    let dir = TempDir::new("fifo2");
    let run = run_workload(&["fifo", dir.path().to_str().unwrap(), &DELAY_MS.to_string()]);
    let events = collector.wait_for(&run, run.failures().len(), WAIT);
    assert!(events.iter().all(|e| !e.slow()), "threshold change ignored: {events:?}");
    assert_eq!(events.len(), run.failures().len());

    // 3. Back to 30 ms but failures only: the slow open is counted, not streamed.
    let before = probe.counters().unwrap();
    probe.set_config(Config { flags: CONFIG_FAILURES_ONLY, ..config(Some(30)) }).unwrap();
    let dir = TempDir::new("fifo3");
    let run = run_workload(&["fifo", dir.path().to_str().unwrap(), &DELAY_MS.to_string()]);
    let events = collector.wait_for(&run, run.failures().len(), WAIT);
    let after = probe.counters().unwrap();
    assert!(events.iter().all(|e| e.failed()), "failures-only streamed a success: {events:?}");
    assert_eq!(events.len(), run.failures().len());
    assert!(delta(&after, &before, |c| c.stream[Stream::SlowNotStreamed as usize]) >= 1);
    assert!(delta(&after, &before, |c| c.slow[Syscall::Openat as usize]) >= 1);
}

#[test]
fn pid_filter_is_decided_in_the_kernel() {
    // Stream only a process that is not the workload.
    let mut probe = load_probe(Config { filter_pid: 1, ..config(None) });
    let collector = Collector::start(&mut probe);
    let (before, run, events, after) = without_missed_runs(&probe, || {
        let dir = TempDir::new("filter");
        let before = probe.counters().unwrap();
        let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
        let events = collector.wait_for(&run, 1, Duration::from_millis(300));
        (before, run, events, probe.counters().unwrap())
    });
    assert!(events.is_empty(), "filtered process streamed {} events", events.len());
    let filtered = delta(&after, &before, |c| c.stream[Stream::Filtered as usize]);
    assert!(filtered >= run.failures().len() as u64, "filtered counter {filtered}");
    // Counters still count every open of the filtered process.
    let failed = delta(&after, &before, |c| c.opens[Syscall::Openat as usize][RESULT_FAILED]);
    assert!(failed >= run.failures().iter().filter(|r| r.syscall == "openat").count() as u64);
}

#[test]
fn attach_mode_is_detected_not_assumed() {
    let probe = load_probe(config(None));
    let expected = match std::env::var("BADFD_TEST_ATTACH").as_deref() {
        Ok("fentry") => AttachMode::Fentry,
        Ok("tracepoint") => AttachMode::Tracepoint,
        _ => match kernel_locked_down() {
            Some(true) => AttachMode::Tracepoint,
            Some(false) if kernel_has_fentry_helpers() => AttachMode::Fentry,
            Some(false) => AttachMode::Tracepoint,
            None => panic!("cannot tell whether fentry should load: mount securityfs (scripts/setup.sh does)"),
        },
    };
    assert_eq!(probe.attach_mode(), expected, "{}", probe.describe());
    // Shown in the kernel matrix's logs (--show-output).
    eprintln!("attached {}", probe.describe());
    let release = badfd::probe::kernel_release();
    assert!(
        probe.describe().starts_with(&format!("mode={expected} kernel={release} reason=\"")),
        "startup line: {}",
        probe.describe()
    );
    let auto = matches!(std::env::var("BADFD_TEST_ATTACH").as_deref(), Ok("auto") | Err(_));
    if expected == AttachMode::Tracepoint && auto {
        let reason = probe.fallback_reason().expect("auto mode says why fentry was not used");
        let why = if kernel_has_fentry_helpers() { "EPERM" } else { "5.15" };
        assert!(reason.contains(why), "fallback reason: {reason}");
        assert!(probe.describe().contains("fentry refused"), "{}", probe.describe());
    }
}

/// Exactly the open syscalls of this architecture are hooked (all four on
/// x86_64; openat and openat2 on arm64, whose kernels have no open or creat
/// tracepoints), and the object holds no program for the others.
#[test]
fn only_the_open_syscalls_of_this_architecture_are_hooked() {
    let probe = load_probe(config(None));
    let arch = probe.arch();
    assert_eq!(arch.name(), std::env::consts::ARCH);
    assert!(probe.missing_syscalls().is_empty(), "every kernel the matrix boots has openat2: {}", probe.describe());
    let mut loaded: Vec<String> = probe.program_stats().into_iter().map(|s| s.name).collect();
    loaded.sort();
    let mut expected: Vec<String> = match probe.attach_mode() {
        AttachMode::Fentry => {
            // The exec hooks are optional where the kernel refuses them.
            let mut names: Vec<String> =
                vec!["fentry_do_sys_openat2".into(), "fexit_do_sys_openat2".into(), "fexit_do_filp_open".into()];
            let execs = ["fentry_execve", "fentry_execveat", "fexit_execve", "fexit_execveat"];
            names.extend(execs.into_iter().filter(|e| loaded.iter().any(|l| l == e)).map(String::from));
            names
        }
        AttachMode::Tracepoint => {
            arch.syscalls().iter().flat_map(|s| [format!("sys_enter_{}", s.name()), format!("sys_exit_{}", s.name())]).collect()
        }
    };
    expected.push("sched_process_exit".into());
    // io_uring opens have programs of their own where the kernel has a hook.
    if probe.io_uring_unseen().is_none() {
        let io_uring: &[&str] = match probe.attach_mode() {
            AttachMode::Fentry => &["fentry_io_openat", "fentry_io_openat2", "fexit_io_openat", "fexit_io_openat2", "io_uring_req_failed"],
            AttachMode::Tracepoint => &["io_uring_complete", "io_uring_req_failed", "io_uring_submit_req"],
        };
        expected.extend(io_uring.iter().map(|s| s.to_string()));
    }
    expected.sort();
    assert_eq!(loaded, expected, "programs loaded in {} mode on {}", probe.attach_mode(), arch.name());
    for absent in Syscall::ALL.into_iter().filter(|s| !arch.syscalls().contains(s)) {
        for program in [format!("sys_enter_{}", absent.name()), format!("sys_exit_{}", absent.name())] {
            assert!(probe.ebpf().program(&program).is_none(), "{program} is built for {}", arch.name());
        }
    }
}

#[test]
fn without_capabilities_badfd_says_so_in_one_line() {
    use std::os::unix::process::CommandExt;
    // As nobody: leaving uid 0 clears the effective and permitted capabilities.
    let out = std::process::Command::new(badfd_tests::badfd_path())
        .args(["trace", "--duration", "1"])
        .env("RUST_BACKTRACE", "0")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run badfd as nobody");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(error_lines.len(), 1, "one line, got:\n{stderr}");
    assert!(error_lines[0].contains("CAP_BPF") && error_lines[0].contains("run it as root"), "{stderr}");
}

#[test]
fn a_full_tracked_set_is_counted_not_silent() {
    let options = badfd::ProbeOptions {
        attach: badfd_tests::test_attach_mode(),
        follow_forks: true,
        config: config(None),
        ..badfd::ProbeOptions::default()
    };
    let mut probe = load_probe_with(&options);
    // This process is followed; the set is then filled with ids no process has.
    probe.track_pid(std::process::id()).unwrap();
    // (Threads this test binary starts meanwhile are followed too and take
    // entries of their own, so the loop ends at the first refusal, not a count.)
    let mut filled = 1u32;
    for fake in 4_000_000_000u32.. {
        if probe.track_pid(fake).is_err() {
            break;
        }
        filled += 1;
        assert!(filled <= exporter_common::TRACKED_CAPACITY, "the tracked set took more than its capacity");
    }
    let before = probe.counters().unwrap();
    let dir = TempDir::new("tracked-full");
    run_workload(&["fast", dir.path().to_str().unwrap(), "1"]);
    let after = probe.counters().unwrap();
    assert!(
        delta(&after, &before, |c| c.losses[Loss::TrackedFull as usize]) >= 1,
        "a fork of a followed process that found the set full was not counted"
    );
}

/// The thread ids of a process.
fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Starts the workload's FIFO reader, which blocks in openat for `ms`, and
/// returns it with the thread whose open the probe shows in flight.
fn blocked_fifo_reader(probe: &badfd::Probe, dir: &TempDir, ms: &str) -> (std::process::Child, u32) {
    let child = std::process::Command::new(badfd_tests::workload_path())
        .args(["fifo", dir.path().to_str().unwrap(), ms])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(tid) = tasks(child.id()).into_iter().find(|&t| probe.has_inflight_entry(t).unwrap()) {
            // Still there a moment later: blocked, not one of the loader's quick opens.
            std::thread::sleep(Duration::from_millis(50));
            if probe.has_inflight_entry(tid).unwrap() {
                return (child, tid);
            }
        }
        assert!(std::time::Instant::now() < deadline, "the FIFO reader's open never showed in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Judged by the blocked thread's own in-flight entry: the host-wide gauge
/// also moves with other processes' blocked opens (the soak runs beside the
/// host row of the kernel matrix).
#[test]
fn an_open_blocked_in_the_kernel_counts_as_in_flight() {
    let _alone = blocking_opens_alone();
    let probe = load_probe(config(None));
    let dir = TempDir::new("inflight");
    // The FIFO reader blocks in openat for 400 ms.
    let (mut child, blocked) = blocked_fifo_reader(&probe, &dir, "400");
    assert!(probe.counters().unwrap().inflight() >= 1, "the gauge does not count the blocked open");
    assert!(child.wait().unwrap().success());
    assert!(!probe.has_inflight_entry(blocked).unwrap(), "the open stayed in flight after it returned");
}

// ---------------------------------------------------------------------------
// Fairness between processes, and reaping (issue 10).
// ---------------------------------------------------------------------------

/// Anomalies the kernel decided on past the filters: streamed, or dropped and
/// counted. With a uid filter only that uid's anomalies get this far.
fn decided(c: &Counters) -> u64 {
    c.stream[Stream::Submitted as usize]
        + c.losses[Loss::SourceThrottled as usize]
        + c.losses[Loss::RingbufFull as usize]
}

/// The fairness tests' workloads share one uid, and each test's probe sees
/// every process of that uid: they take turns.
fn fairness_uid_alone() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A probe that streams only the fairness uid's anomalies into a small ring
/// buffer (about 400 events) with `source_rate` anomalies/s per process (0: off).
fn fairness_probe(source_rate: u32) -> badfd::Probe {
    let options = badfd::ProbeOptions {
        attach: badfd_tests::test_attach_mode(),
        ringbuf_bytes: 64 * 1024,
        config: Config { filter_uid: badfd_tests::FAIRNESS_UID, ..config(None) },
        ..badfd::ProbeOptions::default()
    };
    let mut probe = load_probe_with(&options);
    probe.set_source_rate(source_rate).unwrap();
    probe
}

#[test]
fn a_noisy_process_cannot_starve_a_quiet_one() {
    const NOISY: u64 = 3000;
    const QUIET: u64 = 5;
    let _alone = fairness_uid_alone();
    let uid = badfd_tests::FAIRNESS_UID.to_string();
    // A small ring buffer (about 400 events) that nobody reads until both have
    // run: the noisy process alone could fill it many times over.
    let mut probe = fairness_probe(10);
    let noisy_dir = TempDir::new("noisy");
    let quiet_dir = TempDir::new("quiet");
    let before = probe.counters().unwrap();
    let noisy = badfd_tests::UidWorkload::spawn(&["uidfail", noisy_dir.path().to_str().unwrap(), &NOISY.to_string(), &uid, "0"]);
    let noisy_pid = noisy.pid();
    assert_eq!(noisy.failures(), NOISY);
    let quiet = badfd_tests::UidWorkload::spawn(&["uidfail", quiet_dir.path().to_str().unwrap(), &QUIET.to_string(), &uid, "0"]);
    let quiet_pid = quiet.pid();
    assert_eq!(quiet.failures(), QUIET);
    let after = probe.counters().unwrap();

    let collector = Collector::start(&mut probe);
    let deadline = std::time::Instant::now() + WAIT;
    while (collector.of_pid(quiet_pid).len() as u64) < QUIET && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let quiet_events = collector.of_pid(quiet_pid);
    let noisy_events = collector.of_pid(noisy_pid);
    let throttled = delta(&after, &before, |c| c.losses[Loss::SourceThrottled as usize]);
    let full = delta(&after, &before, |c| c.losses[Loss::RingbufFull as usize]);
    eprintln!("noisy: {} streamed, {throttled} throttled, {full} dropped (ring full); quiet: {} streamed", noisy_events.len(), quiet_events.len());
    assert_eq!(quiet_events.len() as u64, QUIET, "the quiet process lost events to the noisy one");
    assert!(quiet_events.iter().all(|e| e.errno() == Some(libc::ENOENT) && e.uid == badfd_tests::FAIRNESS_UID));
    assert!(throttled > 0, "the noisy process was never throttled");
    assert_eq!(full, 0, "the ring buffer filled up although the noisy process was throttled at half");
    // Nothing silent: every anomaly of the uid was streamed or counted as dropped.
    assert_eq!(delta(&after, &before, decided), NOISY + QUIET);
    assert_eq!(noisy_events.len() as u64 + throttled + full, NOISY);
    assert_eq!(delta(&after, &before, |c| c.stream[Stream::Submitted as usize]), noisy_events.len() as u64 + QUIET);
}

#[test]
fn fairness_can_be_turned_off() {
    const COUNT: u64 = 1000;
    let _alone = fairness_uid_alone();
    let uid = badfd_tests::FAIRNESS_UID.to_string();
    let probe = fairness_probe(0);
    let dir = TempDir::new("unfair");
    let before = probe.counters().unwrap();
    let run = badfd_tests::UidWorkload::spawn(&["uidfail", dir.path().to_str().unwrap(), &COUNT.to_string(), &uid, "0"]);
    assert_eq!(run.failures(), COUNT);
    let after = probe.counters().unwrap();
    // No reader: the ring fills and the rest is dropped as ring_full, not throttled.
    assert_eq!(delta(&after, &before, |c| c.losses[Loss::SourceThrottled as usize]), 0);
    assert!(delta(&after, &before, |c| c.losses[Loss::RingbufFull as usize]) > 0);
    assert_eq!(delta(&after, &before, decided), COUNT);
}

#[test]
fn a_thread_killed_mid_open_leaves_nothing_in_flight() {
    let _alone = blocking_opens_alone();
    let probe = load_probe(config(None));
    let dir = TempDir::new("killed");
    // The FIFO reader blocks in openat for 10 s unless killed.
    let (mut child, blocked) = blocked_fifo_reader(&probe, &dir, "10000");
    let before = probe.counters().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let after = probe.counters().unwrap();
    assert!(!probe.has_inflight_entry(blocked).unwrap(), "the killed thread's open stayed in flight");
    // Accounted once: either its exit was seen (the kernel leaves with
    // -ERESTARTSYS, 512, which no program sees: counted as interrupted, not
    // as a failure) or its thread's exit reaped it.
    let openat = Syscall::Openat as usize;
    let interrupted = delta(&after, &before, |c| c.stream[Stream::Interrupted as usize]);
    let reaped = delta(&after, &before, |c| c.losses[Loss::InflightReaped as usize]);
    assert!(interrupted + reaped >= 1, "the killed open was neither seen interrupted nor reaped");
    assert_eq!(delta(&after, &before, |c| c.errnos[openat][exporter_common::ERRNO_SLOTS - 1]), 0, "a restart code counted as a failure");
}

#[test]
fn an_open_whose_exit_was_missed_is_reaped_when_its_thread_exits() {
    let mut probe = load_probe(config(None));
    // A single-threaded process (tid = pid) asleep, its loader's opens done.
    let mut child = std::process::Command::new("sleep").arg("0.5").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let tid = child.id();
    // The kernel cannot be made to miss an exit on demand (a recursion miss in
    // fentry mode does it): the entry its enter program would have written.
    probe.plant_inflight_entry(tid, 1).unwrap();
    assert!(probe.has_inflight_entry(tid).unwrap());
    let before = probe.counters().unwrap();
    assert!(child.wait().unwrap().success());
    let after = probe.counters().unwrap();
    assert!(!probe.has_inflight_entry(tid).unwrap(), "the exited thread's entry was not reaped");
    assert!(delta(&after, &before, |c| c.losses[Loss::InflightReaped as usize]) >= 1, "the reaped entry was not counted");
}

/// `--no-timing`: only the exit is hooked. The same failures stream with the
/// same fields as in the timed test above (the arguments come from the saved
/// user registers at exit), every open is still counted, and nothing is timed:
/// no entry ran, the latency histogram stays empty. On a kernel without
/// bpf_task_pt_regs the probe times opens as usual and says why.
#[test]
fn untimed_mode_streams_the_same_failures_with_only_the_exit_hooked() {
    let options = badfd::ProbeOptions {
        attach: badfd_tests::test_attach_mode(),
        timing: false,
        config: config(None),
        ..badfd::ProbeOptions::default()
    };
    let mut probe = load_probe_with(&options);
    if !kernel_has_fentry_helpers() {
        assert!(probe.timed(), "untimed programs loaded without bpf_task_pt_regs");
        let why = probe.untimed_refused().expect("the reason --no-timing was refused");
        assert!(!why.is_empty());
        return;
    }
    assert!(!probe.timed(), "refused: {:?}", probe.untimed_refused());
    assert!(probe.describe().contains("timing=off"), "{}", probe.describe());
    let loaded: Vec<String> = probe.program_stats().into_iter().map(|s| s.name).collect();
    assert!(
        // io_uring requests keep theirs in fentry mode: the request's path is
        // freed when its issue returns, so it is read at the start, untimed.
        loaded.iter().all(|name| !name.starts_with("sys_enter_") && (!name.starts_with("fentry_") || name.starts_with("fentry_io_openat"))),
        "an entry program is loaded: {loaded:?}"
    );

    let collector = Collector::start(&mut probe);
    let (before, run, events, after) = failures_streamed_exactly(&probe, &collector, "untimed");
    for e in &events {
        assert!(e.failed() && !e.slow(), "{e:?}");
        assert_eq!(e.latency_ns(), None, "an untimed event has no latency: {e:?}");
        assert_eq!(e.flags & exporter_common::EVENT_UNTIMED, exporter_common::EVENT_UNTIMED);
        assert!(e.start_ns > 0);
        assert_eq!(e.comm_lossy(), "workload");
    }
    // The arguments as the program passed them, from the registers.
    let eexist = events.iter().find(|e| e.ret == -(libc::EEXIST as i64)).unwrap();
    assert_eq!(eexist.open_flags, (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u64);
    assert_eq!(eexist.mode, 0o600);
    let einval = events.iter().find(|e| e.ret == -(libc::EINVAL as i64)).unwrap();
    assert_eq!(einval.syscall, Syscall::Openat2);
    assert_eq!(einval.open_flags, 1 << 40, "openat2 flags come from struct open_how");
    assert_made_every_open_syscall_of_the_architecture(&probe, &run);
    if let Some(creat) = events.iter().find(|e| e.syscall == Syscall::Creat) {
        assert_eq!((creat.mode, creat.dirfd), (0o640, libc::AT_FDCWD));
    }
    let relative = events.iter().find(|e| e.path == b"missing-relative").unwrap();
    assert!(relative.dirfd >= 3, "relative open carries its real dirfd, got {}", relative.dirfd);
    let long = events.iter().find(|e| e.path.len() == 4000).expect("the 4000-byte path arrives whole");
    assert!(!long.path_truncated());

    // Every open counted, none timed: this probe's own maps saw no entry.
    let openat = Syscall::Openat as usize;
    let made_ok = run.manifest.iter().filter(|r| r.syscall == "openat" && r.ret >= 0).count() as u64;
    let made_failed = run.manifest.iter().filter(|r| r.syscall == "openat" && r.ret < 0).count() as u64;
    assert!(delta(&after, &before, |c| c.opens[openat][RESULT_OK]) >= made_ok);
    assert!(delta(&after, &before, |c| c.opens[openat][RESULT_FAILED]) >= made_failed);
    assert!(delta(&after, &before, |c| c.errnos[openat][libc::ENOENT as usize]) >= 1);
    assert_eq!(after.stream[Stream::Entered as usize], 0, "an entry program ran");
    assert_eq!(after.latency.iter().flatten().sum::<u64>(), 0, "an open was timed");
    assert_eq!(after.losses[Loss::ExitWithoutEnter as usize], 0, "an exit without an entry is the design here, not a loss");
    assert_eq!(probe.inflight_len().unwrap(), 0);
}

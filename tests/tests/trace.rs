//! `badfd trace` end to end (issue 5): the real binary, the real kernel, real
//! commands. Run as root; a test that cannot load BPF fails, never skips.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use badfd::{
    pipeline::{
        resolve::{Resolution, ResolvedPath},
        Anomaly,
    },
    sinks::terminal::{table, text, TableStyle},
    OpenEvent,
};
use badfd_tests::{badfd_path, load_probe, workload_path, Collector, OpenRecord, TempDir};
use base64::Engine as _;
use exporter_common::{Config, Stream, EVENT_FAILED, EVENT_SLOW, PATH_MAX, SLOW_DISABLED};
use serde_json::Value;

/// `badfd trace ARGS -- COMMAND`, JSON to a file, summary on stderr.
struct TraceRun {
    output: Output,
    /// The anomaly lines (the diagnosis, the output's last line, apart).
    lines: Vec<Value>,
    /// `{"diagnosis": [...], "found_later": N, "exit": ...}` (tests/tests/diagnosis.rs).
    #[allow(dead_code)]
    diagnosis: Value,
}

impl TraceRun {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The `N` of a summary line `  NAME   N  meaning`.
    fn summary_count(&self, errno: &str) -> Option<u64> {
        self.stderr().lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(errno)).then(|| words.next()?.parse().ok())?
        })
    }

    /// (anomalies, failed, slow) from `badfd trace: N anomalies (F failed, S slow) ...`.
    fn summary_totals(&self) -> (u64, u64, u64) {
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.starts_with("badfd trace: "))
            .unwrap_or_else(|| panic!("no summary in stderr:\n{stderr}"));
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1], numbers[2])
    }
}

fn trace(out_dir: &Path, args: &[&str], command: &[&str]) -> TraceRun {
    let json = out_dir.join("out.jsonl");
    let output = Command::new(badfd_path())
        .arg("trace")
        .args(args)
        .arg("--json")
        .arg("-o")
        .arg(&json)
        .arg("--")
        .args(command)
        // glibc looks for locale files that Debian does not ship (ENOENT) when a
        // UTF-8 locale is set: real anomalies, but not this test's.
        .env("LC_ALL", "C")
        // cargo test sets it; the loader would try each of its directories first.
        .env_remove("LD_LIBRARY_PATH")
        .env("BADFD_LOG", "warn")
        .output()
        .expect("run badfd");
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let diagnosis = lines.pop().unwrap_or(Value::Null);
    assert!(diagnosis.get("diagnosis").is_some(), "the last line of --json is the diagnosis: {diagnosis}\n{}", String::from_utf8_lossy(&output.stderr));
    TraceRun { output, lines, diagnosis }
}

/// The exact bytes of a path field (base64 when not UTF-8).
fn path_bytes(line: &Value, field: &str) -> Vec<u8> {
    match line.get(format!("{field}_base64")) {
        Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap(),
        None => line[field].as_str().unwrap().as_bytes().to_vec(),
    }
}

fn multiset<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn str_of(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Opens that fail, made by this test process (never part of a traced command)
/// until `stop` is set.
fn outsider(dir: &Path, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<usize> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(std::fs::File::open(dir.join(format!("outsider-{n}"))).is_err());
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

#[test]
fn follows_the_command_its_children_grandchildren_and_threads_only() {
    let dir = TempDir::new("trace-follow");
    let out = TempDir::new("trace-follow-out");
    let d = str_of(dir.path());
    std::fs::create_dir(dir.path().join("w")).unwrap();
    let script = format!(
        "echo $$ > {d}/shell-pid
         true 2>/dev/null < {d}/missing-by-shell
         cat {d}/missing-child 2>/dev/null
         ( cat {d}/missing-in-subshell 2>/dev/null )
         sh -c 'cat {d}/missing-grandchild 2>/dev/null; {workload} failures {d}/w > {d}/manifest'
         cat {d}/missing-after 2>/dev/null &
         wait
         exit 7",
        workload = workload_path().display()
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outsider = outsider(dir.path(), stop.clone());
    // --all-failures: this test is about which processes are followed, and
    // some of the workload's failures are found later (it opens names it
    // failed on elsewhere), which trace hides by default.
    let run = trace(out.path(), &["--err", "--all-failures"], &["sh", "-c", &script]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outsider_opens = outsider.join().unwrap();
    assert!(outsider_opens > 10, "the outsider ran during the trace");

    assert_eq!(run.output.status.code(), Some(7), "exit status passes through; stderr:\n{}", run.stderr());
    let shell_pid: u64 = std::fs::read_to_string(dir.path().join("shell-pid")).unwrap().trim().parse().unwrap();
    let manifest_text = std::fs::read_to_string(dir.path().join("manifest")).unwrap();
    let mut manifest_lines = manifest_text.lines();
    let begin_ns: u64 = manifest_lines.next().unwrap().strip_prefix("begin_ns ").unwrap().parse().unwrap();
    let manifest: Vec<OpenRecord> = manifest_lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let workload_pid = manifest[0].tid as u64;

    // Nothing from outside the command's tree.
    for l in &run.lines {
        let path = String::from_utf8_lossy(&path_bytes(l, "path")).into_owned();
        assert!(!path.contains("outsider"), "an open of another process was shown: {l}");
    }

    // The workload (a grandchild, with threads): exactly its failures, each
    // with its own thread id, syscall, errno, dirfd and path.
    let workload_lines: Vec<&Value> = run.lines.iter().filter(|l| l["comm"] == "workload").collect();
    for l in &workload_lines {
        assert_eq!(l["pid"].as_u64(), Some(workload_pid), "{l}");
        assert!(l["monotonic_ns"].as_u64().unwrap() >= begin_ns, "an open of the workload's start-up: {l}");
    }
    let seen = multiset(workload_lines.iter().map(|l| {
        (
            l["tid"].as_u64().unwrap() as u32,
            l["syscall"].as_str().unwrap().to_string(),
            l["ret"].as_i64().unwrap(),
            l["dirfd"].as_i64().unwrap() as i32,
            path_bytes(l, "path"),
        )
    }));
    let want = multiset(manifest.iter().filter(|r| r.ret < 0).map(|r| {
        let mut path = r.path.clone();
        path.truncate(PATH_MAX - 1);
        (r.tid, r.syscall.clone(), r.ret, r.dirfd, path)
    }));
    assert_eq!(seen, want, "the workload's lines differ from its failures");
    let thread_ids: std::collections::BTreeSet<u64> =
        workload_lines.iter().map(|l| l["tid"].as_u64().unwrap()).filter(|&t| t != workload_pid).collect();
    assert!(thread_ids.len() >= 3, "opens of the workload's threads: {thread_ids:?}");

    // The shell, its children and grandchildren: exactly these, no others.
    // (The shell's PATH searches, failed execs found later by the exec that
    // succeeded, are probes: checked as such, then set aside.)
    let probes: Vec<&Value> = run.lines.iter().filter(|l| l["comm"] != "workload" && l["found_later"] == true).collect();
    for l in &probes {
        assert_eq!(l["syscall"], "execve", "only exec probes of the shell's PATH search are found later: {l}");
    }
    let others: Vec<&Value> = run.lines.iter().filter(|l| l["comm"] != "workload" && l["found_later"] != true).collect();
    let seen = multiset(others.iter().map(|l| {
        (l["comm"].as_str().unwrap().to_string(), l["errno"].as_str().unwrap().to_string(), l["resolved_path"].as_str().unwrap().to_string())
    }));
    let want = multiset(
        [
            ("sh", "missing-by-shell"),
            ("cat", "missing-child"),
            ("cat", "missing-in-subshell"),
            ("cat", "missing-grandchild"),
            ("cat", "missing-after"),
        ]
        .map(|(comm, name)| (comm.to_string(), "ENOENT".to_string(), format!("{d}/{name}"))),
    );
    assert_eq!(seen, want, "lines of the shell's tree:\n{:#?}", others);
    let pid_of = |name: &str| others.iter().find(|l| l["path"].as_str().unwrap().ends_with(name)).unwrap()["pid"].as_u64().unwrap();
    assert_eq!(pid_of("missing-by-shell"), shell_pid, "the command itself");
    let cat_pids: std::collections::BTreeSet<u64> =
        ["missing-child", "missing-in-subshell", "missing-grandchild", "missing-after"].iter().map(|n| pid_of(n)).collect();
    assert_eq!(cat_pids.len(), 4, "four cat processes");
    assert!(!cat_pids.contains(&shell_pid));

    // The summary counts what was shown.
    let total = run.lines.len() as u64;
    assert_eq!(run.summary_totals(), (total, total, 0), "{}", run.stderr());
    let enoent = run.lines.iter().filter(|l| l["errno"] == "ENOENT").count() as u64;
    assert_eq!(run.summary_count("ENOENT"), Some(enoent), "{}", run.stderr());
    for errno in ["ENOTDIR", "EISDIR", "EEXIST", "ELOOP", "ENAMETOOLONG", "EBADF", "EINVAL"] {
        assert_eq!(run.summary_count(errno), Some(1), "{errno} in\n{}", run.stderr());
    }
}

#[test]
fn slow_fifo_open_is_shown_with_its_latency_and_quantiles() {
    let dir = TempDir::new("trace-fifo");
    let out = TempDir::new("trace-fifo-out");
    let run = trace(out.path(), &["--slow", "100ms"], &[workload_path().to_str().unwrap(), "fifo", str_of(dir.path()), "400"]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let stdout = String::from_utf8(run.output.stdout.clone()).unwrap();
    let begin_ns: u64 = stdout.lines().next().unwrap().strip_prefix("begin_ns ").unwrap().parse().unwrap();
    let lines: Vec<&Value> = run.lines.iter().filter(|l| l["monotonic_ns"].as_u64().unwrap() >= begin_ns).collect();

    let fifo = format!("{}/fifo", str_of(dir.path()));
    let slow: Vec<&&Value> = lines.iter().filter(|l| l["slow"] == true).collect();
    assert_eq!(slow.len(), 1, "exactly the FIFO reader is slow: {slow:#?}");
    let s = slow[0];
    assert_eq!(s["path"], fifo.as_str());
    assert_eq!(s["failed"], false);
    assert_eq!(s["errno"], Value::Null);
    assert!(s["ret"].as_i64().unwrap() >= 0);
    assert_eq!(s["flags_names"], "O_RDONLY");
    let latency = s["latency_ns"].as_u64().unwrap();
    // The reader blocks from its open until the writer opens, 3/4 of 400 ms later.
    assert!((250_000_000..10_000_000_000).contains(&latency), "{latency} ns");

    let failed: Vec<&&Value> = lines.iter().filter(|l| l["failed"] == true).collect();
    assert_eq!(failed.len(), 10, "the other thread's failures: {failed:#?}");
    assert!(failed.iter().all(|l| l["errno"] == "ENOENT" && l["slow"] == false));
    assert_ne!(failed[0]["tid"], s["tid"], "different threads");

    let stderr = run.stderr();
    let quantiles = stderr.lines().find(|l| l.starts_with("slow opens: 1 (p50 ")).unwrap_or_else(|| panic!("{stderr}"));
    // One slow open: every quantile is its latency, to the histogram's 3 digits.
    for (name, value) in quantiles_of(quantiles) {
        let error = (value - latency as f64).abs() / latency as f64;
        assert!(error < 0.01, "{name} {value} ns vs {latency} ns in {quantiles}");
    }
}

/// `[("p50", ns), ...]` from `slow opens: N (p50 12.3ms, p90 ..., max ...)`.
fn quantiles_of(line: &str) -> Vec<(String, f64)> {
    let inner = line.split_once('(').unwrap().1.trim_end_matches(')');
    let parsed: Vec<(String, f64)> = inner
        .split(", ")
        .map(|part| {
            let (name, value) = part.split_once(' ').unwrap();
            let (number, scale) = [("ns", 1.0), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)]
                .iter()
                .find_map(|(unit, scale)| value.strip_suffix(unit).map(|n| (n, *scale)))
                .unwrap_or_else(|| panic!("no unit in {value}"));
            (name.to_string(), number.parse::<f64>().unwrap() * scale)
        })
        .collect();
    assert_eq!(parsed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["p50", "p90", "p99", "max"]);
    parsed
}

#[test]
fn errno_and_path_prefix_filters_hide_the_rest() {
    let dir = TempDir::new("trace-filters");
    let out = TempDir::new("trace-filters-out");
    let d = str_of(dir.path());
    for sub in ["a", "b", "ab"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("file"), b"").unwrap();
    }
    // Absolute programs: a PATH search's failed execs would be hidden by the filters too.
    let script = format!(
        "/bin/cat {d}/a/missing {d}/a/file/x {d}/b/file/x {d}/ab/file/x 2>/dev/null; exit 0"
    );
    let run = trace(out.path(), &["--errno", "ENOTDIR", "--path-prefix", &format!("{d}/a/")], &["/bin/sh", "-c", &script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let paths: Vec<&str> = run.lines.iter().map(|l| l["resolved_path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec![format!("{d}/a/file/x")]);
    assert!(run.stderr().contains("hidden by --errno/--path-prefix: 3\n"), "{}", run.stderr());
}

#[test]
fn uid_filter_by_name_keeps_only_that_user() {
    let dir = TempDir::new("trace-uid");
    let out = TempDir::new("trace-uid-out");
    let d = str_of(dir.path());
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "cat {d}/as-root 2>/dev/null; setpriv --reuid=65534 --regid=65534 --clear-groups cat {d}/as-nobody 2>/dev/null; exit 0"
    );
    let run = trace(out.path(), &["--err", "--uid", "nobody"], &["sh", "-c", &script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let lines: Vec<(&str, u64)> =
        run.lines.iter().map(|l| (l["resolved_path"].as_str().unwrap(), l["uid"].as_u64().unwrap())).collect();
    assert_eq!(lines, vec![(format!("{d}/as-nobody").as_str(), 65534)]);
}

/// The keys of the TRACKED map of the running badfd `pid`, found through the
/// map ids in its fdinfo.
fn tracked_set_of(pid: u32) -> std::collections::BTreeSet<u32> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(entry.unwrap().path()) else { continue };
        let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")) else { continue };
        let data = aya::maps::MapData::from_id(id.trim().parse().unwrap()).unwrap();
        if data.info().unwrap().name_as_str() != Some("TRACKED") {
            continue;
        }
        let map: aya::maps::HashMap<_, u32, u8> = aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).unwrap();
        return map.keys().map(|k| k.unwrap()).collect();
    }
    panic!("badfd {pid} holds no TRACKED map");
}

#[test]
fn tracked_set_forgets_exited_processes_and_threads() {
    let dir = TempDir::new("trace-tracked");
    let out = TempDir::new("trace-tracked-out");
    let d = str_of(dir.path());
    // The workload starts threads (each one passes the fork tracepoint) and
    // ends; then the shell says it is ready and becomes `sleep`.
    let script = format!(
        "{w} failures {d}/w > /dev/null; mkdir {d}/w2; echo $$ > {d}/ready.tmp; mv {d}/ready.tmp {d}/ready; exec sleep 30",
        w = workload_path().display()
    );
    std::fs::create_dir(dir.path().join("w")).unwrap();
    let mut badfd = Command::new(badfd_path())
        .args(["trace", "--err", "--no-summary", "-o"])
        .arg(out.path().join("out.jsonl"))
        .args(["--", "sh", "-c", &script])
        .env("BADFD_LOG", "warn")
        .env_remove("LD_LIBRARY_PATH")
        .spawn()
        .unwrap();
    let ready = dir.path().join("ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let shell: u32 = std::fs::read_to_string(&ready).expect("the script got ready").trim().parse().unwrap();
    // `mv` made the file before it exited: give its exit a moment to reach
    // the kernel's sched_process_exit program.
    let want = std::collections::BTreeSet::from([shell]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tracked = tracked_set_of(badfd.id());
    while tracked != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        tracked = tracked_set_of(badfd.id());
    }
    // SIGTERM to badfd goes on to the command.
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(badfd.id() as i32, libc::SIGTERM) }, 0);
    let status = badfd.wait().unwrap();
    assert_eq!(tracked, want, "only the live command stays tracked");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "the command was terminated through badfd");
}

#[test]
fn exit_status_of_a_killed_or_missing_command() {
    let out = TempDir::new("trace-exit");
    let run = trace(out.path(), &["--err"], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(run.output.status.code(), Some(128 + libc::SIGTERM), "{}", run.stderr());

    let run = trace(out.path(), &["--err"], &["/no/such/program"]);
    assert_eq!(run.output.status.code(), Some(127));
    assert!(run.stderr().contains("cannot run `/no/such/program`: No such file or directory"), "{}", run.stderr());
}

/// Waits for a line on `reader` that satisfies `want`; panics after `timeout`.
fn wait_for_line(reader: &mut impl BufRead, want: impl Fn(&str) -> bool, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(Instant::now() < deadline, "no such line before the deadline");
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("output ended before the line came");
        }
        if want(&line) {
            return line;
        }
    }
}

#[test]
fn comm_filter_is_decided_in_the_kernel() {
    let dir = TempDir::new("trace-comm");
    let cat = PathBuf::from("/bin/cat");
    // exec names the process after the file it ran: two names for cat.
    symlink(&cat, dir.path().join("badfd-wanted")).unwrap();
    symlink(&cat, dir.path().join("badfd-other")).unwrap();
    // Runs cat under `name` on a missing file; returns its pid.
    let run_as = |name: &str, file: &str| -> u32 {
        let mut child = Command::new(dir.path().join(name))
            .arg(dir.path().join(file))
            .env("LC_ALL", "C")
            .env_remove("LD_LIBRARY_PATH")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(!child.wait().unwrap().success());
        child.id()
    };

    // The binary, host-wide, table to a pipe: no colour, whole paths.
    let mut badfd = Command::new(badfd_path())
        .args(["trace", "--err", "--comm", "badfd-wanted", "--duration", "20s"])
        .env("BADFD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(badfd.stdout.take().unwrap());
    let header = wait_for_line(&mut stdout, |l| l.starts_with("TIME"), Duration::from_secs(20));
    assert!(header.contains(" PID COMM ") && header.trim_end().ends_with("FILE"), "{header}");
    assert!(!header.contains('\x1b'), "no colour into a pipe");
    run_as("badfd-other", "not-shown");
    run_as("badfd-wanted", "shown");
    let row = wait_for_line(&mut stdout, |l| l.contains("shown"), Duration::from_secs(10));
    assert!(row.contains(" badfd-wanted ") && row.contains("ENOENT No such file or directory"), "{row}");
    assert!(row.trim_end().ends_with(&format!("{}/shown", str_of(dir.path()))), "{row}");
    // Ctrl-C: a summary, and exit 0.
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::kill(badfd.id() as i32, libc::SIGINT) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = badfd.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut badfd.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?} {stderr}");
    assert!(!rest.contains("not-shown"), "{rest}");
    assert!(stderr.contains("badfd trace: 1 anomalies (1 failed, 0 slow)"), "{stderr}");

    // In the kernel: the other name's failure is counted as filtered, never sent.
    let mut comm = [0u8; 16];
    comm[..12].copy_from_slice(b"badfd-wanted");
    let mut probe = load_probe(Config { slow_threshold_ns: SLOW_DISABLED, filter_comm: comm, ..Config::DEFAULT });
    let collector = Collector::start(&mut probe);
    let before = probe.counters().unwrap().stream[Stream::Filtered as usize];
    let other = run_as("badfd-other", "not-sent");
    let wanted = run_as("badfd-wanted", "sent");
    let deadline = Instant::now() + Duration::from_secs(5);
    while collector.of_pid(wanted).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    let filtered = probe.counters().unwrap().stream[Stream::Filtered as usize] - before;
    assert!(filtered >= 1, "the other name's failure was filtered in the kernel");
    assert!(collector.of_pid(other).is_empty(), "an event of the other name crossed to userspace");
    let sent = collector.of_pid(wanted);
    assert!(sent.iter().any(|e| e.path.ends_with(b"/sent")), "{sent:?}");
    assert!(sent.iter().all(|e| e.comm_lossy() == "badfd-wanted"));
}

fn golden_anomaly(path: &str, ret: i64, latency_ns: u64, slow: bool, comm: &[u8]) -> Anomaly {
    let mut c = [0u8; 16];
    c[..comm.len()].copy_from_slice(comm);
    let mut flags = if ret < 0 { EVENT_FAILED } else { 0 };
    if slow {
        flags |= EVENT_SLOW;
    }
    let event = OpenEvent {
        start_ns: 1,
        latency_ns,
        cgroup_id: 1,
        ret,
        pid: 31337,
        tid: 31337,
        flags,
        comm: c,
        path: path.as_bytes().to_vec(),
        ..Default::default()
    };
    let resolved = ResolvedPath { path: path.as_bytes().to_vec(), how: Resolution::Absolute };
    // 2023-11-14T22:13:20.123Z
    Anomaly::new(event, resolved, 1_700_000_000_123_000_000)
}

#[test]
fn table_rows_are_fixed_width_with_paths_elided_at_the_front() {
    let rows = [
        golden_anomaly("/etc/app/config/very/deep/name.conf", -2, 12_345, false, b"cat"),
        golden_anomaly("/srv/data/a-rather-long-directory-name/another-level/yet-another/file.db", -13, 850, false, b"postgres"),
        golden_anomaly("/tmp/fifo", 3, 412_000_000, true, b"reader"),
        golden_anomaly("/x/\x1b[31mevil\nname", -36, 2_500_000_000, true, b"a-fifteen-chars"),
    ];
    let style = TableStyle { width: Some(100), wide: false, color: false };
    let got: Vec<String> = std::iter::once(table::header(&style))
        .chain(rows.iter().map(|a| table::row(a, &chrono::Utc, &style)))
        .collect();
    let want = [
        "TIME             PID COMM            LATENCY RESULT                   FILE",
        "22:13:20.123   31337 cat              12.3µs ENOENT No such file or … …/config/very/deep/name.conf",
        "22:13:20.123   31337 postgres          850ns EACCES Permission denied …/yet-another/file.db",
        "22:13:20.123   31337 reader            412ms slow                     /tmp/fifo",
        "22:13:20.123   31337 a-fifteen-chars   2.50s ENAMETOOLONG File name … /x/\\x1b[31mevil\\nname",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
    for line in &got {
        assert!(text::display_width(line) <= 100, "{line}");
    }

    // Wide: whole paths, the full meaning column.
    let wide = TableStyle { width: Some(100), wide: true, color: false };
    let long = table::row(&rows[1], &chrono::Utc, &wide);
    assert_eq!(
        long,
        "22:13:20.123   31337 postgres          850ns EACCES Permission denied         /srv/data/a-rather-long-directory-name/another-level/yet-another/file.db"
    );
    // At 80 columns the name alone stays visible.
    let narrow = TableStyle { width: Some(80), wide: false, color: false };
    assert_eq!(
        table::row(&rows[0], &chrono::Utc, &narrow),
        "22:13:20.123   31337 cat              12.3µs ENOENT No such… …/deep/name.conf"
    );
}

/// The live table in a real terminal: tmux runs badfd in a pane, and the pane's
/// content (with colour codes) is read back.
#[test]
fn renders_in_a_terminal_under_tmux() {
    let tmux = |args: &[&str], socket: &str| -> Output {
        Command::new("tmux").arg("-L").arg(socket).args(args).output().unwrap_or_else(|e| {
            panic!("tmux is needed for this test ({e}); scripts/setup.sh --test installs it")
        })
    };
    let dir = TempDir::new("trace-tmux");
    let socket = format!("badfd-test-{}", std::process::id());
    let done = dir.path().join("done");
    let started = tmux(&["new-session", "-d", "-x", "90", "-y", "40", "-s", "t"], &socket);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let command = format!(
        "env -u LD_LIBRARY_PATH LC_ALL=C BADFD_LOG=warn {} trace --err -- sh -c 'sleep 0.5; cat {}/deep/missing.conf 2>/dev/null; exit 3'; echo \"exit=$?\" > {}",
        badfd_path().display(),
        str_of(dir.path()),
        done.display()
    );
    tmux(&["send-keys", "-t", "t", &command, "Enter"], &socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let capture = tmux(&["capture-pane", "-p", "-e", "-J", "-t", "t", "-S", "-100"], &socket);
    tmux(&["kill-server"], &socket);
    let pane = String::from_utf8_lossy(&capture.stdout).into_owned();
    assert_eq!(std::fs::read_to_string(&done).unwrap_or_default().trim(), "exit=3", "pane:\n{pane}");
    let header = pane.lines().find(|l| l.contains("TIME") && l.contains("RESULT")).unwrap_or_else(|| panic!("no header:\n{pane}"));
    assert!(header.contains("\x1b[1m"), "bold header on a terminal: {header:?}");
    let row = pane
        .lines()
        .find(|l| l.contains("missing.conf") && l.contains("ENOENT"))
        .unwrap_or_else(|| panic!("no row:\n{pane}"));
    assert!(row.contains("\x1b[31mENOENT"), "errno in red: {row:?}");
    assert!(row.contains(" cat "), "{row:?}");
    // 90 columns: the path is elided at the front and the row does not wrap.
    assert!(row.contains("…/deep/") && row.ends_with("missing.conf"), "{row:?}");
    assert!(!row.contains(&format!("{}/deep", str_of(dir.path()))), "{row:?}");
    assert!(text::display_width(&strip_ansi(row)) <= 90, "{row:?}");
    assert!(pane.contains("badfd trace: 1 anomalies (1 failed, 0 slow)"), "summary:\n{pane}");
}

/// `s` without ANSI CSI sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `-u USER` runs the command as that user, as strace -u does: a file only
/// root may read fails with EACCES for it (as root it would not), the files
/// it creates are its own, and every event carries its uid; under sudo
/// without -u, one line says the command runs as root.
#[test]
fn run_as_user_reproduces_permission_errors() {
    let dir = TempDir::new("trace-run-as");
    let out = TempDir::new("trace-run-as-out");
    let d = str_of(dir.path());
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::write(dir.path().join("secret"), "root only").unwrap();
    std::fs::set_permissions(dir.path().join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let script = format!("cat {d}/secret; touch {d}/created; exit 0");

    let run = trace(out.path(), &["-x", "-u", "nobody"], &["sh", "-c", &script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let failures: Vec<(&str, &str, u64)> = run
        .lines
        .iter()
        .map(|l| (l["resolved_path"].as_str().unwrap(), l["errno"].as_str().unwrap(), l["uid"].as_u64().unwrap()))
        .collect();
    assert_eq!(failures, vec![(format!("{d}/secret").as_str(), "EACCES", 65534)], "{}", run.stderr());
    let created = std::fs::metadata(dir.path().join("created")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&created), 65534, "the command's files are the user's");
    assert!(!run.stderr().contains("runs as root"), "{}", run.stderr());

    // As root (badfd's own identity) the same read succeeds: nothing to show;
    // under sudo badfd says why.
    std::fs::remove_file(dir.path().join("created")).unwrap();
    let json = out.path().join("root.jsonl");
    let output = Command::new(badfd_path())
        .args(["trace", "-x", "--json", "-o", str_of(&json), "--", "sh", "-c", &script])
        .env("LC_ALL", "C")
        .env_remove("LD_LIBRARY_PATH")
        .env("BADFD_LOG", "warn")
        .env("SUDO_USER", "nobody")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines = std::fs::read_to_string(&json).unwrap();
    assert_eq!(lines.lines().count(), 1, "only the diagnosis line: as root nothing fails\n{lines}");
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("runs as root")).collect();
    assert_eq!(said, vec!["badfd trace: the command runs as root (badfd runs under sudo), so permission errors do not reproduce; -u nobody runs it as nobody"]);

    let bad = Command::new(badfd_path()).args(["trace", "-u", "no-such-user-here", "--", "true"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no user `no-such-user-here`"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// `--all` shows successful opens too (opensnoop's view), marked neither
/// failed nor slow, beside the failures; the summary counts them apart.
#[test]
fn all_shows_successful_opens_of_the_command() {
    let dir = TempDir::new("trace-all");
    let out = TempDir::new("trace-all-out");
    let d = str_of(dir.path());
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let script = format!("cat {d}/app.conf {d}/app.conf {d}/absent.conf > /dev/null 2>&1; exit 0");
    let run = trace(out.path(), &["--all", "--slow", "0"], &["sh", "-c", &script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let ours: Vec<(&str, bool, bool, bool)> = run
        .lines
        .iter()
        .filter(|l| l["resolved_path"].as_str().unwrap().starts_with(d))
        .map(|l| {
            let path = l["resolved_path"].as_str().unwrap();
            (&path[d.len()..], l["failed"].as_bool().unwrap(), l["slow"].as_bool().unwrap(), l["ret"].as_i64().unwrap() >= 0)
        })
        .collect();
    assert_eq!(
        ours,
        vec![("/app.conf", false, false, true), ("/app.conf", false, false, true), ("/absent.conf", true, false, false)],
        "{}",
        run.stderr()
    );
    // The loader's and sh's own successful opens are shown too.
    let opened = run.lines.iter().filter(|l| !l["failed"].as_bool().unwrap()).count();
    assert!(opened > 2, "{opened}");
    assert!(run.stderr().contains(&format!("successful opens shown (--all): {opened}\n")), "{}", run.stderr());

    let both = Command::new(badfd_path()).args(["trace", "--all", "--err"]).output().unwrap();
    assert!(!both.status.success(), "--all and --err exclude each other");
}

/// The JSON line carries the opener's parent pid and effective uid, from the
/// kernel at the time of the open, and its executable, read as the event
/// arrived (the shell still runs then; the failure is written a found-later
/// window later).
#[test]
fn json_lines_carry_the_parent_pid_euid_and_executable() {
    let dir = TempDir::new("trace-ppid");
    let out = TempDir::new("trace-ppid-out");
    let d = str_of(dir.path());
    // sh forks cat (the `; exit 0` keeps it from exec'ing cat in its place).
    // `read` is a regular builtin: its failed redirection does not end the shell.
    let script = format!("echo $$ > {d}/sh.pid; cat {d}/absent 2>/dev/null; read x < {d}/absent-sh 2>/dev/null; sleep 1; exit 0");
    let run = trace(out.path(), &["-x"], &["sh", "-c", &script]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let sh: u64 = std::fs::read_to_string(dir.path().join("sh.pid")).unwrap().trim().parse().unwrap();
    let cat: Vec<(u64, u64)> = run
        .lines
        .iter()
        .filter(|l| l["resolved_path"].as_str() == Some(&format!("{d}/absent")))
        .map(|l| (l["ppid"].as_u64().unwrap(), l["pid"].as_u64().unwrap()))
        .collect();
    assert_eq!(cat.len(), 1, "{:?}", run.lines);
    assert_eq!(cat[0].0, sh, "cat's parent is the shell");
    assert_ne!(cat[0].1, sh);
    let shell: Vec<&Value> = run.lines.iter().filter(|l| l["resolved_path"].as_str() == Some(&format!("{d}/absent-sh"))).collect();
    assert_eq!(shell.len(), 1, "{:?}", run.lines);
    assert_eq!(shell[0]["pid"].as_u64(), Some(sh));
    let sh_exe = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(shell[0]["executable"].as_str(), sh_exe.to_str(), "{}", shell[0]);
    assert_eq!((shell[0]["uid"].as_u64(), shell[0]["euid"].as_u64()), (Some(0), Some(0)));
}

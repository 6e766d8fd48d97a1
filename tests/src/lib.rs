//! Shared pieces of badfd's kernel tests: the workload's manifest format, a
//! probe loader that fails loudly, and an event collector.
//!
//! Every kernel test loads the real eBPF program into this machine's kernel. A
//! test that cannot load it panics with the reason: it never skips.

pub mod kernel_bench;
pub mod otlp_receiver;

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use badfd::{AttachPreference, OpenEvent, Probe, ProbeOptions};
use exporter_common::Config;
use serde::{Deserialize, Serialize};

/// One open the workload made, as it saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecord {
    pub tid: u32,
    pub syscall: String,
    pub dirfd: i32,
    pub path: Vec<u8>,
    pub flags: u64,
    pub mode: u32,
    /// fd, or -errno.
    pub ret: i64,
}

/// The attach mode kernel tests use: `BADFD_TEST_ATTACH` (auto, fentry,
/// tracepoint), so the kernel matrix can run the suite in each mode.
pub fn test_attach_mode() -> AttachPreference {
    match std::env::var("BADFD_TEST_ATTACH").as_deref() {
        Ok("fentry") => AttachPreference::Fentry,
        Ok("tracepoint") => AttachPreference::Tracepoint,
        Ok("auto") | Err(_) => AttachPreference::Auto,
        Ok(other) => panic!("BADFD_TEST_ATTACH={other}: expected auto, fentry or tracepoint"),
    }
}

/// Loads and attaches the probe, or panics saying why: a kernel test that
/// cannot load BPF fails.
pub fn load_probe(config: Config) -> Probe {
    load_probe_with(&ProbeOptions { attach: test_attach_mode(), config, ..ProbeOptions::default() })
}

/// As `load_probe`, with options of the test's own (attach mode included).
pub fn load_probe_with(options: &ProbeOptions) -> Probe {
    match Probe::load(options) {
        Ok(p) => p,
        Err(e) => panic!("kernel test could not load badfd's BPF program: {e}"),
    }
}

/// Collects every event from the ring buffer on a thread of its own.
pub struct Collector {
    events: Arc<Mutex<Vec<OpenEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn start(probe: &mut Probe) -> Collector {
        Collector::start_with_interval(probe, Duration::from_millis(5))
    }

    /// As `start`, reading the ring buffer every `interval` (a slow reader).
    pub fn start_with_interval(probe: &mut Probe, interval: Duration) -> Collector {
        let mut reader = probe.take_events().expect("take the event ring buffer");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let events = events.clone();
            let stop = stop.clone();
            std::thread::spawn(move || loop {
                let done = stop.load(Ordering::Acquire);
                let mut batch = Vec::new();
                reader.drain(|bytes| batch.push(OpenEvent::decode(bytes).expect("every event decodes")));
                events.lock().unwrap().extend(batch);
                if done {
                    break;
                }
                std::thread::sleep(interval);
            })
        };
        Collector { events, stop, thread: Some(thread) }
    }

    /// Every event seen so far.
    pub fn all(&self) -> Vec<OpenEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Events of process `pid` seen so far.
    pub fn of_pid(&self, pid: u32) -> Vec<OpenEvent> {
        self.events.lock().unwrap().iter().filter(|e| e.pid == pid).cloned().collect()
    }

    /// Waits until the run's scenario has at least `count` events (or `timeout`
    /// passes), then a little longer so that any extra event would show.
    pub fn wait_for(&self, run: &WorkloadRun, count: usize, timeout: Duration) -> Vec<OpenEvent> {
        let deadline = Instant::now() + timeout;
        while run.scenario_events(self.of_pid(run.pid)).len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(150));
        run.scenario_events(self.of_pid(run.pid))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("badfd-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished workload run: its pid and the opens it made.
pub struct WorkloadRun {
    pub pid: u32,
    /// CLOCK_MONOTONIC ns when the workload began its scenario: opens before it
    /// are the dynamic loader's and the runtime's, not the scenario's.
    pub begin_ns: u64,
    pub manifest: Vec<OpenRecord>,
}

impl WorkloadRun {
    /// Keeps the events of this run's scenario.
    pub fn scenario_events(&self, events: Vec<OpenEvent>) -> Vec<OpenEvent> {
        events.into_iter().filter(|e| e.pid == self.pid && e.start_ns >= self.begin_ns).collect()
    }

    /// The opens that failed.
    pub fn failures(&self) -> Vec<&OpenRecord> {
        self.manifest.iter().filter(|r| r.ret < 0).collect()
    }
}

/// Runs the workload binary with `args` and waits for it.
pub fn run_workload(args: &[&str]) -> WorkloadRun {
    let child = Command::new(workload_path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the workload");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the workload");
    workload_run(pid, args, out)
}

/// The run of a finished workload from its output: it must have succeeded and
/// printed `begin_ns` and then its manifest.
pub fn workload_run(pid: u32, args: &[&str], out: std::process::Output) -> WorkloadRun {
    assert!(out.status.success(), "workload {args:?} failed: {:?}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let begin_ns = lines
        .next()
        .and_then(|l| l.strip_prefix("begin_ns "))
        .and_then(|n| n.parse().ok())
        .expect("the workload prints begin_ns first");
    let manifest = lines.map(|l| serde_json::from_str(l).expect("manifest line")).collect();
    WorkloadRun { pid, begin_ns, manifest }
}

/// The workload binary, built beside the test binaries; `BADFD_WORKLOAD` names
/// it where the build tree is not there (the kernel matrix's VMs).
pub fn workload_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BADFD_WORKLOAD") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_workload") {
        return PathBuf::from(p);
    }
    // Test binaries live in target/<profile>/deps; the workload in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") { dir.parent().unwrap() } else { dir };
    dir.join("workload")
}

/// The cgroup v2 id of a process: the inode number of its cgroup directory.
pub fn cgroup_id_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let meta = std::fs::metadata(format!("/sys/fs/cgroup{path}")).ok()?;
    Some(meta.ino())
}

/// Whether the kernel's lockdown forbids fentry/fexit (as on the CI hosts);
/// None where securityfs does not say.
pub fn kernel_locked_down() -> Option<bool> {
    std::fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .map(|s| s.contains("[integrity]") || s.contains("[confidentiality]"))
}

// ---------------------------------------------------------------------------
// The exporter (`badfd serve`) as a process, and scrapes of it.
// ---------------------------------------------------------------------------

/// The `badfd` binary (target/<profile>/badfd), built before the tests run
/// (`cargo build --workspace --all-targets`, as scripts/test.sh does).
pub fn badfd_path() -> PathBuf {
    let path = workload_path().with_file_name("badfd");
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` before the tests", path.display());
    path
}

impl TempDir {
    /// A fresh directory whose name has no digits (letters from the pid, a
    /// counter and the clock), so that path-prefix templating keeps it apart
    /// from every other test's directory.
    pub fn lettered(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut n = (std::process::id() as u64) << 32 ^ nanos ^ NEXT.fetch_add(1, Ordering::Relaxed) << 56;
        let mut letters = String::new();
        for _ in 0..10 {
            letters.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
        }
        let dir = std::env::temp_dir().join(format!("badfd-{tag}-{letters}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

/// A running `badfd serve` on a free 127.0.0.1 port; terminated on drop.
pub struct Serve {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
}

impl Serve {
    /// Starts `badfd serve` with `args` and waits until `/-/ready` says the
    /// programs are attached; panics (with its log) if it never does.
    pub fn start(args: &[&str]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Serve::start_at(([127, 0, 0, 1], port).into(), args)
    }

    /// As `start`, listening on `address`.
    pub fn start_at(address: std::net::SocketAddr, args: &[&str]) -> Serve {
        let port = address.port();
        let attach = match test_attach_mode() {
            AttachPreference::Auto => "auto",
            AttachPreference::Fentry => "fentry",
            AttachPreference::Tracepoint => "tracepoint",
        };
        let log = std::env::temp_dir().join(format!("badfd-serve-{}-{port}.log", std::process::id()));
        // A roomy ring buffer: other processes on the host (benchmarks, floods)
        // must not crowd the workload's events out of a test's exporter.
        let ringbuf: &[&str] = if args.contains(&"--ringbuf-bytes") { &[] } else { &["--ringbuf-bytes", "67108864"] };
        let child = Command::new(badfd_path())
            .args(["serve", "--web.listen-address", &address.to_string(), "--attach", attach])
            .args(ringbuf)
            .args(args)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start badfd serve");
        Serve { child, address }.wait_until(&log, |s| matches!(s.try_get("/-/ready", None), Ok((200, _))))
    }

    /// GET `path`; (status, body).
    pub fn try_get(&self, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&self.address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\n{accept}Connection: close\r\n\r\n", self.address)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8(response).map_err(|e| std::io::Error::other(e.to_string()))?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("no status"))?;
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "this client reads whole bodies only");
        Ok((status, body.to_string()))
    }

    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        self.try_get(path, accept).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/metrics` in the OpenMetrics format, parsed.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        Scrape::parse(&body)
    }

    /// Sends `signal` (e.g. libc::SIGHUP) to the exporter.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // a test stopped it already
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition (OpenMetrics or classic text).
#[derive(Clone, Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("sample line without value: {line:?}"),
            };
            let mut labels = std::collections::BTreeMap::new();
            let mut rest = rest;
            if let Some(r) = rest.strip_prefix('{') {
                let bytes = r.as_bytes();
                let mut i = 0;
                loop {
                    match bytes[i] {
                        b'}' => {
                            rest = &r[i + 1..];
                            break;
                        }
                        b',' => {
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let eq = i + r[i..].find('=').expect("label =");
                    let key = r[i..eq].to_string();
                    assert_eq!(bytes[eq + 1], b'"', "label value opens with a quote in {line:?}");
                    let start = eq + 2;
                    let mut value = String::new();
                    let mut escaped = false;
                    let mut end = None;
                    for (k, c) in r[start..].char_indices() {
                        match (escaped, c) {
                            (true, 'n') => { value.push('\n'); escaped = false; }
                            (true, c) => { value.push(c); escaped = false; }
                            (false, '\\') => escaped = true,
                            (false, '"') => { end = Some(start + k + 1); break; }
                            (false, c) => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    i = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                }
            }
            let value = rest.split_whitespace().next().expect("value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.push(Sample { name: name.to_string(), labels, value });
        }
        Scrape { samples }
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }

    /// Sum of the matching samples (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        // `+ 0.0`: an empty f64 sum is -0.0.
        self.matching(name, labels).map(|s| s.value).sum::<f64>() + 0.0
    }

    /// The value of the one matching sample; panics if there is not exactly one.
    pub fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert_eq!(found.len(), 1, "expected one {name}{labels:?}, found {found:?}");
        found[0].value
    }
}

/// The running kernel's (major, minor) version, from `uname -r`.
pub fn kernel_version() -> (u32, u32) {
    let release = badfd::probe::kernel_release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("cannot parse the kernel release {release:?}"),
    }
}

/// Whether this kernel has every BPF helper badfd's fentry programs call
/// (bpf_task_pt_regs came in 5.15).
pub fn kernel_has_fentry_helpers() -> bool {
    kernel_version() >= (5, 15)
}

/// Runs `attempt` (a workload run and what it observed) again, at most twice,
/// while the kernel reports that it skipped one of badfd's programs during it.
/// A skip is the kernel's, counted (`Probe::missed_runs`): a preempted program
/// blocks the same program for other tasks on its CPU (seen under emulation on
/// 7.3, in both attach modes). The exact assertions hold for a run without skips.
pub fn without_missed_runs<T>(probe: &Probe, mut attempt: impl FnMut() -> T) -> T {
    let mut tries = 0;
    loop {
        let missed_before = probe.missed_runs();
        let result = attempt();
        let missed = probe.missed_runs() - missed_before;
        tries += 1;
        if missed == 0 {
            return result;
        }
        assert!(tries < 3, "the kernel skipped badfd's programs {missed} times in each of {tries} runs");
        eprintln!("the kernel skipped badfd's programs {missed} times during the run; running it again");
    }
}

// ---------------------------------------------------------------------------
// Reliability (tests/tests/faults.rs, soak.rs, oddbytes.rs).
// ---------------------------------------------------------------------------

impl Serve {
    /// The log file `start` sends the exporter's stderr to.
    pub fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("badfd-serve-{}-{}.log", std::process::id(), self.address.port()))
    }

    /// The exporter's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// The ids of the BPF programs and maps a process holds file descriptors of
/// (from /proc/PID/fdinfo: `prog_id:` and `map_id:`).
pub fn bpf_ids_held_by(pid: u32) -> (std::collections::BTreeSet<u32>, std::collections::BTreeSet<u32>) {
    let (mut progs, mut maps) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("/proc/PID/fdinfo").flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        for line in info.lines() {
            let id = |key: &str| line.strip_prefix(key).and_then(|v| v.trim().parse::<u32>().ok());
            if let Some(id) = id("prog_id:") {
                progs.insert(id);
            }
            if let Some(id) = id("map_id:") {
                maps.insert(id);
            }
        }
    }
    (progs, maps)
}

// ---------------------------------------------------------------------------
// Security (tests/security.rs): exporters started with their own listen
// address and readiness check (TLS, IPv6).
// ---------------------------------------------------------------------------

impl Serve {
    /// Waits until `ready` holds (30 s at most); panics with the log at `log`
    /// if the exporter exits or never gets ready.
    pub fn wait_until(mut self, log: &Path, ready: impl Fn(&Serve) -> bool) -> Serve {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready(&self) {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("badfd serve exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "badfd serve not ready in 30 s: {}", std::fs::read_to_string(log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------
// Kernel fairness, floods and reaping (tests/tests/kernel.rs, flood.rs).
// ---------------------------------------------------------------------------

/// A uid no account or other test uses: the fairness and flood workloads make
/// their failures under it, and a kernel uid filter lets exactly those through,
/// so their counts are exact on a host where other processes fail opens too.
pub const FAIRNESS_UID: u32 = 3_735_928;

/// A `uidflood` or `uidfail` workload started in the background.
pub struct UidWorkload {
    pub child: std::process::Child,
}

impl UidWorkload {
    pub fn spawn(args: &[&str]) -> UidWorkload {
        let child = Command::new(workload_path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the workload");
        UidWorkload { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it; the failed opens it made, as it counted them.
    pub fn failures(self) -> u64 {
        let out = self.child.wait_with_output().expect("wait for the workload");
        assert!(out.status.success(), "workload failed: {:?}", out.status);
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("failures "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `failures N` line in {stdout:?}"))
    }
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `RssAnon`...); `None` once the
/// process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.split_whitespace().next()?.parse().ok()
}

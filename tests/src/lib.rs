//! Shared pieces of badfd's kernel tests: the workload's manifest format, a
//! probe loader that fails loudly, and an event collector.
//!
//! Every kernel test loads the real eBPF program into this machine's kernel. A
//! test that cannot load it panics with the reason: it never skips.

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
    let options = ProbeOptions { attach: test_attach_mode(), config, ..ProbeOptions::default() };
    match Probe::load(&options) {
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
                std::thread::sleep(Duration::from_millis(5));
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

/// The workload binary, built beside the test binaries.
pub fn workload_path() -> PathBuf {
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

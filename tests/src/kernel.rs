//! Loading the probe in a kernel test (it fails, never skips), collecting its
//! events, and what the running kernel offers.

use std::{
    os::unix::fs::MetadataExt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use badfd::{AttachPreference, OpenEvent, Probe, ProbeOptions};
use exporter_common::Config;

use crate::workload::WorkloadRun;

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

/// The cgroup v2 id of a process: the inode number of its cgroup directory.
pub fn cgroup_id_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let meta = std::fs::metadata(format!("/sys/fs/cgroup{path}")).ok()?;
    Some(meta.ino())
}

/// The running kernel's (major, minor) version, from `uname -r`.
/// CLOCK_MONOTONIC in ns: the clock of the kernel's event timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

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

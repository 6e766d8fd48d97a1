//! The `workload` binary (src/bin/workload.rs): known opens, and the manifest
//! of what it did, to compare with what badfd saw.

use std::process::Command;

use badfd::OpenEvent;
use serde::{Deserialize, Serialize};

use crate::binaries::workload_path;

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

/// `count` failed opens (ENOENT) in `dir` by the workload running as `uid`
/// (setpriv), with no manifest: a workload the tests filter by its uid.
pub fn failures_as(uid: u32, dir: &crate::TempDir, count: u64) {
    let status = Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
        .arg(workload_path())
        .args(["burst", dir.path().to_str().unwrap(), &count.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "workload as uid {uid}: {status}");
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

/// The mappings of process `pid` with the most resident memory, summed by
/// name (`[anon]` for anonymous ones): (KiB, name), the `n` largest first.
pub fn proc_largest_mappings(pid: u32, n: usize) -> Vec<(u64, String)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // "start-end perms offset dev inode [name]"
            name = line.split_whitespace().nth(5).unwrap_or("[anon]").to_string();
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            match maps.iter_mut().find(|m| m.1 == name) {
                Some(m) => m.0 += kib,
                None => maps.push((kib, name.clone())),
            }
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    maps.truncate(n);
    maps
}

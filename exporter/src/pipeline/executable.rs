//! The opener's executable (`/proc/PID/exe`) for `process.executable.path`
//! and `.name` (OTLP) and `executable` (`trace --json`): the comm the kernel
//! sends is the thread's name, at most 15 bytes, and a program can set it to
//! anything.
//!
//! Read by the pipeline's executable stage (`Pipeline::with_executables`) as
//! each anomaly arrives, usually milliseconds after the open and before a
//! failure waits out its found-later window, so that a command that failed
//! and exited still has its executable; the OTLP sink reads it itself for
//! records made outside the pipeline (`Otlp::emit`). Per new process one
//! readlink (the kernel's per-process and per-user budgets bound how many
//! new processes a user can stream a second). `readlink` of `/proc/PID/exe` takes no lock the
//! traced process can hold for long (the task lock, then RCU), so it does not
//! block the event loop. Cached per (tgid, comm) for `TTL`, at most
//! `MAX_ENTRIES` entries (the oldest go first): a process that fails a
//! thousand opens costs one readlink. The comm is in the key because an
//! `execve` keeps the tgid and changes the comm (to the new file's name);
//! an exec that keeps the comm is seen once the entry is `TTL` old. Before
//! reading the link, the opening thread's comm (`/proc/PID/task/TID/comm`,
//! or the process's if that thread has ended) is checked against the
//! event's: a process that exec'd since, or a pid reused by another process,
//! does not lend its executable to the record.
//!
//! After the process has exited (or for a kernel thread) there is nothing to
//! read: the record then has no executable attributes (counted as `unknown`),
//! never a guess. Nor can badfd read the link of a process whose user and
//! group ids are not all its own (ptrace read access: another user's process,
//! a setuid program) once it has dropped its capabilities, unless it keeps
//! CAP_SYS_PTRACE (`--capabilities.keep=sys_ptrace`). A deleted executable reads as its old path with the
//! kernel's ` (deleted)` suffix, as `ls -l /proc/PID/exe` shows it.

use std::{
    collections::{HashMap, VecDeque},
    os::unix::ffi::OsStringExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use exporter_common::TASK_COMM_LEN;

/// Entries the cache holds at most (about 100 bytes each plus the path).
pub const MAX_ENTRIES: usize = 4096;
/// How long a result (a path, or none) is reused for a (tgid, comm).
pub const TTL: Duration = Duration::from_secs(30);

type Key = (u32, [u8; TASK_COMM_LEN]);

/// `/proc/PID/exe` of openers, cached.
#[derive(Debug)]
pub struct ExecutableCache {
    proc_root: PathBuf,
    entries: HashMap<Key, (Option<Arc<[u8]>>, Instant)>,
    /// Keys in insertion order, for evicting the oldest.
    order: VecDeque<Key>,
    /// Lookups that found no executable (the process was gone, or a kernel thread).
    pub unknown: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
}

impl Default for ExecutableCache {
    fn default() -> Self {
        ExecutableCache::with_proc_root(PathBuf::from("/proc"))
    }
}

impl ExecutableCache {
    /// A cache reading `<proc_root>/PID/exe` (tests point it elsewhere).
    pub fn with_proc_root(proc_root: PathBuf) -> ExecutableCache {
        ExecutableCache { proc_root, entries: HashMap::new(), order: VecDeque::new(), unknown: 0, hits: 0 }
    }

    /// The executable's path (raw bytes) of process `tgid`, whose thread `tid`
    /// is named `comm`, or `None` when it cannot be read.
    pub fn lookup(&mut self, tgid: u32, tid: u32, comm: &[u8; TASK_COMM_LEN], now: Instant) -> Option<Arc<[u8]>> {
        let key = (tgid, *comm);
        if let Some((path, at)) = self.entries.get(&key) {
            if now.saturating_duration_since(*at) < TTL {
                self.hits += 1;
                if path.is_none() {
                    self.unknown += 1;
                }
                return path.clone();
            }
        }
        let process = self.proc_root.join(tgid.to_string());
        let name_len = comm.iter().position(|&b| b == 0).unwrap_or(TASK_COMM_LEN);
        let same_thread = std::fs::read(process.join("task").join(tid.to_string()).join("comm"))
            .or_else(|_| std::fs::read(process.join("comm")))
            .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == &comm[..name_len]);
        let path: Option<Arc<[u8]>> = same_thread
            .then(|| std::fs::read_link(process.join("exe")).ok())
            .flatten()
            .map(|p| Arc::from(p.into_os_string().into_vec()));
        if path.is_none() {
            self.unknown += 1;
        }
        if self.entries.insert(key, (path.clone(), now)).is_none() {
            self.order.push_back(key);
            while self.entries.len() > MAX_ENTRIES {
                let Some(oldest) = self.order.pop_front() else { break };
                self.entries.remove(&oldest);
            }
        }
        path
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The base name of an executable path (`process.executable.name`).
pub fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(name: &[u8]) -> [u8; TASK_COMM_LEN] {
        let mut c = [0; TASK_COMM_LEN];
        c[..name.len()].copy_from_slice(name);
        c
    }

    #[test]
    fn reads_this_process_and_caches_it() {
        let me = std::process::id();
        let tid = unsafe { libc::gettid() } as u32;
        let name = std::fs::read(format!("/proc/self/task/{tid}/comm")).unwrap();
        let name = comm(name.strip_suffix(b"\n").unwrap());
        let want = std::fs::read_link("/proc/self/exe").unwrap().into_os_string().into_vec();
        let mut cache = ExecutableCache::default();
        let now = Instant::now();
        assert_eq!(cache.lookup(me, tid, &name, now).as_deref(), Some(&want[..]));
        assert_eq!(cache.lookup(me, tid, &name, now).as_deref(), Some(&want[..]));
        assert_eq!((cache.hits, cache.unknown, cache.len()), (1, 0, 1));
        // Another comm than the thread has now (an exec since, or a reused pid): no executable.
        assert_eq!(cache.lookup(me, tid, &comm(b"not-this-one"), now), None);
        assert_eq!((cache.hits, cache.unknown, cache.len()), (1, 1, 2));
        // Past the TTL: read again, still one entry per key.
        assert_eq!(cache.lookup(me, tid, &name, now + TTL).as_deref(), Some(&want[..]));
        assert_eq!((cache.hits, cache.len()), (1, 2));
    }

    #[test]
    fn a_gone_process_has_no_executable_and_the_cache_is_bounded() {
        let dir = std::env::temp_dir().join(format!("badfd-exe-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("7/task/9")).unwrap();
        std::fs::write(dir.join("7/task/9/comm"), "py\n").unwrap();
        let _ = std::fs::remove_file(dir.join("7/exe"));
        std::os::unix::fs::symlink("/usr/bin/python3.11 (deleted)", dir.join("7/exe")).unwrap();
        let mut cache = ExecutableCache::with_proc_root(dir.clone());
        let now = Instant::now();
        assert_eq!(cache.lookup(7, 9, &comm(b"py"), now).as_deref(), Some(&b"/usr/bin/python3.11 (deleted)"[..]));
        assert_eq!(cache.lookup(8, 8, &comm(b"gone"), now), None);
        assert_eq!(cache.unknown, 1);
        for pid in 100..100 + MAX_ENTRIES as u32 + 10 {
            cache.lookup(pid, pid, &comm(b"x"), now);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert_eq!(cache.unknown, 1 + MAX_ENTRIES as u64 + 10);
        // The oldest went first.
        assert!(!cache.entries.contains_key(&(7, comm(b"py"))));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name(b"/usr/bin/python3.11"), b"python3.11");
        assert_eq!(base_name(b"cat"), b"cat");
        assert_eq!(base_name(b"/"), b"");
    }
}

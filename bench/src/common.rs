//! Helpers the userspace benchmarks share (included with `#[path]`, each bin
//! uses a part of it).
#![allow(dead_code)]

use std::{
    ffi::CString,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use exporter_common::{EventHeader, Syscall, DIR_NOT_ATTEMPTED, DIR_RESOLVED, EVENT_FAILED, EVENT_HEADER_SIZE, EVENT_SLOW};

pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// `uptime`'s load averages, to say how busy the shared machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// BPF programs on the open syscalls' tracepoints now (other tools, or other
/// badfd instances on a shared machine, which slow every open), from
/// `bpftool prog show`; `None` without bpftool.
pub fn open_tracepoint_programs() -> Option<usize> {
    let out = std::process::Command::new("bpftool").args(["prog", "show"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().filter(|l| l.contains("tracepoint") && (l.contains("name sys_enter_") || l.contains("name sys_exit_"))).count())
}

pub fn machine_line() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Online CPUs, not this thread's affinity (benches pin themselves).
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let programs = open_tracepoint_programs().map_or("unknown".to_string(), |n| n.to_string());
    format!(
        "kernel {}, {cpus} CPUs, load average {}, syscall tracepoint programs loaded before the bench: {programs}",
        kernel.trim(),
        loadavg()
    )
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized comm; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

// ---------------------------------------------------------------------------
// Synthetic anomalies with realistic label variety.

const COMMS: [&str; 40] = [
    "nginx", "python3", "java", "node", "postgres", "kubelet", "containerd", "sshd", "cron", "bash",
    "systemd", "dockerd", "redis-server", "mysqld", "php-fpm", "ruby", "go-app", "envoy", "prometheus", "grafana",
    "git", "make", "cc1", "ld", "cargo", "rustc", "sh", "ls", "cat", "grep",
    "worker-1", "worker-2", "worker-3", "worker-4", "celery", "gunicorn", "uwsgi", "haproxy", "etcd", "coredns",
];

/// (errno, weight out of 100)
const ERRNOS: [(i64, u32); 7] = [(2, 70), (13, 15), (1, 5), (20, 4), (40, 2), (30, 2), (6, 2)];

const DIRS: [&str; 30] = [
    "/usr/lib/python3.11/site-packages", "/usr/lib/x86_64-linux-gnu", "/etc/ssl/certs", "/etc/nginx/conf.d",
    "/var/lib/postgresql/15/main", "/proc/self/fd", "/sys/fs/cgroup", "/run/containerd/io.containerd.runtime.v2.task",
    "/home/app/.cache", "/home/app/.config", "/opt/app/config", "/opt/app/lib", "/var/log/app", "/var/run/secrets",
    "/usr/share/zoneinfo/Europe", "/usr/local/lib/node_modules", "/etc/ld.so.conf.d", "/lib/modules/6.18/kernel",
    "/usr/share/locale/en_US", "/var/cache/apt/archives", "/srv/www/static", "/tmp/build-20261121/out",
    "/var/lib/kubelet/pods", "/etc/kubernetes/manifests", "/usr/lib/jvm/java-17/lib", "/dev/shm/sem",
    "/var/lib/docker/overlay2", "/root/.cargo/registry", "/usr/include/linux", "/nix/store/abc",
];

const FILES: [&str; 12] = [
    "__init__.py", "libssl.so.3", "ca.pem", "default.conf", "postmaster.pid", "config.yaml", "app.log",
    "token", "UTC", "package.json", "ld.so.cache", "settings.toml",
];

/// One ring-buffer record as the kernel writes it (header, path, directory).
pub fn event_bytes(errno: i64, slow: bool, comm: &str, path: &[u8], dir: Option<&[u8]>) -> Vec<u8> {
    let mut c = [0u8; 16];
    c[..comm.len().min(15)].copy_from_slice(&comm.as_bytes()[..comm.len().min(15)]);
    let h = EventHeader {
        start_ns: 1,
        latency_ns: if slow { 25_000_000 } else { 40_000 },
        cgroup_id: 1,
        ret: -errno,
        open_flags: 0,
        pid: 4242,
        tid: 4242,
        uid: 1000,
        gid: 1000,
        mode: 0,
        dirfd: exporter_common::AT_FDCWD,
        path_len: path.len() as u16,
        syscall: Syscall::Openat as u8,
        event_flags: EVENT_FAILED | if slow { EVENT_SLOW } else { 0 },
        name_hash: 0,
        comm: c,
        dir_len: dir.map_or(0, |d| d.len() as u16),
        dir_status: if dir.is_some() { DIR_RESOLVED } else { DIR_NOT_ATTEMPTED },
        _reserved2: [0; 5],
        mnt_ns: 4026531841,
        euid: 0,
        ppid: 0,
        _reserved4: 0,
    };
    let mut v = vec![0u8; EVENT_HEADER_SIZE];
    // SAFETY: v holds EVENT_HEADER_SIZE bytes; EventHeader is plain data.
    unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), h) };
    v.extend_from_slice(path);
    if let Some(d) = dir {
        v.extend_from_slice(d);
    }
    v
}

/// A tiny deterministic generator (xorshift), so runs compare.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The corpus: `n` records drawn from 40 comms x 7 errnos x 30 directories x
/// 12 file names (each comm opening in 4 of the directories, as a program
/// keeps to its own files, so about 1,100 failure label sets plus those the
/// volatile names make) (with pids, uuids and temp names that the prefix templating
/// folds), 10% relative paths resolved by the kernel, 5% slow; `unique_every`
/// records in a new home directory (a new `path_prefix`, so the label-set
/// budget folds them), marked in the returned indexes so a bench can rename
/// them on every pass.
pub struct Corpus {
    pub records: Vec<Vec<u8>>,
    /// (record index, byte offset of the 6 letters that make its directory unique)
    pub unique: Vec<(usize, usize)>,
}

impl Corpus {
    pub fn new(n: usize, unique_every: usize) -> Corpus {
        let mut rng = Rng::new(0x5eed);
        let mut records = Vec::with_capacity(n);
        let mut unique = Vec::new();
        for i in 0..n {
            let comm = COMMS[rng.below(COMMS.len() as u64) as usize];
            let mut pick = rng.below(100) as u32;
            let errno = ERRNOS.iter().find(|(_, w)| if pick < *w { true } else { pick -= w; false }).map_or(2, |e| e.0);
            let slow = rng.below(20) == 0;
            let file = FILES[rng.below(FILES.len() as u64) as usize];
            if unique_every > 0 && i % unique_every == unique_every - 1 {
                let path = format!("/home/uaaaaaa/.local/{file}");
                let offset = exporter_common::EVENT_HEADER_SIZE + "/home/u".len();
                unique.push((records.len(), offset));
                records.push(event_bytes(errno, slow, comm, path.as_bytes(), None));
                continue;
            }
            let comm_index = COMMS.iter().position(|c| *c == comm).unwrap_or(0);
            let dir = DIRS[(comm_index * 3 + rng.below(4) as usize) % DIRS.len()];
            let record = match rng.below(10) {
                // relative, the kernel sent the directory
                0 => event_bytes(errno, slow, comm, format!("../{file}").as_bytes(), Some(dir.as_bytes())),
                // volatile segments the templating folds
                1 => event_bytes(errno, slow, comm, format!("/proc/{}/fd/{}", rng.below(1 << 22), rng.below(64)).as_bytes(), None),
                2 => {
                    let r = rng.next();
                    let path = format!("{dir}/{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}.json", r as u32, r >> 48, r & 0xfff, (r >> 12) & 0xfff, r >> 16);
                    event_bytes(errno, slow, comm, path.as_bytes(), None)
                }
                _ => event_bytes(errno, slow, comm, format!("{dir}/{file}").as_bytes(), None),
            };
            records.push(record);
        }
        Corpus { records, unique }
    }

    /// Gives every unique-directory record a new name (6 letters from `pass`).
    pub fn rename_unique(&mut self, pass: u64) {
        for (k, &(i, offset)) in self.unique.iter().enumerate() {
            let mut n = pass * self.unique.len() as u64 + k as u64;
            for b in &mut self.records[i][offset..offset + 6] {
                *b = b'a' + (n % 26) as u8;
                n /= 26;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Failing opens from the kernel: paced generator threads.

/// Threads making failing openat calls (ENOENT, an absolute path under a
/// missing directory) at a total offered rate (0 = as fast as they can).
pub struct Generator {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Generator {
    /// `cpus[i]` is the CPU of thread i; `rate` is opens/s over all threads.
    /// `varied`: every 16th open in a new directory (a new `path_prefix`
    /// label value) so the label-set budget fills and folds, and each thread
    /// under its own comm.
    pub fn start(cpus: &[usize], rate: u64, varied: bool) -> Generator {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let threads = cpus
            .iter()
            .enumerate()
            .map(|(t, &cpu)| {
                let (stop, made) = (stop.clone(), made.clone());
                let per_thread = rate / cpus.len() as u64;
                std::thread::spawn(move || {
                    pin_to(cpu);
                    if varied {
                        let name = CString::new(format!("bench-gen-{t}")).unwrap();
                        // SAFETY: PR_SET_NAME reads a NUL-terminated string.
                        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
                    }
                    let paths: Vec<CString> = (0..64)
                        .map(|i| CString::new(format!("/nonexistent-badfd-bench/t{t}/dir{}/file{i}.conf", i % 8)).unwrap())
                        .collect();
                    let start = Instant::now();
                    let mut n: u64 = 0;
                    const CHUNK: u64 = 256;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..CHUNK {
                            let fresh;
                            let path = if varied && i % 16 == 0 {
                                fresh = CString::new(format!("/nonexistent-badfd-bench/t{t}/{}/file", letters(n + i))).unwrap();
                                &fresh
                            } else {
                                &paths[(i % 64) as usize]
                            };
                            // SAFETY: a valid C string; a raw syscall so glibc adds nothing.
                            unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
                        }
                        n += CHUNK;
                        made.fetch_add(CHUNK, Ordering::Relaxed);
                        if per_thread > 0 {
                            let due = Duration::from_secs_f64(n as f64 / per_thread as f64);
                            let elapsed = start.elapsed();
                            if due > elapsed {
                                std::thread::sleep(due - elapsed);
                            }
                        }
                    }
                })
            })
            .collect();
        Generator { stop, made, threads }
    }

    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.made.load(Ordering::Relaxed)
    }
}

/// `n` in base 26 letters (digits would be templated into `<n>`).
fn letters(mut n: u64) -> String {
    let mut s = String::from("d");
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

// ---------------------------------------------------------------------------
// The real `badfd serve`, through the tests' harness.

/// `badfd serve` on 127.0.0.1:`port` as a bench runs it: with badfd's own
/// defaults (ring buffer, attach mode), logging warnings only.
pub fn start_serve(port: u16, args: &[&str]) -> badfd_tests::Serve {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = badfd_tests::Serve::plain_command(address, args);
    command.env("BADFD_LOG", "warn").stdout(std::process::Stdio::null());
    badfd_tests::Serve::launch(command, address, badfd_tests::Serve::is_ready)
}

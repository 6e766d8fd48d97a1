//! What badfd adds to each syscall: ns per call for successful opens, failing
//! opens, getpid and a mixed workload, with nothing attached (bare), with an
//! empty program on the same tracepoints (the floor of the tracepoint attach
//! mode), with an empty fentry/fexit pair on do_sys_openat2 (the floor of the
//! fentry attach mode; skipped, saying why, where the kernel refuses fentry),
//! with badfd attached (in the mode `--attach` asks for), and with the tools
//! users would pick instead: opensnoop -x (libbpf-tools), bcc's opensnoop -x
//! (Debian bpfcc-tools; it compiles its C at start and needs the running
//! kernel's headers, so it is skipped, saying why, where there are none) and a
//! bpftrace script doing what badfd does (bench/scripts/badfd-equivalent.bt).
//! Conditions alternate in rounds; the first round is discarded; each figure is
//! the median over rounds of (condition - bare in the same round), and every
//! round's figure is printed too. Runs as root; pins the workload to one CPU
//! and badfd's reader to another. tests/vm/run.sh --bench runs it in qemu
//! guests, where fentry loads.

use std::{
    ffi::CString,
    os::fd::AsRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use badfd::{
    probe::{AttachPreference, ProbeError, POLL_INTERVAL},
    Probe, ProbeOptions,
};
use badfd_tests::kernel_bench::{attach_floor, attach_floor_exits, attach_floor_fentry};
use clap::Parser;

#[derive(Parser)]
#[command(about = "ns added per open / failing open / getpid: bare vs floor vs badfd")]
struct Args {
    /// Rounds of all conditions (the first is discarded).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Calls per measurement.
    #[arg(long, default_value_t = 200_000)]
    iters: u64,
    /// CPU the workload runs on.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Workloads to run (open, fail, getpid, mixed); all by default.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Conditions to run besides bare (floor, fentry-floor, floor-exits, badfd, badfd-untimed, opensnoop, bpftrace, bcc); all by default.
    #[arg(long, value_delimiter = ',')]
    conditions: Vec<String>,
    /// badfd's attach mode in the badfd condition (`ProbeOptions::attach`); fails if the kernel refuses it.
    #[arg(long, value_enum, default_value_t = AttachPreference::Auto)]
    attach: AttachPreference,
    /// badfd's wakeup threshold in bytes waiting (`Config::wakeup_bytes`); the default if absent.
    #[arg(long)]
    wakeup_bytes: Option<u32>,
    /// How badfd's event reader waits when the ring buffer is empty.
    #[arg(long, value_enum, default_value_t = ReaderWait::Sleep)]
    reader_wait: ReaderWait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ReaderWait {
    /// Sleep 1 ms and look again (the figures in bench/RESULTS.md up to session 3):
    /// free where the reader has a CPU of its own.
    Sleep,
    /// Wait on the ring buffer's fd for the kernel's batched wakeup or
    /// `POLL_INTERVAL`, as the exporter does: use it where the reader's CPU is
    /// not its own (an emulated guest whose vCPUs share one host thread), where
    /// a wakeup every millisecond would be charged to the workload.
    Poll,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Condition {
    Bare,
    Floor,
    FentryFloor,
    Badfd,
    Opensnoop,
    Bpftrace,
    BccOpensnoop,
    /// An empty program on the syscall-exit tracepoints only: the floor of `--no-timing`.
    FloorExits,
    /// badfd with `--no-timing` (exit programs only).
    BadfdUntimed,
}

const CONDITIONS: [Condition; 9] = [
    Condition::Bare,
    Condition::Floor,
    Condition::FentryFloor,
    Condition::Badfd,
    Condition::Opensnoop,
    Condition::Bpftrace,
    Condition::BccOpensnoop,
    Condition::FloorExits,
    Condition::BadfdUntimed,
];

impl Condition {
    /// Its index in `CONDITIONS` (and in the per-condition results).
    fn index(self) -> usize {
        CONDITIONS.iter().position(|&c| c == self).unwrap()
    }

    /// Its name in `--conditions`.
    fn key(self) -> &'static str {
        match self {
            Condition::Bare => "bare",
            Condition::Floor => "floor",
            Condition::FentryFloor => "fentry-floor",
            Condition::Badfd => "badfd",
            Condition::Opensnoop => "opensnoop",
            Condition::Bpftrace => "bpftrace",
            Condition::BccOpensnoop => "bcc",
            Condition::FloorExits => "floor-exits",
            Condition::BadfdUntimed => "badfd-untimed",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Condition::Bare => "bare",
            Condition::Floor => "tracepoint floor",
            Condition::FentryFloor => "fentry floor",
            Condition::Badfd => "badfd",
            Condition::Opensnoop => "opensnoop -x (libbpf-tools)",
            Condition::Bpftrace => "bpftrace",
            Condition::BccOpensnoop => "bcc opensnoop -x",
            Condition::FloorExits => "floor, exits only",
            Condition::BadfdUntimed => "badfd --no-timing",
        }
    }

    /// The command line of an external tool, or why it cannot run here.
    fn external(self) -> Option<Result<Vec<String>, String>> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/badfd-equivalent.bt");
        let (bin, args): (&str, Vec<&str>) = match self {
            Condition::Opensnoop => ("/usr/sbin/opensnoop", vec!["-x"]),
            Condition::Bpftrace => ("/usr/bin/bpftrace", vec![script]),
            Condition::BccOpensnoop => ("/usr/sbin/opensnoop-bpfcc", vec!["-x"]),
            _ => return None,
        };
        if !Path::new(bin).exists() {
            let package = match self {
                Condition::Opensnoop => "libbpf-tools",
                Condition::BccOpensnoop => "bpfcc-tools",
                _ => "bpftrace",
            };
            return Some(Err(format!("{bin} not installed (apt-get install {package})")));
        }
        if self == Condition::BccOpensnoop {
            if let Err(why) = bcc_kernel_headers() {
                return Some(Err(why));
            }
        }
        Some(Ok(std::iter::once(bin).chain(args).map(String::from).collect()))
    }
}

/// bcc compiles its programs at start against the running kernel's headers:
/// /lib/modules/RELEASE/build, or the kernel's own copy (CONFIG_IKHEADERS).
fn bcc_kernel_headers() -> Result<(), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let build = format!("/lib/modules/{release}/build");
    if Path::new(&build).exists() || Path::new("/sys/kernel/kheaders.tar.xz").exists() {
        return Ok(());
    }
    Err(format!(
        "bcc needs the running kernel's headers and this kernel ({release}) has none: no {build} \
         (no linux-headers package for it) and no /sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS off)"
    ))
}

/// Starts an external tracer with its output drained on another CPU, and
/// waits until it has attached (its first line of output, or 3 s).
fn start_external(argv: &[String], reader_cpu: usize) -> anyhow::Result<std::process::Child> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", argv[0]))?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pin_to(reader_cpu);
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = lines.next();
        let _ = tx.send(());
        for _ in lines {}
    });
    let _ = rx.recv_timeout(Duration::from_secs(3));
    // bpftrace prints "Attaching N probes..." before the probes are live.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    OpenClose,
    FailingOpen,
    Getpid,
    Mixed,
    LoaderSearch,
}

const WORKLOADS: [Workload; 5] =
    [Workload::OpenClose, Workload::FailingOpen, Workload::Getpid, Workload::Mixed, Workload::LoaderSearch];

impl Workload {
    /// Its name in `--workloads`.
    fn key(self) -> &'static str {
        match self {
            Workload::OpenClose => "open",
            Workload::FailingOpen => "fail",
            Workload::Getpid => "getpid",
            Workload::Mixed => "mixed",
            Workload::LoaderSearch => "search",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::OpenClose => "openat+close (cached file)",
            Workload::FailingOpen => "openat ENOENT",
            Workload::Getpid => "getpid",
            Workload::Mixed => "mixed: 1 ENOENT per 1000 opens",
            Workload::LoaderSearch => "search: 4 ENOENT of a name, then it (per open)",
        }
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Paths {
    ok: CString,
    missing: CString,
    /// Four paths of directories without `ok`'s file name.
    search: [CString; 4],
}

#[inline(never)]
fn run(w: Workload, iters: u64, p: &Paths) -> f64 {
    let start = Instant::now();
    // SAFETY: valid C strings; raw syscalls so glibc adds nothing.
    unsafe {
        match w {
            Workload::OpenClose => {
                for _ in 0..iters {
                    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.ok.as_ptr(), libc::O_RDONLY);
                    libc::syscall(libc::SYS_close, fd);
                }
            }
            Workload::FailingOpen => {
                for _ in 0..iters {
                    libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.missing.as_ptr(), libc::O_RDONLY);
                }
            }
            Workload::Getpid => {
                for _ in 0..iters {
                    libc::syscall(libc::SYS_getpid);
                }
            }
            Workload::LoaderSearch => {
                // As the dynamic loader looks for a library: four directories
                // without it, then the one with it (found later, all four).
                for i in 0..iters {
                    let path = match i % 5 {
                        4 => &p.ok,
                        n => &p.search[n as usize],
                    };
                    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
                    if fd >= 0 {
                        libc::syscall(libc::SYS_close, fd);
                    }
                }
            }
            Workload::Mixed => {
                for i in 0..iters {
                    let path = if i % 1000 == 999 { &p.missing } else { &p.ok };
                    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
                    if fd >= 0 {
                        libc::syscall(libc::SYS_close, fd);
                    }
                }
            }
        }
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds >= 2, "--rounds must be at least 2 (the first is discarded)");
    let dir = std::env::temp_dir().join(format!("badfd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ok_path = dir.join("cached");
    std::fs::write(&ok_path, b"x")?;
    let paths = Paths {
        ok: CString::new(ok_path.to_str().unwrap())?,
        missing: CString::new(dir.join("missing").to_str().unwrap())?,
        search: [0, 1, 2, 3].map(|n| CString::new(dir.join(format!("search-{n}/cached")).to_str().unwrap()).unwrap()),
    };
    // bpf_stats for the in-kernel run time of badfd's programs.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable bpf_stats")?;

    // results[condition][workload] = ns/call per kept round
    let mut ns = vec![vec![Vec::new(); WORKLOADS.len()]; CONDITIONS.len()];
    let mut badfd_stats: Vec<(String, u64, Duration)> = Vec::new();
    let mut streamed = 0u64;
    let mut lost = 0u64;
    let mut mode = String::new();
    let reader_cpu = (args.cpu + 1) % std::thread::available_parallelism()?.get();
    for key in &args.conditions {
        anyhow::ensure!(CONDITIONS[1..].iter().any(|c| c.key() == key), "--conditions: unknown condition {key:?}");
    }
    for key in &args.workloads {
        anyhow::ensure!(WORKLOADS.iter().any(|w| w.key() == key), "--workloads: unknown workload {key:?}");
    }
    let condition_wanted =
        |c: Condition| c == Condition::Bare || args.conditions.is_empty() || args.conditions.iter().any(|k| k == c.key());
    let workload_wanted = |w: Workload| args.workloads.is_empty() || args.workloads.iter().any(|k| k == w.key());
    // in_kernel[workload] = (program, runs, time) of badfd's programs during that workload's measured calls
    let mut in_kernel: Vec<Vec<(String, u64, Duration)>> = vec![Vec::new(); WORKLOADS.len()];
    let mut skipped: Vec<(Condition, String)> = Vec::new();
    for &cond in CONDITIONS.iter().filter(|&&c| condition_wanted(c)) {
        if let Some(Err(why)) = cond.external() {
            eprintln!("skipping {}: {why}", cond.name());
            skipped.push((cond, why));
        }
        // fentry needs a kernel that allows it (not under lockdown, BTF, 5.15+ for
        // badfd's pair): try the empty pair once, and skip it, saying why, if refused.
        if cond == Condition::FentryFloor {
            match attach_floor_fentry() {
                Ok(floor) => drop(floor),
                Err(ProbeError::FentryUnavailable(why)) => {
                    let why = format!("fentry/fexit on do_sys_openat2 refused by this kernel: {why}");
                    eprintln!("skipping {}: {why}", cond.name());
                    skipped.push((cond, why));
                }
                Err(e) => return Err(e).context("attach the empty fentry/fexit pair"),
            }
        }
    }
    for round in 0..args.rounds {
        for (ci, &cond) in CONDITIONS.iter().enumerate() {
            if !condition_wanted(cond) || skipped.iter().any(|(c, _)| *c == cond) {
                continue;
            }
            // Attach on another CPU's time, then measure pinned.
            pin_to(args.cpu);
            let external = match cond.external() {
                Some(Ok(argv)) => Some(start_external(&argv, reader_cpu)?),
                _ => None,
            };
            let floor = match cond {
                Condition::Floor => Some(attach_floor()?),
                Condition::FentryFloor => Some(attach_floor_fentry()?),
                Condition::FloorExits => Some(attach_floor_exits()?),
                _ => None,
            };
            let mut options =
                ProbeOptions { attach: args.attach, timing: cond != Condition::BadfdUntimed, ..ProbeOptions::default() };
            if let Some(bytes) = args.wakeup_bytes {
                options.config.wakeup_bytes = bytes;
            }
            let mut probe =
                matches!(cond, Condition::Badfd | Condition::BadfdUntimed).then(|| Probe::load(&options)).transpose()?;
            if let Some(p) = probe.as_ref() {
                anyhow::ensure!(p.timed() == options.timing, "--no-timing refused: {:?}", p.untimed_refused());
            }
            let stop = Arc::new(AtomicBool::new(false));
            let received = Arc::new(AtomicU64::new(0));
            let reader = match probe.as_mut() {
                Some(p) => {
                    mode = p.attach_mode().to_string();
                    let mut events = p.take_events()?;
                    let (stop, received, reader_wait) = (stop.clone(), received.clone(), args.reader_wait);
                    Some(std::thread::spawn(move || {
                        pin_to(reader_cpu);
                        let fd = events.as_raw_fd();
                        while !stop.load(Ordering::Relaxed) {
                            let n = events.drain(|_| {});
                            received.fetch_add(n as u64, Ordering::Relaxed);
                            if n == 0 {
                                match reader_wait {
                                    ReaderWait::Sleep => std::thread::sleep(Duration::from_millis(1)),
                                    ReaderWait::Poll => {
                                        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                                        // SAFETY: one valid pollfd; the ring buffer's fd outlives the loop.
                                        unsafe { libc::poll(&mut pfd, 1, POLL_INTERVAL.as_millis() as i32) };
                                    }
                                }
                            }
                        }
                        // What came after the last look (below the wakeup threshold).
                        received.fetch_add(events.drain(|_| {}) as u64, Ordering::Relaxed);
                    }))
                }
                None => None,
            };
            for (wi, &w) in WORKLOADS.iter().enumerate() {
                if !workload_wanted(w) {
                    continue;
                }
                run(w, args.iters / 10, &paths); // warm up
                let before = probe.as_ref().map(|p| p.program_stats());
                let v = run(w, args.iters, &paths);
                if round > 0 {
                    ns[ci][wi].push(v);
                    if let (Some(p), Some(before)) = (probe.as_ref(), before) {
                        for s in p.program_stats() {
                            let Some(b) = before.iter().find(|b| b.name == s.name) else { continue };
                            let (runs, time) = (s.run_count - b.run_count, s.run_time.saturating_sub(b.run_time));
                            match in_kernel[wi].iter_mut().find(|e| e.0 == s.name) {
                                Some(e) => {
                                    e.1 += runs;
                                    e.2 += time;
                                }
                                None => in_kernel[wi].push((s.name, runs, time)),
                            }
                        }
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            if let Some(r) = reader {
                r.join().unwrap();
            }
            if let Some(p) = probe.as_ref() {
                let c = p.counters()?;
                streamed += received.load(Ordering::Relaxed);
                lost += c.losses[exporter_common::Loss::RingbufFull as usize];
                if round > 0 {
                    for s in p.program_stats() {
                        if let Some(e) = badfd_stats.iter_mut().find(|e| e.0 == s.name) {
                            e.1 += s.run_count;
                            e.2 += s.run_time;
                        } else {
                            badfd_stats.push((s.name, s.run_count, s.run_time));
                        }
                    }
                }
            }
            drop(floor);
            if let Some(mut child) = external {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let _ = child.wait();
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let requested = match args.attach {
        AttachPreference::Auto => "auto",
        AttachPreference::Fentry => "fentry",
        AttachPreference::Tracepoint => "tracepoint",
    };
    let reader_wait = match args.reader_wait {
        ReaderWait::Sleep => "sleep",
        ReaderWait::Poll => "poll",
    };
    println!("badfd bench/opens: kernel {} attach mode {mode} (--attach {requested}), {} rounds (first discarded) x {} calls, workload on CPU {}, reader on CPU {reader_cpu} (--reader-wait {reader_wait})",
        kernel.trim(), args.rounds, args.iters, args.cpu);
    println!();
    let added = |ci: usize, wi: usize| -> Option<f64> {
        if ns[ci][wi].is_empty() {
            return None;
        }
        Some(median(ns[ci][wi].iter().zip(&ns[0][wi]).map(|(c, b)| c - b).collect()))
    };
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:+.0}")).unwrap_or_else(|| "skipped".into());
    print!("| workload | bare ns/call |");
    for c in &CONDITIONS[1..] {
        print!(" {} +ns |", c.name());
    }
    println!(" badfd / bare | badfd / bpftrace added | badfd / opensnoop added | badfd / bcc opensnoop added |");
    println!("|---|---:|{}---:|---:|---:|---:|", "---:|".repeat(CONDITIONS.len() - 1));
    for (wi, w) in WORKLOADS.iter().enumerate() {
        if ns[0][wi].is_empty() {
            continue;
        }
        let bare = median(ns[0][wi].clone());
        print!("| {} | {:.0} |", w.name(), bare);
        for ci in 1..CONDITIONS.len() {
            print!(" {} |", fmt(added(ci, wi)));
        }
        let badfd = Condition::Badfd.index();
        let ratios: Vec<f64> = ns[badfd][wi].iter().zip(&ns[0][wi]).map(|(c, b)| c / b).collect();
        let ratio = if ratios.is_empty() { "n/a".to_string() } else { format!("{:.2}", median(ratios)) };
        let frac = |other: Condition| match (added(badfd, wi), added(other.index(), wi)) {
            (Some(b), Some(o)) if o > 0.0 => format!("{:.2}", b / o),
            _ => "n/a".into(),
        };
        println!(
            " {ratio} | {} | {} | {} |",
            frac(Condition::Bpftrace),
            frac(Condition::Opensnoop),
            frac(Condition::BccOpensnoop)
        );
    }
    for (c, why) in &skipped {
        println!("\n{} skipped: {why}", c.name());
    }
    // Every kept round's figure, so a reader can judge the noise: under emulation
    // or on a busy machine, a difference smaller than the spread of bare is none.
    println!();
    println!("spread over the kept rounds (ns/call of each round; added = condition - bare of the same round):");
    println!("| workload | condition | ns/call per round | added ns: median (min..max) | ratio to bare: median (min..max) |");
    println!("|---|---|---|---:|---:|");
    let spread = |v: &[f64], digits: usize| {
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.*} ({:.*}..{:.*})", digits, median(v.to_vec()), digits, min, digits, max)
    };
    for (wi, w) in WORKLOADS.iter().enumerate() {
        if ns[0][wi].is_empty() {
            continue;
        }
        for (ci, c) in CONDITIONS.iter().enumerate() {
            if ns[ci][wi].is_empty() {
                continue;
            }
            let rounds: Vec<String> = ns[ci][wi].iter().map(|v| format!("{v:.0}")).collect();
            let (added, ratio) = if ci == 0 {
                ("".to_string(), "".to_string())
            } else {
                let added: Vec<f64> = ns[ci][wi].iter().zip(&ns[0][wi]).map(|(c, b)| c - b).collect();
                let ratio: Vec<f64> = ns[ci][wi].iter().zip(&ns[0][wi]).map(|(c, b)| c / b).collect();
                (spread(&added, 0), spread(&ratio, 3))
            };
            println!("| {} | {} | {} | {added} | {ratio} |", w.name(), c.name(), rounds.join(" "));
        }
    }
    println!();
    println!("in-kernel run time per program (bpf_stats, kept rounds):");
    println!("| program | runs | ns/run |");
    println!("|---|---:|---:|");
    for (name, count, time) in badfd_stats.iter().filter(|s| s.1 > 0) {
        println!("| {name} | {count} | {:.0} |", time.as_nanos() as f64 / *count as f64);
    }
    println!();
    println!("in-kernel ns per call of each workload (runs of badfd's programs during its measured calls / calls):");
    println!("| workload | program | runs per call | ns/run | ns per call |");
    println!("|---|---|---:|---:|---:|");
    for (wi, w) in WORKLOADS.iter().enumerate() {
        let calls = args.iters * ns[Condition::Badfd.index()][wi].len() as u64;
        for (name, runs, time) in in_kernel[wi].iter().filter(|s| s.1 > 0) {
            let t = time.as_nanos() as f64;
            println!("| {} | {name} | {:.2} | {:.0} | {:.0} |", w.name(), *runs as f64 / calls as f64, t / *runs as f64, t / calls as f64);
        }
    }
    println!();
    println!("events streamed to userspace: {streamed}, lost (ring buffer full): {lost}");
    Ok(())
}

//! Worst-case memory of the real `badfd serve` under its default
//! configuration: every cache and label-set budget driven to its limit by a
//! hostile local user, with the longest paths the kernel takes.
//!
//! 1. Slow series: `--slow-series` threads, each under its own comm (prctl),
//!    open a FIFO of their own directory (their own `path_prefix`) and block
//!    for `--hold-seconds` until the bench opens the other end: one slow label
//!    set each, with a multi-second latency, past the 2000-label-set budget.
//! 2. Flood: `--processes` child processes (each its own per-process source
//!    budget) make failing opens of 4095-byte paths for `--flood-seconds`:
//!    absolute ones whose raw `path_prefix` (the first 3 names, after 3000
//!    slashes) is new on every open and about 3.3 KB long (the label cache),
//!    relative ones from a 3.9 KB-deep working directory (the kernel sends the
//!    directory: 8 KB resolved paths, the found-later held table), under a new
//!    comm every 64 opens, with 7 errnos.
//!
//! Prints VmRSS / VmHWM after each phase, what the exporter reported (label
//! sets, folds, held failures decided early, events lost), and the largest
//! resident mappings. Run as root; it asserts nothing.

#[path = "common.rs"]
mod common;

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use badfd_tests::{hold_slow_fifo_opens, letters, proc_largest_mappings, proc_status_kib as status_kib};
use clap::Parser;
use common::start_serve;

#[derive(Parser)]
#[command(about = "worst-case RSS of badfd serve: every cache and budget at its limit")]
struct Args {
    /// Seconds idle before the idle figure.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Slow label sets to make (the default budget is 2000).
    #[arg(long, default_value_t = 2200)]
    slow_series: usize,
    /// How long each FIFO open is held (its latency).
    #[arg(long, default_value_t = 6)]
    hold_seconds: u64,
    /// Child processes making failing opens.
    #[arg(long, default_value_t = 48)]
    processes: usize,
    /// Seconds of flood.
    #[arg(long, default_value_t = 20)]
    flood_seconds: u64,
    /// Port for `badfd serve`.
    #[arg(long, default_value_t = 19537)]
    port: u16,
    /// Internal: run as one flood child (working directory, seed, seconds).
    #[arg(long, hide = true, num_args = 3)]
    child: Option<Vec<String>>,
    /// More `badfd serve` flags.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

/// Longest path the kernel takes (PATH_MAX - 1).
const PATH_LEN: usize = 4095;

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
}

fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL")
}

fn set_comm(name: &str) {
    let name = cstring(&name.as_bytes()[..name.len().min(15)]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

fn row(what: &str, pid: u32) {
    println!(
        "| {what} | {} | {} | {} | {} |",
        mib(status_kib(pid, "VmRSS")),
        mib(status_kib(pid, "VmHWM")),
        mib(status_kib(pid, "RssAnon")),
        status_kib(pid, "Threads").map_or("?".into(), |t| t.to_string()),
    );
}

/// A directory 3.9 KB deep in 15 names of 250 bytes (the kernel walks at
/// most 64 names and 4095 bytes), made under `root`.
fn deep_dir(root: &Path) -> PathBuf {
    let mut dir = root.to_path_buf();
    for i in 0..15u8 {
        let name = format!("{}{}", (b'a' + i) as char, "d".repeat(249));
        dir.push(name);
    }
    std::fs::create_dir_all(&dir).expect("deep directory");
    dir
}

/// One flood child: failing opens until `seconds` have passed.
fn child(dir: &str, seed: u64, seconds: u64) {
    std::env::set_current_dir(dir).expect("chdir to the deep directory");
    let root = Path::new(dir).ancestors().nth(15).expect("root above the deep directory").to_path_buf();
    let file = root.join("file");
    let fifo = root.join("lonely-fifo");
    let looping = root.join("loop");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let filler = |path: &mut Vec<u8>| {
        // Names of 200 bytes to PATH_LEN.
        while path.len() < PATH_LEN {
            path.push(b'/');
            let n = (PATH_LEN - path.len()).min(200);
            path.extend(std::iter::repeat_n(b'f', n));
        }
        path.truncate(PATH_LEN);
    };
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        if n % 64 == 0 {
            set_comm(&format!("w{}", letters(seed * 1_000_000 + n / 64)));
        }
        let unique = letters(seed * 1_000_000_000 + n);
        let (path, flags): (Vec<u8>, i32) = match n % 8 {
            // ENOENT, absolute: a new, long raw prefix (3000 slashes, then the
            // first 3 names, the second of them new).
            0 | 1 | 2 => {
                let mut p = b"/nonexistent-badfd-rss".to_vec();
                p.extend(std::iter::repeat_n(b'/', 3000));
                p.extend_from_slice(format!("u{unique}{}", "x".repeat(60)).as_bytes());
                p.push(b'/');
                p.extend(std::iter::repeat_n(b'y', 200));
                filler(&mut p);
                (p, libc::O_RDONLY)
            }
            // ENOENT, relative to the deep working directory.
            3 | 4 => {
                let mut p = format!("missing-{unique}").into_bytes();
                filler(&mut p);
                (p, libc::O_RDONLY)
            }
            // ENOTDIR: through a regular file.
            5 => {
                let mut p = file.as_os_str().as_bytes().to_vec();
                p.extend_from_slice(format!("/{unique}").as_bytes());
                filler(&mut p);
                (p, libc::O_RDONLY)
            }
            // ENAMETOOLONG (a 300-byte name), ELOOP, ENXIO, EEXIST in turn.
            _ => match (n / 8) % 4 {
                0 => (format!("/tmp/{}{unique}", "n".repeat(300)).into_bytes(), libc::O_RDONLY),
                1 => (looping.as_os_str().as_bytes().to_vec(), libc::O_RDONLY),
                2 => (fifo.as_os_str().as_bytes().to_vec(), libc::O_WRONLY | libc::O_NONBLOCK),
                _ => (file.as_os_str().as_bytes().to_vec(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY),
            },
        };
        let path = cstring(&path);
        // SAFETY: a valid C string; a raw syscall so that libc adds nothing.
        let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, 0o600) };
        if fd >= 0 {
            // SAFETY: an fd this process just opened.
            unsafe { libc::close(fd as i32) };
        }
        n += 1;
    }
    println!("{n}");
}

/// Named (not `other`) label sets of `name` in `scrape`.
fn named(scrape: &badfd_tests::Scrape, name: &str) -> usize {
    scrape.samples.iter().filter(|s| s.name == name && s.labels.get("comm").is_some_and(|c| c != "other")).count()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(c) = &args.child {
        child(&c[0], c[1].parse()?, c[2].parse()?);
        return Ok(());
    }
    let root = std::env::temp_dir().join(format!("badfd-rss-worst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("file"), b"")?;
    std::os::unix::fs::symlink("loop", root.join("loop"))?;
    let lonely = cstring(root.join("lonely-fifo").as_os_str().as_bytes());
    // SAFETY: a valid C string.
    unsafe { libc::mkfifo(lonely.as_ptr(), 0o600) };
    let deep = deep_dir(&root);

    let extra: Vec<&str> = args.serve_args.iter().map(String::as_str).collect();
    let serve = start_serve(args.port, &extra);
    let pid = serve.pid();
    let at_ready = serve.scrape().sum("badfd_events_received_total", &[]);
    println!("badfd bench/rss_worst: {}; badfd serve {}", common::machine_line(), extra.join(" "));
    println!(
        "slow series: {} FIFO opens held {} s; flood: {} processes for {} s, {PATH_LEN}-byte paths, working directory {} bytes deep",
        args.slow_series,
        args.hold_seconds,
        args.processes,
        args.flood_seconds,
        deep.as_os_str().len()
    );
    println!();
    println!("| when | VmRSS MiB | VmHWM MiB | RssAnon MiB | threads |");
    println!("|---|---:|---:|---:|---:|");
    row("ready", pid);
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let idle_events = serve.scrape().sum("badfd_events_received_total", &[]) - at_ready;
    row(&format!("idle {} s (after one scrape)", args.idle_seconds), pid);
    let idle_maps = proc_largest_mappings(pid, 6);

    hold_slow_fifo_opens(&root, args.slow_series, Duration::from_secs(args.hold_seconds), "slow-");
    std::thread::sleep(Duration::from_millis(500));
    let after_slow = serve.scrape();
    row(&format!("{} slow label sets held {} s", args.slow_series, args.hold_seconds), pid);

    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..args.processes)
        .map(|i| {
            std::process::Command::new(&exe)
                .arg("--child")
                .arg(&deep)
                .arg((i + 1).to_string())
                .arg(args.flood_seconds.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a flood child")
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.flood_seconds) {
        std::thread::sleep(Duration::from_secs(1));
        // A scrape now and then, as under Prometheus.
        let _ = serve.try_get("/metrics", None);
    }
    let mut made: u64 = 0;
    for c in children {
        let out = c.wait_with_output()?;
        made += String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap_or(0);
    }
    std::thread::sleep(Duration::from_secs(2));
    let metrics = serve.scrape();
    row(&format!("after {} s of flood", args.flood_seconds), pid);
    // The landing page walks every slow series (quantiles).
    let _ = serve.get("/", None);
    std::thread::sleep(Duration::from_secs(5));
    serve.scrape();
    row("5 s later", pid);
    let load_maps = proc_largest_mappings(pid, 6);
    println!();
    println!("idle: {idle_events} anomalies of other processes on the host received while idle");
    println!(
        "slow label sets named: {} of {} made (folded: {}); failure label sets named: {}, folded: {}",
        named(&after_slow, "badfd_anomaly_slow_opens_total"),
        args.slow_series,
        after_slow.sum("badfd_label_sets_folded_total", &[("metric", "badfd_anomaly_slow_opens_total")]),
        named(&metrics, "badfd_anomaly_failures_total"),
        metrics.sum("badfd_label_sets_folded_total", &[("metric", "badfd_anomaly_failures_total")]),
    );
    println!(
        "flood: {made} failing opens made, {} events received, {} held failures decided early (found-later table full), lost: {} ring full, {} source throttled",
        metrics.sum("badfd_events_received_total", &[]),
        metrics.sum("badfd_found_later_decided_early_total", &[]),
        metrics.sum("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]),
        metrics.sum("badfd_kernel_events_lost_total", &[("reason", "source_throttled")]),
    );
    println!();
    println!("largest resident mappings (KiB): idle | at the end");
    for i in 0..idle_maps.len().max(load_maps.len()) {
        let f = |m: Option<&(u64, String)>| m.map(|(k, n)| format!("{k} {n}")).unwrap_or_default();
        println!("- {} | {}", f(idle_maps.get(i)), f(load_maps.get(i)));
    }
    drop(serve);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

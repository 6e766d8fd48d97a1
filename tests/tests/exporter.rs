//! Kernel tests of the exporter (issue 3): the real `badfd serve` binary, real
//! workloads, scrapes over HTTP. Run as root; `badfd serve` loads the real
//! programs and these tests fail, never skip, when it cannot.
//!
//! Other processes on the host open files too, so exact counts are asserted on
//! the workload's own label sets: `comm="workload"` and a path prefix under a
//! directory no other test uses (its name has no digits, so templating keeps it).

use std::{
    os::unix::ffi::OsStrExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use badfd::pipeline::labels::path_prefix;
use badfd_tests::{badfd_path, kernel_locked_down, run_workload, Scrape, Serve, TempDir};

const WAIT: Duration = Duration::from_secs(15);

/// The flood test fills every exporter's ring buffer on the host, so it runs
/// alone (write lock); the exact-count tests share the read lock.
static FLOOD_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn exact_counts() -> std::sync::RwLockReadGuard<'static, ()> {
    FLOOD_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// A `--path-prefix.depth` that keeps one component below `dir`.
fn depth_below(dir: &Path) -> usize {
    dir.components().count() // counts the root `/` too: one more than the named components
}

/// The prefix label of `dir/rest` at `depth_below(dir)`.
fn prefix(dir: &Path, rest: &[u8]) -> String {
    let mut p = dir.as_os_str().as_bytes().to_vec();
    p.push(b'/');
    p.extend_from_slice(rest);
    path_prefix(&p, depth_below(dir))
}

/// Scrapes until `done` holds (or `WAIT` passes), then once more after a pause
/// so that a count that would still grow shows.
fn scrape_until(serve: &Serve, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = serve.scrape();
        if done(&s) {
            break;
        }
        if Instant::now() > deadline {
            let lost: Vec<String> = s.matching("badfd_kernel_events_lost_total", &[]).map(|x| format!("{}={}", x.labels["reason"], x.value)).collect();
            panic!("timed out waiting for {what}; kernel losses: {lost:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    serve.scrape()
}

/// comm="workload" failure series under `dir`: (errno, path_prefix) -> count.
fn workload_failures_under(s: &Scrape, dir_prefix: &str) -> std::collections::BTreeMap<(String, String), f64> {
    s.matching("badfd_anomaly_failures_total", &[("comm", "workload")])
        .filter(|x| x.labels["path_prefix"].starts_with(dir_prefix))
        .map(|x| ((x.labels["errno"].clone(), x.labels["path_prefix"].clone()), x.value))
        .collect()
}

/// What the `exporter` workload's failures under `dir` must add up to, by
/// (errno, path_prefix) at `depth_below(dir)`.
fn exporter_workload_failures(dir: &Path) -> std::collections::BTreeMap<(String, String), f64> {
    let d = dir.to_str().unwrap();
    [
        ("ENOENT", prefix(dir, b"a/missing-0"), 7.0),
        ("ENOTDIR", prefix(dir, b"file/below"), 3.0),
        ("EISDIR", prefix(dir, b"f-dir"), 2.0),
        ("ENOENT", prefix(dir, b"b/missing-open"), 1.0),
        ("ENOENT", prefix(dir, b"c/no-such-dir/file"), 1.0),
        // Relative to a dirfd and to a changed cwd, resolved against the
        // workload's own fd table and cwd (it lives a second after).
        ("ENOENT", prefix(dir, b"rel/sub/missing-0"), 4.0),
        ("ENOENT", prefix(dir, b"cwd/missing-in-cwd"), 2.0),
        // Odd bytes replaced deterministically; the exposition stays parseable.
        ("ENOENT", format!("{d}/bad%FF%0Aname\"\\%01"), 1.0),
    ]
    .into_iter()
    .map(|(e, p, n)| ((e.to_string(), p), n))
    .collect()
}

/// Runs the `exporter` workload in a fresh directory (named after `name`)
/// under a `badfd serve` started with `args`, and checks that its failures
/// are labelled exactly (`exporter_workload_failures`). Returns the directory,
/// the exporter, and the scrapes before and after.
fn exporter_workload_scraped(name: &str, args: &[&str]) -> (TempDir, Serve, Scrape, Scrape) {
    let dir = TempDir::lettered(name);
    let depth = depth_below(dir.path()).to_string();
    let serve = Serve::start(&[&["--path-prefix.depth", &depth][..], args].concat());
    let before = serve.scrape();
    let d = dir.path().to_str().unwrap().to_string();

    let run = run_workload(&["exporter", &d]);
    assert_eq!(run.failures().len(), 21, "the workload made the failures this test expects");
    let total = |s: &Scrape| workload_failures_under(s, &d).values().sum::<f64>();
    let after = scrape_until(&serve, "21 workload failures", |s| total(s) >= 21.0);
    assert_eq!(workload_failures_under(&after, &d), exporter_workload_failures(dir.path()));
    (dir, serve, before, after)
}

#[test]
fn labels_failures_by_errno_comm_and_path_prefix_exactly() {
    let _exact = exact_counts();
    let (dir, _serve, before, after) = exporter_workload_scraped("exporter", &[]);
    let d = dir.path().to_str().unwrap().to_string();
    assert_eq!(prefix(dir.path(), b"rel/sub/missing-0"), format!("{d}/rel"));

    // Resolutions: at least the 6 relative ones were resolved (from /proc here;
    // by the kernel once in-kernel resolution lands), and each outcome is exposed.
    let resolved = |s: &Scrape| s.sum("badfd_path_resolutions_total", &[("method", "proc")]) + s.sum("badfd_path_resolutions_total", &[("method", "kernel")]);
    assert!(resolved(&after) - resolved(&before) >= 6.0);
    for method in ["absolute", "kernel", "proc", "unresolved"] {
        after.one("badfd_path_resolutions_total", &[("method", method)]);
    }

    // Kernel counters (host-wide, so at least the workload's).
    let delta = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert!(delta("badfd_opens_total", &[("syscall", "creat"), ("result", "failure")]) >= 1.0);
    assert!(delta("badfd_opens_total", &[("syscall", "open"), ("result", "failure")]) >= 1.0);
    assert!(delta("badfd_open_failures_total", &[("syscall", "openat"), ("errno", "ENOTDIR")]) >= 3.0);
    assert!(delta("badfd_open_failures_total", &[("syscall", "openat"), ("errno", "EISDIR")]) >= 2.0);
    assert!(delta("badfd_open_failures_total", &[("syscall", "creat"), ("errno", "ENOENT")]) >= 1.0);
    // Every errno is by name.
    for s in after.matching("badfd_open_failures_total", &[]) {
        let e = &s.labels["errno"];
        assert!(e.starts_with('E') && e.chars().skip(1).all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "{e}");
        // The serious errnos alerts name exist at 0 from start (issue 18).
        let at_zero = ["EACCES", "EMFILE", "ENFILE", "ENOSPC", "EDQUOT", "EIO", "EROFS"];
        assert!(s.value > 0.0 || at_zero.contains(&e.as_str()), "only nonzero errnos and the serious ones are exposed: {e}");
    }
    // The latency histogram from the kernel's log2 buckets: cumulative, +Inf = _count.
    for syscall in ["open", "openat", "openat2", "creat"] {
        let buckets: Vec<(f64, f64)> = after
            .matching("badfd_open_duration_seconds_bucket", &[("syscall", syscall)])
            .map(|s| (s.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY), s.value))
            .collect();
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{syscall}: {buckets:?}");
        let count = after.one("badfd_open_duration_seconds_count", &[("syscall", syscall)]);
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        assert_eq!(buckets[0].0, 256e-9, "first bound is 2^8 ns");
    }
    let count = |s: &Scrape| s.one("badfd_open_duration_seconds_count", &[("syscall", "openat")]);
    assert!(count(&after) - count(&before) >= 21.0, "the workload's openat calls are timed");

    // Self-metrics and info.
    let info = after.matching("badfd_kernel_info", &[]).next().expect("badfd_kernel_info");
    if kernel_locked_down() == Some(true) {
        assert_eq!(info.labels["attach_mode"], "tracepoint");
        assert!(!info.labels["fallback_reason"].is_empty());
    }
    assert_eq!(after.one("badfd_ready", &[]), 1.0);
    assert_eq!(after.one("badfd_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(after.one("badfd_events_received_total", &[]) >= 21.0);
    assert_eq!(after.one("badfd_events_undecodable_total", &[]), 0.0);
}

#[test]
fn relative_paths_of_a_process_that_exits_at_once() {
    let _exact = exact_counts();
    let dir = TempDir::lettered("exporter-cwd");
    let depth = depth_below(dir.path());
    let serve = Serve::start(&["--path-prefix.depth", &depth.to_string()]);
    let d = dir.path().to_str().unwrap();
    let run = run_workload(&["cwd", d]);
    assert_eq!(run.failures().len(), 2);
    // The process is gone before userspace reads its events: each open must
    // land under its resolved prefix all the same, resolved by the kernel.
    let opens = [
        (b"missing-in-cwd".as_slice(), prefix(dir.path(), b"missing-in-cwd")),
        (b"sub/../sub/missing-deeper".as_slice(), prefix(dir.path(), b"sub/missing-deeper")),
    ];
    let count = |s: &Scrape, p: &str| s.sum("badfd_anomaly_failures_total", &[("comm", "workload"), ("errno", "ENOENT"), ("path_prefix", p)]);
    let s = scrape_until(&serve, "the cwd workload's two failures", |s| {
        opens.iter().all(|(raw, resolved)| count(s, resolved) + count(s, &path_prefix(raw, depth)) >= 1.0)
    });
    for (raw, resolved) in &opens {
        let unresolved = path_prefix(raw, depth);
        assert_eq!(count(&s, resolved), 1.0, "{} under {resolved}", String::from_utf8_lossy(raw));
        assert_eq!(count(&s, &unresolved), 0.0, "{} left unresolved", String::from_utf8_lossy(raw));
    }
    assert!(s.one("badfd_path_resolutions_total", &[("method", "kernel")]) >= 2.0);
}

#[test]
fn slow_opens_and_a_sighup_threshold_change() {
    let _exact = exact_counts();
    let config = TempDir::lettered("exporter-config");
    let file = config.path().join("badfd.toml");
    std::fs::write(&file, "slow_threshold = \"1h\"\n").unwrap();
    let dirs = [TempDir::lettered("exporter-fifo"), TempDir::lettered("exporter-fifo"), TempDir::lettered("exporter-fifo")];
    let depth = depth_below(dirs[0].path());
    let serve = Serve::start(&["--config.file", file.to_str().unwrap(), "--path-prefix.depth", &depth.to_string()]);

    let slow = |s: &Scrape, dir: &TempDir| s.sum("badfd_anomaly_slow_opens_total", &[("comm", "workload"), ("path_prefix", &prefix(dir.path(), b"fifo"))]);
    let fifo = |dir: &TempDir| {
        let run = run_workload(&["fifo", dir.path().to_str().unwrap(), "300"]);
        assert_eq!(run.failures().len(), 10);
    };
    let failures_seen = |s: &Scrape, dir: &TempDir| workload_failures_under(s, dir.path().to_str().unwrap()).values().sum::<f64>() >= 10.0;

    // Threshold 1h: the 300 ms FIFO open is not an anomaly.
    fifo(&dirs[0]);
    let s = scrape_until(&serve, "the first run's failures", |s| failures_seen(s, &dirs[0]));
    assert_eq!(slow(&s, &dirs[0]), 0.0);

    // SIGHUP with the threshold at 100 ms: the same open is slow now, without reattaching.
    std::fs::write(&file, "slow_threshold = \"100ms\"\n").unwrap();
    serve.signal(libc::SIGHUP);
    scrape_until(&serve, "a successful reload", |s| s.sum("badfd_config_reloads_total", &[("result", "success")]) == 1.0);
    fifo(&dirs[1]);
    let s = scrape_until(&serve, "the slow FIFO open", |s| slow(s, &dirs[1]) >= 1.0);
    assert_eq!(slow(&s, &dirs[1]), 1.0);
    let histogram = |name: &str| s.sum(name, &[("comm", "workload")]);
    assert!(histogram("badfd_anomaly_slow_open_duration_seconds_count") >= 1.0);
    assert!(histogram("badfd_anomaly_slow_open_duration_seconds_sum") >= 0.25, "the FIFO open waits about 300 ms");
    let under = |le: &str| s.sum("badfd_anomaly_slow_open_duration_seconds_bucket", &[("comm", "workload"), ("le", le)]);
    assert!(under("0.25") < under("0.5"), "the 300 ms open is in (0.25, 0.5]");
    assert_eq!(under("+Inf"), histogram("badfd_anomaly_slow_open_duration_seconds_count"));
    // The landing page's worst offenders table shows it with its quantiles.
    let (status, page) = serve.get("/", None);
    assert_eq!(status, 200);
    assert!(page.contains(&prefix(dirs[1].path(), b"fifo")), "landing page lists the slow FIFO open");
    assert!(page.contains("href=\"/metrics\""));
    assert!(page.contains("<code>100ms</code>"), "landing page shows the reloaded threshold");

    // A broken config on SIGHUP: counted, and the 100 ms threshold stays.
    std::fs::write(&file, "slow_threshold = \"fast\"\n").unwrap();
    serve.signal(libc::SIGHUP);
    scrape_until(&serve, "a failed reload", |s| s.sum("badfd_config_reloads_total", &[("result", "failure")]) == 1.0);
    fifo(&dirs[2]);
    let s = scrape_until(&serve, "the slow FIFO open after a failed reload", |s| slow(s, &dirs[2]) >= 1.0);
    assert_eq!(slow(&s, &dirs[2]), 1.0);
    assert_eq!(s.sum("badfd_config_reloads_total", &[("result", "success")]), 1.0);
}

#[test]
fn a_flood_of_distinct_paths_stays_within_the_label_set_budget() {
    let _alone = FLOOD_LOCK.write().unwrap_or_else(|e| e.into_inner());
    const BUDGET: usize = 2000;
    const FLOOD: usize = 100_000;
    let dir = TempDir::lettered("exporter-flood");
    let depth = depth_below(dir.path());
    let serve = Serve::start(&[
        "--failures-only",
        "--metrics.max-label-sets",
        &BUDGET.to_string(),
        "--path-prefix.depth",
        &depth.to_string(),
    ]);
    let before = serve.scrape();
    run_workload(&["flood", dir.path().to_str().unwrap(), &FLOOD.to_string()]);
    let lost = |s: &Scrape| s.one("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]);
    let folded = |s: &Scrape| s.one("badfd_label_sets_folded_total", &[("metric", "badfd_anomaly_failures_total")]);
    // Failures only: every event received but the found notices is one
    // failure, counted in exactly one series (its own or `other`) once
    // decided, so the sum over all series equals them once the pipeline has
    // caught up.
    let conserved = |s: &Scrape| {
        s.sum("badfd_anomaly_failures_total", &[])
            == s.one("badfd_events_received_total", &[]) - s.one("badfd_found_later_notices_total", &[])
    };
    let s = scrape_until(&serve, "the flood to be aggregated", |s| {
        folded(s) + BUDGET as f64 + lost(s) - lost(&before) >= FLOOD as f64 && conserved(s)
    });
    let series = s.matching("badfd_anomaly_failures_total", &[]).count();
    let others = s.matching("badfd_anomaly_failures_total", &[("comm", "other"), ("path_prefix", "other")]).count();
    eprintln!("series={series} others={others} folded={} ringbuf_full={}", folded(&s), lost(&s) - lost(&before));
    assert!(series - others <= BUDGET, "{} named series over a budget of {BUDGET}", series - others);
    assert!(others <= 4, "one `other` per errno and found_later: {others}");
    let other = [("errno", "ENOENT"), ("found_later", "false"), ("comm", "other"), ("path_prefix", "other")];
    assert!(s.one("badfd_anomaly_failures_total", &other) >= 1.0);
    let flood_series = s
        .matching("badfd_anomaly_failures_total", &[("comm", "workload")])
        .filter(|x| x.labels["path_prefix"].starts_with(dir.path().to_str().unwrap()))
        .count();
    assert!(flood_series > 0 && flood_series < BUDGET, "the flood paths that came while there was room keep their own series: {flood_series}");
    // The exporter keeps answering with the budget full.
    assert_eq!(serve.get("/-/ready", None).0, 200);
}

#[test]
fn promtool_accepts_a_real_classic_scrape_and_endpoints_answer() {
    let _exact = exact_counts();
    let dir = TempDir::lettered("exporter-promtool");
    let serve = Serve::start(&[]);
    // Many errnos, odd bytes, long paths, every syscall.
    let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let n = run.failures().len() as f64;
    // The sum alone can be reached early: the loader's own probes (cargo's
    // LD_LIBRARY_PATH) count under comm="workload" too, and are decided
    // before the workload's failures. The odd-bytes one is the one checked.
    let odd_bytes = |s: &Scrape| {
        s.matching("badfd_anomaly_failures_total", &[("comm", "workload")]).any(|x| x.labels["path_prefix"].contains("%FF%0Aname"))
    };
    scrape_until(&serve, "the failures workload", |s| {
        s.sum("badfd_anomaly_failures_total", &[("comm", "workload")]) >= n && odd_bytes(s)
    });

    let (status, classic) = serve.get("/metrics", Some("text/plain"));
    assert_eq!(status, 200);
    assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    assert!(classic.contains("# TYPE badfd_opens_total counter\n"));
    assert!(classic.contains("# TYPE badfd_build_info gauge\n"));
    assert!(classic.contains("%FF%0Aname"), "the odd-bytes path is in the scrape, replaced");
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    {
        use std::io::Write;
        promtool.stdin.take().unwrap().write_all(classic.as_bytes()).unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The classic rendering carries the same samples as OpenMetrics.
    let om = serve.scrape();
    let classic = Scrape::parse(&classic);
    assert_eq!(
        om.one("badfd_build_info", &[]),
        classic.one("badfd_build_info", &[])
    );
    assert!(classic.samples.len() > 50);

    for (path, want) in [("/-/healthy", 200), ("/healthz", 200), ("/-/ready", 200), ("/", 200), ("/nothing", 404)] {
        assert_eq!(serve.get(path, None).0, want, "{path}");
    }
    let (_, page) = serve.get("/", None);
    assert!(page.contains("href=\"/metrics\"") && page.contains("attach mode"));
}

#[test]
fn config_check_validates_and_exits() {
    let dir = TempDir::lettered("exporter-check");
    let file = dir.path().join("badfd.toml");
    std::fs::write(&file, "slow_threshold = \"25ms\"\nmax_label_sets = 500\n").unwrap();
    let out = Command::new(badfd_path()).args(["serve", "--config.check", "--config.file", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("config OK: ") && stdout.contains("\"slow_threshold\":\"25ms\"") && stdout.contains("\"max_label_sets\":500"), "{stdout}");

    std::fs::write(&file, "slow_threshold = \"25 parsecs\"\n").unwrap();
    // (Without RUST_BACKTRACE, which would add anyhow's backtrace to the error.)
    let out = Command::new(badfd_path())
        .args(["serve", "--config.check", "--config.file", file.to_str().unwrap()])
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    assert!(stderr.contains("slow_threshold"), "{stderr}");
}

/// `--no-timing`: the same failures with the same labels, every open still
/// counted; the timing families are left out rather than shown as zeros, and
/// `badfd_kernel_info` says `timing="off"`.
#[test]
fn no_timing_labels_the_same_failures_and_leaves_out_the_timing_families() {
    let _exact = exact_counts();
    let (_dir, _serve, before, after) = exporter_workload_scraped("untimed", &["--no-timing"]);

    let delta = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert!(delta("badfd_opens_total", &[("syscall", "openat"), ("result", "success")]) >= 1.0);
    assert!(delta("badfd_open_failures_total", &[("syscall", "openat"), ("errno", "ENOTDIR")]) >= 3.0);
    for family in ["badfd_open_duration_seconds_count", "badfd_slow_opens_total", "badfd_inflight_opens"] {
        assert_eq!(after.matching(family, &[]).count(), 0, "{family} is exposed without timing");
    }
    let info = after.matching("badfd_kernel_info", &[]).next().expect("badfd_kernel_info");
    assert_eq!(info.labels["timing"], "off");
    assert_eq!(after.one("badfd_events_undecodable_total", &[]), 0.0);
}

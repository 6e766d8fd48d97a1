//! Faults (issue 10), with the real `badfd serve` binary: an OTLP collector
//! that is down, slow, or resets every connection; scrape clients that hang
//! up mid-response; SIGKILL and a restart; SIGTERM; SIGHUP with a broken
//! config. Run as root: the exporter loads the real programs.
//!
//! For exact OTLP counts each test's anomalies come from a workload run as a
//! user id of its own, and the exporter streams that user's anomalies only
//! (`--filter.uid`, decided in the kernel): other processes on the host add
//! nothing to the counts.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::post, Router};
use badfd_tests::{bpf_ids_held_by, failures_as, free_port, Scrape, Serve, TempDir};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use prost::Message;

/// Failed opens each OTLP fault test makes.
const ANOMALIES: u64 = 300;

/// `badfd serve` streaming only `uid`'s failures to an OTLP endpoint.
fn serve_for_uid(uid: u32, endpoint: &str, protocol: &str, extra: &[&str]) -> Serve {
    let uid = uid.to_string();
    let mut args = vec![
        "--failures-only",
        "--filter.uid",
        &uid,
        "--otlp-endpoint",
        endpoint,
        "--otlp-protocol",
        protocol,
        "--otlp-rate-limit",
        "0",
        "--otlp-batch-delay-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    Serve::start(&args)
}

/// Scrapes (each must answer, ready) until the workload's anomalies (at
/// least `ANOMALIES`: its dynamic loader adds a few of its own, as the same
/// user) have all arrived and each has its outcome.
fn until_accounted(serve: &Serve, timeout: Duration) -> (Scrape, f64) {
    serve.until_otlp_accounted(ANOMALIES, timeout, |serve, s| {
        assert_eq!(serve.get("/-/ready", None).0, 200, "ready while the collector misbehaves");
        assert_eq!(s.one("badfd_ready", &[]), 1.0);
    })
}

#[test]
fn otlp_collector_down_at_start() {
    let dir = TempDir::new("faults-down");
    for protocol in ["grpc", "http/protobuf"] {
        let uid = if protocol == "grpc" { 47101 } else { 47102 };
        let endpoint = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
        let serve = serve_for_uid(uid, &endpoint, protocol, &["--otlp-timeout-ms", "500"]);
        failures_as(uid, &dir, ANOMALIES);
        let (s, n) = until_accounted(&serve, Duration::from_secs(60));
        assert_eq!(s.otlp_anomalies("dropped_export_failed"), n, "{protocol}: every record counted as failed");
        assert_eq!(s.otlp_anomalies("exported"), 0.0);
        assert!(s.one("badfd_otlp_export_requests_total", &[("outcome", "failure")]) >= 1.0);
        assert!(serve.log().contains("OTLP export of"), "the failure is logged: {}", serve.log());
    }
}

/// A collector that takes its time: records wait and arrive, none lost,
/// and scrapes are answered meanwhile.
#[test]
fn otlp_collector_slow() {
    #[derive(Default)]
    struct Slow {
        records: AtomicU64,
        requests: AtomicU64,
    }
    async fn slow_logs(State(slow): State<Arc<Slow>>, body: Bytes) -> (StatusCode, Vec<u8>) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let Ok(request) = ExportLogsServiceRequest::decode(&body[..]) else { return (StatusCode::BAD_REQUEST, Vec::new()) };
        let n: usize = request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
        slow.records.fetch_add(n as u64, Ordering::Relaxed);
        slow.requests.fetch_add(1, Ordering::Relaxed);
        (StatusCode::OK, ExportLogsServiceResponse { partial_success: None }.encode_to_vec())
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slow = Arc::new(Slow::default());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/logs", post(slow_logs)).with_state(slow.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    let uid = 47103;
    // Small batches: several slow requests, some of them in flight at once.
    let serve = serve_for_uid(uid, &format!("http://{address}"), "http/protobuf", &["--otlp-max-batch", "40"]);
    let dir = TempDir::new("faults-slow");
    failures_as(uid, &dir, ANOMALIES);
    let (s, n) = until_accounted(&serve, Duration::from_secs(60));
    assert_eq!(s.otlp_anomalies("exported"), n, "a slow collector loses nothing");
    assert_eq!(slow.records.load(Ordering::Relaxed) as f64, n, "received == exported");
    assert!(slow.requests.load(Ordering::Relaxed) >= (ANOMALIES / 40), "in batches of at most 40");
}

/// A collector whose every connection is reset as soon as it is accepted.
#[test]
fn otlp_collector_resetting_connections() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let resets = Arc::new(AtomicU64::new(0));
    {
        let resets = resets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                reset(stream);
                resets.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let dir = TempDir::new("faults-reset");
    for (protocol, uid) in [("http/protobuf", 47104), ("grpc", 47105)] {
        let before = resets.load(Ordering::Relaxed);
        let serve = serve_for_uid(uid, &format!("http://{address}"), protocol, &["--otlp-timeout-ms", "1000"]);
        failures_as(uid, &dir, ANOMALIES);
        let (s, n) = until_accounted(&serve, Duration::from_secs(60));
        assert_eq!(s.otlp_anomalies("dropped_export_failed"), n, "{protocol}: every record counted as failed");
        assert_eq!(s.otlp_anomalies("exported"), 0.0);
        assert!(resets.load(Ordering::Relaxed) > before, "{protocol}: the exporter did connect");
    }
}

/// Closes a connection with a reset (SO_LINGER 0), not a FIN.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(stream);
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Scrapers that hang up mid-response (reset or closed), or mid-request,
/// hundreds of times: the exporter keeps serving and keeps no connection.
#[test]
fn scrape_clients_hanging_up_mid_response() {
    // Many label sets: a body far larger than the socket buffers, so that a
    // hang-up finds the exporter still writing.
    let dir = TempDir::lettered("faults-scrape");
    let depth = (dir.path().components().count() + 1).to_string();
    let mut serve = Serve::start(&["--failures-only", "--path-prefix.depth", &depth]);
    let pid = serve.child.id();
    badfd_tests::run_workload(&["prefixes", dir.path().to_str().unwrap(), "1500"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (_, body) = serve.get("/metrics", None);
        if body.len() > 128 * 1024 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.len() > 128 * 1024, "a body long enough to be cut: {} bytes", body.len());
    let fds_before = open_fds(pid);
    let connect = |address: SocketAddr| TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    for i in 0..300 {
        let mut s = connect(serve.address);
        match i % 3 {
            // Reads the start of the response, then resets.
            0 => {
                write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let mut start = [0u8; 512];
                let _ = s.read(&mut start);
                reset(s);
            }
            // Reads nothing, closes: the exporter writes into a closed socket.
            1 => {
                write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n").unwrap();
                drop(s);
            }
            // Half a request, then a reset.
            _ => {
                s.write_all(b"GET /metr").unwrap();
                reset(s);
            }
        }
    }
    // Still serving, and every scrape whole.
    for _ in 0..5 {
        let (status, body) = serve.get("/metrics", None);
        assert_eq!(status, 200);
        assert!(body.ends_with("# EOF\n"));
    }
    assert_eq!(serve.get("/-/ready", None).0, 200);
    assert!(serve.child.try_wait().unwrap().is_none(), "the exporter is alive");
    // Connections are closed once the exporter notices.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > fds_before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(open_fds(pid) <= fds_before + 2, "{} fds open, {fds_before} before", open_fds(pid));
}

/// Program and map ids loaded in the kernel now.
fn loaded_bpf_ids() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let progs = aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect();
    let maps = aya::maps::loaded_maps().filter_map(Result::ok).map(|m| m.id()).collect();
    (progs, maps)
}

/// Waits until none of `progs` and `maps` is loaded any more.
fn assert_released(what: &str, progs: &BTreeSet<u32>, maps: &BTreeSet<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (loaded_progs, loaded_maps) = loaded_bpf_ids();
        let left_progs: Vec<&u32> = progs.intersection(&loaded_progs).collect();
        let left_maps: Vec<&u32> = maps.intersection(&loaded_maps).collect();
        if left_progs.is_empty() && left_maps.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: programs {left_progs:?} and maps {left_maps:?} still loaded 10 s later");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn bpffs_entries() -> BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf").map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

/// The programs and maps of a running exporter: it holds them by fd and pins nothing.
fn held_bpf(serve: &Serve) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (progs, maps) = bpf_ids_held_by(serve.child.id());
    assert!(progs.len() >= 2, "the exporter holds its programs (fentry and fexit at least): {progs:?}");
    assert!(!maps.is_empty(), "and its maps");
    let (loaded_progs, _) = loaded_bpf_ids();
    assert!(progs.is_subset(&loaded_progs), "fdinfo ids are loaded programs");
    (progs, maps)
}

/// SIGKILL leaves nothing behind (no pinned maps, no programs once the
/// process that held them is gone), and a new exporter starts at once on
/// the same address and counts anomalies again.
#[test]
fn sigkill_then_restart() {
    let pinned_before = bpffs_entries();
    let mut serve = Serve::start(&[]);
    let address = serve.address;
    let (progs, maps) = held_bpf(&serve);
    serve.signal(libc::SIGKILL);
    let status = serve.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    assert_released("after SIGKILL", &progs, &maps);
    assert_eq!(bpffs_entries(), pinned_before, "nothing pinned in /sys/fs/bpf");

    // The same port at once (no TIME_WAIT trouble: the listener sets SO_REUSEADDR).
    let started = Instant::now();
    let again = Serve::start_at(address, &["--failures-only"]);
    eprintln!("restarted and ready in {:?}", started.elapsed());
    let dir = TempDir::new("faults-restart");
    let before = again.scrape().sum("badfd_anomaly_failures_total", &[("comm", "workload")]);
    badfd_tests::run_workload(&["burst", dir.path().to_str().unwrap(), "25"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while again.scrape().sum("badfd_anomaly_failures_total", &[("comm", "workload")]) < before + 25.0 {
        assert!(Instant::now() < deadline, "the restarted exporter does not count the workload's failures");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM: not ready, programs detached, exit 0, promptly.
#[test]
fn sigterm_detaches_and_exits_zero() {
    let pinned_before = bpffs_entries();
    let mut serve = Serve::start(&[]);
    let (progs, maps) = held_bpf(&serve);
    let started = Instant::now();
    serve.signal(libc::SIGTERM);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status on SIGTERM: {status}; log: {}", serve.log());
    assert_released("after SIGTERM", &progs, &maps);
    assert_eq!(bpffs_entries(), pinned_before);
    assert!(serve.log().contains("shutting down"), "{}", serve.log());
}

/// A broken config on SIGHUP: the running one stays (its threshold is still
/// what the landing page shows and the kernel uses), the error is logged in
/// one line naming the field, and counted; a fixed file is then taken.
#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let dir = TempDir::new("faults-sighup");
    let file = dir.path().join("badfd.toml");
    std::fs::write(&file, "slow_threshold = \"250ms\"\n").unwrap();
    let serve = Serve::start(&["--config.file", file.to_str().unwrap()]);
    let reloads = |result: &str| serve.scrape().sum("badfd_config_reloads_total", &[("result", result)]);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for broken in ["slow_threshold = \"soon\"\n", "slow_threshold = [\n", "max_label_sets = 1\n"] {
        let failures = reloads("failure");
        std::fs::write(&file, broken).unwrap();
        serve.signal(libc::SIGHUP);
        wait_for("a failed reload", &|| reloads("failure") == failures + 1.0);
        assert_eq!(serve.get("/-/ready", None).0, 200);
        let (_, page) = serve.get("/", None);
        assert!(page.contains("<code>250ms</code>"), "the running threshold stays");
        assert!(page.contains(&format!("{} ns", 250_000_000)), "in the kernel too");
    }
    let log = serve.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("reload failed, keeping the running configuration")).collect();
    assert_eq!(errors.len(), 3, "one line per failed reload: {log}");
    assert!(errors[0].contains("slow_threshold") && errors[0].contains("soon"), "{}", errors[0]);
    assert!(errors[2].contains("max_label_sets"), "{}", errors[2]);
    assert_eq!(reloads("success"), 0.0);

    std::fs::write(&file, "slow_threshold = \"75ms\"\n").unwrap();
    serve.signal(libc::SIGHUP);
    wait_for("a successful reload", &|| reloads("success") == 1.0);
    let (_, page) = serve.get("/", None);
    assert!(page.contains("<code>75ms</code>") && page.contains(&format!("{} ns", 75_000_000)), "the fixed file is taken");
}

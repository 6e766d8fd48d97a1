//! What node_exporter and exporter-toolkit users expect of `badfd serve`
//! (issue 20): `:PORT` on IPv6 and IPv4, several listen addresses, a log
//! without terminal colours in logfmt or JSON, gzip when the scraper asks for
//! it, the standard `process_*` metrics, `badfd_build_info` with the git
//! revision, and Prometheus' config-reload gauges. The real binary loads the
//! real programs: run as root.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use badfd_tests::{badfd_path, free_port, Scrape, Serve, TempDir};

/// One raw HTTP/1.1 GET: (status, headers lowercased, body bytes).
fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(response[..end].to_vec()).unwrap().to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "this client reads whole bodies only: {head}");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, response[end + 4..].to_vec())
}

/// `/metrics` of `address`, plain, parsed.
fn scrape_at(address: SocketAddr) -> Scrape {
    let (status, head, body) = get(address, "/metrics", &[]);
    assert_eq!(status, 200, "{address}: {head}");
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"), "{address}: whole OpenMetrics exposition");
    Scrape::parse(&text)
}

/// A port free on IPv6 and IPv4 at once (a dual-stack `[::]:0`).
fn free_dual_stack_port() -> u16 {
    std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap().local_addr().unwrap().port()
}

/// `:PORT` answers on `[::1]` and on `127.0.0.1` (one dual-stack socket), a
/// second `--web.listen-address` answers too, and the log says where it
/// serves in logfmt, with no ESC byte though stderr is a file.
#[test]
fn every_address_listener_answers_ipv6_and_ipv4_and_a_second_address_answers_too() {
    let every = free_dual_stack_port();
    let second = free_port("127.0.0.1");
    let listen = [format!(":{every}"), format!("127.0.0.1:{second}")];
    let command = Serve::command_listening(&[&listen[0], &listen[1]], &[]);
    let serve = Serve::launch(command, SocketAddr::from((Ipv4Addr::LOCALHOST, second)), Serve::is_ready);
    for address in [SocketAddr::from((Ipv6Addr::LOCALHOST, every)), SocketAddr::from((Ipv4Addr::LOCALHOST, every)), SocketAddr::from((Ipv4Addr::LOCALHOST, second))] {
        let scrape = scrape_at(address);
        assert_eq!(scrape.one("badfd_ready", &[]), 1.0, "{address}");
    }
    // Only what was asked: nothing on another loopback address for the second one.
    assert!(TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 2], second)), Duration::from_secs(1)).is_err());

    let log = serve.log();
    assert!(!log.as_bytes().contains(&0x1b), "no ESC byte in a log that is not a terminal:\n{log}");
    let serving: Vec<&str> = log.lines().filter(|l| l.contains("msg=\"serving /metrics\"")).collect();
    assert_eq!(serving.len(), 1, "{log}");
    assert!(serving[0].contains(&format!("addresses=\"[::]:{every} 127.0.0.1:{second}\"")), "{}", serving[0]);
    assert!(!log.contains("IPv4 only"), "this host has IPv6: {log}");
    for line in log.lines() {
        assert!(line.starts_with("time=") && line.contains(" level=") && line.contains(" msg="), "a logfmt line: {line:?}");
    }
}

/// `socket(AF_INET6, …)` refused with EAFNOSUPPORT, as on a host booted with
/// `ipv6.disable=1`: a seccomp filter the child installs before exec (it
/// allows every other call, so the programs load as usual).
fn without_ipv6(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr at 0, arch at 4, args[0] (low half) at 16.
    let filter = [
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 5, AUDIT_ARCH),
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 0, 3, libc::SYS_socket as u32),
        op(LD_W_ABS, 0, 0, 16),
        op(JEQ_K, 0, 1, libc::AF_INET6 as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: between fork and exec the child makes two prctl calls on a
    // filter that lives in this (copied) stack frame; nothing allocates.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// On a host without IPv6, `:PORT` listens on 0.0.0.0 and says so in one
/// log line.
#[test]
fn every_address_without_ipv6_falls_back_to_ipv4_and_says_so() {
    let port = free_dual_stack_port();
    let listen = format!(":{port}");
    let mut command = Serve::command_listening(&[&listen], &[]);
    without_ipv6(&mut command);
    let serve = Serve::launch(command, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Serve::is_ready);
    assert_eq!(scrape_at(serve.address).one("badfd_ready", &[]), 1.0);
    assert!(TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), Duration::from_secs(1)).is_err(), "nothing on IPv6");
    let log = serve.log();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("no IPv6")).collect();
    assert_eq!(said.len(), 1, "one line: {log}");
    assert!(said[0].contains(&format!("listening on 0.0.0.0:{port} for :{port}, IPv4 only")) && said[0].contains("Address family not supported"), "{}", said[0]);
    assert!(log.contains(&format!("addresses=0.0.0.0:{port} ")), "{log}");
}

/// A bad address among good ones, and a busy one, are one clear line each,
/// before anything is loaded.
#[test]
fn a_bad_or_busy_address_among_several_is_a_clear_error() {
    let run = |listen: &[&str]| {
        let mut command = Command::new(badfd_path());
        command.arg("serve");
        for address in listen {
            command.args(["--web.listen-address", address]);
        }
        let out = command.env_remove("BADFD_WEB_LISTEN_ADDRESS").stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{listen:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        stderr
    };
    let free = format!(":{}", free_dual_stack_port());
    let stderr = run(&[&free, "[::1]:80:80"]);
    assert!(stderr.contains("--web.listen-address: \"[::1]:80:80\": expected HOST:PORT or :PORT"), "{stderr}");
    let stderr = run(&[&free, ":65536"]);
    assert!(stderr.contains("--web.listen-address: \":65536\": bad port"), "{stderr}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_address = busy.local_addr().unwrap().to_string();
    let stderr = run(&[&free, &busy_address]);
    assert!(stderr.contains(&format!("listening on {busy_address}: ")) && stderr.contains("in use"), "{stderr}");
}

/// gzip when the scraper sends `Accept-Encoding: gzip` (as Prometheus does),
/// plain text otherwise; the decoded body is the same exposition.
#[test]
fn metrics_are_gzipped_when_asked() {
    let serve = Serve::start(&[]);
    let (status, head, body) = get(serve.address, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("\r\ncontent-encoding: gzip"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
    assert_eq!(&body[..2], [0x1f, 0x8b], "a gzip member");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    assert!(text.ends_with("# EOF\n"), "the whole exposition");
    let scrape = Scrape::parse(&text);
    assert_eq!(scrape.one("badfd_ready", &[]), 1.0);
    assert!(scrape.matching("badfd_opens_total", &[]).count() >= 2, "the kernel counters are in it");
    assert!(body.len() * 3 < text.len(), "compressed: {} bytes for {}", body.len(), text.len());

    for headers in [&[][..], &[("Accept-Encoding", "gzip;q=0, identity")][..], &[("Accept-Encoding", "br")][..]] {
        let (status, head, body) = get(serve.address, "/metrics", headers);
        assert_eq!(status, 200);
        assert!(!head.contains("content-encoding"), "{headers:?}: {head}");
        let text = String::from_utf8(body).expect("plain text");
        assert_eq!(Scrape::parse(&text).one("badfd_ready", &[]), 1.0);
    }
}

fn proc_stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name; index 0 is field 3 (state, not a number: 0 here).
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().map(|f| f.parse().unwrap_or(0)).collect()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn sysconf(name: libc::c_int) -> f64 {
    // SAFETY: sysconf only reads configuration values.
    unsafe { libc::sysconf(name) as f64 }
}

/// The `process_*` metrics against /proc of the serve pid, read around the
/// same scrape. Open fds: the count read by the test and the one the
/// exporter reports differ by the fds that live only during the scrape: the
/// accepted connection's socket, and the directory handle the exporter
/// holds while it counts /proc/self/fd (counted, as Go's client counts it);
/// the test's reads before and after the scrape see neither. So the metric
/// is within [before, after + 2]; everything else badfd holds (maps,
/// programs, links, the ring buffer's epoll) stays put.
#[test]
fn process_metrics_match_proc_of_the_serve_pid() {
    let serve = Serve::start(&[]);
    let pid = serve.pid();
    // Settle: the first scrape may start pools or caches that stay.
    serve.scrape();
    let ticks = sysconf(libc::_SC_CLK_TCK);
    let cpu = |f: &[u64]| (f[11] + f[12]) as f64 / ticks;
    let (stat_before, fds_before) = (proc_stat_fields(pid), fd_count(pid));
    let scrape = serve.scrape();
    let (stat_after, fds_after) = (proc_stat_fields(pid), fd_count(pid));

    let open = scrape.one("process_open_fds", &[]);
    let (low, high) = (fds_before.min(fds_after) as f64, fds_before.max(fds_after) as f64 + 2.0);
    assert!(low <= open && open <= high, "process_open_fds {open}, ls /proc/{pid}/fd: {fds_before} before, {fds_after} after");
    assert!(open >= 10.0, "maps, programs, ring buffer, sockets: {open}");

    let cpu_seconds = scrape.one("process_cpu_seconds_total", &[]);
    assert!(cpu(&stat_before) <= cpu_seconds && cpu_seconds <= cpu(&stat_after), "{} <= {cpu_seconds} <= {}", cpu(&stat_before), cpu(&stat_after));

    let btime: f64 = std::fs::read_to_string("/proc/stat").unwrap().lines().find_map(|l| l.strip_prefix("btime ")).unwrap().trim().parse().unwrap();
    let start = btime + stat_after[19] as f64 / ticks;
    assert!((scrape.one("process_start_time_seconds", &[]) - start).abs() < 0.001, "start time {start}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(start <= now && start > now - 300.0, "started by this test: {start} vs now {now}");

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits.lines().find_map(|l| l.strip_prefix("Max open files")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(scrape.one("process_max_fds", &[]), soft);

    // Memory moves between reads: the scrape's value within the two reads' range, with slack.
    let page = sysconf(libc::_SC_PAGESIZE);
    let rss = scrape.one("process_resident_memory_bytes", &[]);
    let (rss_a, rss_b) = (stat_before[21] as f64 * page, stat_after[21] as f64 * page);
    assert!(rss >= rss_a.min(rss_b) * 0.8 && rss <= rss_a.max(rss_b) * 1.25, "rss {rss}: /proc says {rss_a} and {rss_b}");
    let vsize = scrape.one("process_virtual_memory_bytes", &[]);
    let (vs_a, vs_b) = (stat_before[20] as f64, stat_after[20] as f64);
    assert!(vsize >= vs_a.min(vs_b) * 0.8 && vsize <= vs_a.max(vs_b) * 1.25 && vsize > rss, "vsize {vsize}: /proc says {vs_a} and {vs_b}");

    // The classic text format has them too, with the counter's _total.
    let (_, classic) = serve.get("/metrics", Some("text/plain"));
    assert!(classic.contains("# TYPE process_cpu_seconds_total counter\n"), "{classic}");
    assert!(classic.contains("# TYPE process_open_fds gauge\n"));
}

/// `badfd_build_info{revision}` is the worktree's `git rev-parse --short HEAD`
/// (baked by exporter/build.rs), `version` the crate's.
#[test]
fn build_info_names_the_git_revision() {
    let serve = Serve::start(&[]);
    let git = Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("git");
    assert!(git.status.success(), "the tests run from a git checkout: {git:?}");
    let revision = String::from_utf8(git.stdout).unwrap().trim().to_string();
    let scrape = serve.scrape();
    let info = scrape.matching("badfd_build_info", &[]).next().expect("badfd_build_info");
    assert_eq!(
        info.labels.get("revision").map(String::as_str),
        Some(revision.as_str()),
        "built from another commit? rebuild (cargo build -p badfd --bin badfd): {info:?}"
    );
    assert_eq!(info.labels["version"], env!("CARGO_PKG_VERSION"));
    let rustc = &info.labels["rustc_version"];
    assert!(rustc.split('.').count() >= 3 && rustc.chars().next().unwrap().is_ascii_digit(), "{rustc}");
}

/// `badfd_config_last_reload_successful` is 1 from start, 0 after a SIGHUP
/// with a broken config (the success timestamp stays), 1 again after a good
/// one (a newer timestamp). With `--log.format json --log.level warn`: the
/// log is one JSON object per line with level and msg, the failed reload one
/// `error` record, and no info record; the config file's name has an ESC in
/// it, which reaches the log escaped, never as the byte.
#[test]
fn reload_gauges_follow_sighup_and_json_logs_are_one_object_per_line() {
    let dir = TempDir::new("scrape-conventions-reload");
    let file = dir.path().join("bad\x1b[31mname.toml");
    std::fs::write(&file, "slow_threshold = \"250ms\"\n").unwrap();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let serve = Serve::start(&["--config.file", file.to_str().unwrap(), "--log.format", "json", "--log.level", "warn"]);
    let ready = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let gauges = |s: &Scrape| (s.one("badfd_config_last_reload_successful", &[]), s.one("badfd_config_last_reload_success_timestamp_seconds", &[]));
    let reloads = |result: &str| serve.scrape().sum("badfd_config_reloads_total", &[("result", result)]);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(Instant::now() < deadline, "no {what} in 15 s: {}", serve.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let (ok, at_start) = gauges(&serve.scrape());
    assert_eq!(ok, 1.0, "the start-up load is a success");
    assert!(started - 1.0 <= at_start && at_start <= ready + 1.0, "{started} <= {at_start} <= {ready}");

    std::fs::write(&file, "slow_threshold = \"soon\"\n").unwrap();
    serve.signal(libc::SIGHUP);
    wait_for("failed reload", &|| reloads("failure") == 1.0);
    assert_eq!(gauges(&serve.scrape()), (0.0, at_start), "failed; the last success's time stays");

    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "slow_threshold = \"75ms\"\n").unwrap();
    serve.signal(libc::SIGHUP);
    wait_for("successful reload", &|| reloads("success") == 1.0);
    let (ok, at_reload) = gauges(&serve.scrape());
    assert_eq!(ok, 1.0);
    assert!(at_reload > at_start, "{at_reload} > {at_start}");

    let log = serve.log();
    assert!(!log.as_bytes().contains(&0x1b), "no ESC byte:\n{log}");
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}")))
        .collect();
    for r in &records {
        assert!(r.is_object() && r["level"].is_string() && r["msg"].is_string() && r["time"].is_string(), "{r}");
        assert_ne!(r["level"], "info", "--log.level warn: {r}");
    }
    let failed: Vec<&serde_json::Value> = records.iter().filter(|r| r["msg"].as_str().unwrap().starts_with("reload failed")).collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(failed[0]["level"], "error");
    let message = failed[0]["msg"].as_str().unwrap();
    assert!(message.contains("bad\x1b[31mname.toml") && message.contains("\"soon\""), "the file's name, ESC and all, once decoded: {message}");
}

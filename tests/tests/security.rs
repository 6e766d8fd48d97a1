//! Security of the exporter (issue 10), as root, against the real `badfd`
//! binary with the real programs loaded: it listens where told and nowhere
//! else; TLS (and mTLS) and basic auth from an exporter-toolkit web config,
//! checked with real certificates (made by the openssl CLI) and a real client
//! (curl); path redaction checked in the real scrape, the real OTLP records
//! and the real `trace --json` output; and the capabilities after the drop are
//! the same with TLS and auth as without.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use badfd_tests::{
    badfd_path, free_port,
    otlp_receiver::{Receiver, Transport},
    run_workload, workload_path, Scrape, Serve, TempDir,
};

const WAIT: Duration = Duration::from_secs(20);

/// Starts `badfd serve` with exactly `args` (the listen address included) and
/// waits until `ready` holds; panics with its log if it exits or never does.
fn serve_with(address: SocketAddr, args: &[&str], ready: impl Fn(&Serve) -> bool) -> Serve {
    let mut command = Command::new(badfd_path());
    command.arg("serve").args(args);
    Serve::launch(command, address, ready)
}

/// Runs `badfd serve args` that must fail at once; its stderr.
fn serve_fails(args: &[&str]) -> String {
    let output = Command::new(badfd_path()).arg("serve").args(args).stdin(Stdio::null()).output().unwrap();
    assert!(!output.status.success(), "badfd serve {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Bind
// ---------------------------------------------------------------------------

/// Socket inodes of a process (from its /proc/PID/fd links).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(link) = std::fs::read_link(entry.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                out.push(inode.parse().unwrap());
            }
        }
    }
    out
}

/// `0100007F:4BAB` (IPv4) or 32 hex digits (IPv6, four little-endian words) and a port.
fn parse_proc_address(text: &str) -> SocketAddr {
    let (ip, port) = text.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let words: Vec<u32> = (0..ip.len() / 8).map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).unwrap()).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match bytes.len() {
        4 => SocketAddr::from((<[u8; 4]>::try_from(&bytes[..]).unwrap(), port)),
        16 => SocketAddr::from((<[u8; 16]>::try_from(&bytes[..]).unwrap(), port)),
        n => panic!("address of {n} bytes: {text}"),
    }
}

/// The process's sockets as /proc/PID/net/{tcp,tcp6,udp,udp6} list them:
/// (table, local address, state in hex: 0A is LISTEN).
fn sockets_of(pid: u32) -> Vec<(&'static str, SocketAddr, String)> {
    let inodes = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if inodes.contains(&f[9].parse().unwrap()) {
                out.push((table, parse_proc_address(f[1]), f[3].to_string()));
            }
        }
    }
    out
}

#[test]
fn listens_only_where_told_on_ipv4_and_ipv6() {
    assert_eq!(parse_proc_address("0100007F:0050"), "127.0.0.1:80".parse().unwrap());
    assert_eq!(parse_proc_address("00000000000000000000000001000000:0050"), "[::1]:80".parse().unwrap());
    for host in ["127.0.0.1", "::1"] {
        let address = SocketAddr::new(host.parse().unwrap(), free_port(host));
        let listen = address.to_string();
        let serve = serve_with(address, &["--web.listen-address", &listen], |s| {
            std::net::TcpStream::connect_timeout(&s.address, Duration::from_millis(200)).is_ok() && s.try_get("/-/ready", None).is_ok_and(|(c, _)| c == 200)
        });
        // One TCP socket in LISTEN, at exactly that address; no UDP at all
        // (OTLP is off; when on, it only connects out).
        let sockets = sockets_of(serve.child.id());
        let listening: Vec<_> = sockets.iter().filter(|(t, _, state)| t.starts_with("tcp") && state == "0A").collect();
        assert_eq!(listening.len(), 1, "{sockets:?}");
        assert_eq!(listening[0].1, address, "{sockets:?}");
        assert_eq!(listening[0].0, if host.contains(':') { "tcp6" } else { "tcp" });
        assert!(sockets.iter().all(|(t, _, _)| t.starts_with("tcp")), "no UDP socket: {sockets:?}");
        // Not on another address of the host: 127.0.0.2 is loopback too but not bound.
        if !host.contains(':') {
            assert!(std::net::TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 2], address.port())), Duration::from_secs(1)).is_err());
        } else {
            assert!(std::net::TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], address.port())), Duration::from_secs(1)).is_err());
        }
    }
}

#[test]
fn a_bad_or_busy_listen_address_is_one_clear_line() {
    for (bad, says) in [("localhost", "expected HOST:PORT or :PORT"), ("127.0.0.1:99999", "expected HOST:PORT"), (":http", "bad port")] {
        let stderr = serve_fails(&["--web.listen-address", bad]);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--web.listen-address") && stderr.contains(says), "{bad}: {stderr}");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let stderr = serve_fails(&["--web.listen-address", &address]);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("listening on {address}")) && stderr.contains("in use"), "{stderr}");
}

// ---------------------------------------------------------------------------
// TLS and basic auth
// ---------------------------------------------------------------------------

fn run(program: &str, args: &[&str], dir: &Path) {
    let output = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA and a certificate it signs (`name.crt`, `name.key`) for `san`
/// (e.g. `IP:127.0.0.1`) and `usage` (serverAuth or clientAuth).
fn make_ca(dir: &Path, ca: &str) {
    run(
        "openssl",
        &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
          "-keyout", &format!("{ca}.key"), "-out", &format!("{ca}.crt"), "-subj", &format!("/CN={ca}"),
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        dir,
    );
}

fn make_cert(dir: &Path, ca: &str, name: &str, san: &str, usage: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), format!("subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")).unwrap();
    run(
        "openssl",
        &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={name}")],
        dir,
    );
    run(
        "openssl",
        &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key"),
          "-CAcreateserial", "-days", "1", "-out", &format!("{name}.crt"), "-extfile", &format!("{name}.ext")],
        dir,
    );
}

struct Curl {
    /// curl's exit status: 0, or why it failed (7 refused, 35 handshake, 52/56 no reply, 60 untrusted).
    exit: i32,
    status: u16,
    headers: String,
    body: String,
}

fn curl(dir: &Path, url: &str, args: &[&str]) -> Curl {
    let headers = dir.join("curl-headers");
    let body = dir.join("curl-body");
    let _ = std::fs::remove_file(&headers);
    let _ = std::fs::remove_file(&body);
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "15", "--noproxy", "*", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .current_dir(dir)
        .output()
        .expect("curl (scripts/setup.sh --test installs it)");
    Curl {
        exit: output.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

/// Capability masks of every thread of `pid`.
fn thread_masks(pid: u32) -> Vec<[u64; 5]> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| badfd::privileges::status_masks(&s).expect("capability lines"))
        .collect()
}

#[test]
fn tls_and_basic_auth_from_an_exporter_toolkit_web_config() {
    let dir = TempDir::lettered("security-tls");
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "otherca");
    make_cert(d, "ca", "server", "IP:127.0.0.1", "serverAuth");
    // Low-cost hashes: the test build of bcrypt is unoptimized.
    let alice = bcrypt::hash("alice-password", 4).unwrap();
    let web = d.join("web.yml");
    std::fs::write(&web, format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: '{alice}'\n")).unwrap();

    let port = free_port("127.0.0.1");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let listen = address.to_string();
    let serve = serve_with(address, &["--web.listen-address", &listen, "--web.config.file", web.to_str().unwrap()], |_| {
        curl(d, &url("/-/ready"), &["--cacert", "ca.crt"]).status == 200
    });

    // The right password: 200 and the exposition.
    let ok = curl(d, &url("/metrics"), &["--cacert", "ca.crt", "-u", "alice:alice-password"]);
    assert_eq!((ok.exit, ok.status), (0, 200), "{}", ok.body);
    let scrape = Scrape::parse(&ok.body);
    assert_eq!(scrape.one("badfd_ready", &[]), 1.0);
    // Wrong password, unknown user, no credentials: 401 with a challenge.
    for args in [&["-u", "alice:wrong"][..], &["-u", "mallory:alice-password"], &[]] {
        let mut all = vec!["--cacert", "ca.crt"];
        all.extend_from_slice(args);
        for path in ["/metrics", "/"] {
            let refused = curl(d, &url(path), &all);
            assert_eq!(refused.status, 401, "{path} {args:?}");
            assert!(refused.headers.to_ascii_lowercase().contains("www-authenticate: basic realm=\"badfd\""), "{}", refused.headers);
            assert!(!refused.body.contains("badfd_"), "nothing of the exposition");
        }
    }
    // Health checks answer without credentials (kubelet probes).
    for path in ["/-/healthy", "/-/ready", "/healthz"] {
        assert_eq!(curl(d, &url(path), &["--cacert", "ca.crt"]).status, 200, "{path}");
    }
    // Plain HTTP to the TLS port gets no answer; a client that does not trust
    // the certificate's CA, or reaches it under a name it was not made for, refuses it.
    let plain = curl(d, &format!("http://127.0.0.1:{port}/metrics"), &["-u", "alice:alice-password"]);
    assert!(plain.exit != 0 && plain.status != 200, "plain HTTP answered: exit {} status {}", plain.exit, plain.status);
    assert_eq!(curl(d, &url("/metrics"), &["--cacert", "otherca.crt", "-u", "alice:alice-password"]).exit, 60, "untrusted CA");
    let by_name = curl(d, &format!("https://localhost:{port}/metrics"), &["--cacert", "ca.crt", "-u", "alice:alice-password", "--resolve", &format!("localhost:{port}:127.0.0.1")]);
    assert_eq!(by_name.exit, 60, "certificate for 127.0.0.1 only, not localhost");
    // TLS 1.2 and 1.3 are spoken; 1.1 is not.
    assert_eq!(curl(d, &url("/-/ready"), &["--cacert", "ca.crt", "--tlsv1.2", "--tls-max", "1.2"]).status, 200);
    assert_eq!(curl(d, &url("/-/ready"), &["--cacert", "ca.crt", "--tlsv1.3"]).status, 200);
    assert_ne!(curl(d, &url("/-/ready"), &["--cacert", "ca.crt", "--tlsv1.1", "--tls-max", "1.1"]).exit, 0);

    // Every refusal is counted.
    let s = Scrape::parse(&curl(d, &url("/metrics"), &["--cacert", "ca.crt", "-u", "alice:alice-password"]).body);
    assert_eq!(s.one("badfd_web_unauthorized_requests_total", &[]), 6.0);
    assert!(s.one("badfd_web_tls_handshake_failures_total", &[]) >= 3.0, "plain, untrusted CA, wrong name");

    // The TLS and auth code (with its bcrypt threads) keeps the capabilities
    // of a plain exporter: the same sets, in every thread.
    let plain_serve = Serve::start(&[]);
    let plain_masks = thread_masks(plain_serve.child.id());
    drop(plain_serve);
    let main_masks = plain_masks[0];
    assert!(plain_masks.iter().all(|m| *m == main_masks), "{plain_masks:x?}");
    assert_eq!(main_masks[0] & (1 << 21 | 1 << 38 | 1 << 39), 0, "no CAP_SYS_ADMIN, CAP_PERFMON or CAP_BPF in effect: {:x}", main_masks[0]);
    let tls_masks = thread_masks(serve.child.id());
    assert!(tls_masks.iter().all(|m| *m == main_masks), "{tls_masks:x?} vs {main_masks:x?}");

    // SIGHUP: a new user set takes effect; a broken file keeps the running one.
    let bob = bcrypt::hash("bob-password", 4).unwrap();
    std::fs::write(&web, format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  bob: '{bob}'\n")).unwrap();
    serve.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while curl(d, &url("/metrics"), &["--cacert", "ca.crt", "-u", "bob:bob-password"]).status != 200 {
        assert!(Instant::now() < deadline, "bob never let in after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl(d, &url("/metrics"), &["--cacert", "ca.crt", "-u", "alice:alice-password"]).status, 401);
    // SIGHUP: a rotated certificate (here from another CA) serves the next connection.
    make_cert(d, "otherca", "rotated", "IP:127.0.0.1", "serverAuth");
    std::fs::write(&web, format!("tls_server_config:\n  cert_file: rotated.crt\n  key_file: rotated.key\nbasic_auth_users:\n  bob: '{bob}'\n")).unwrap();
    serve.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while curl(d, &url("/metrics"), &["--cacert", "otherca.crt", "-u", "bob:bob-password"]).status != 200 {
        assert!(Instant::now() < deadline, "the rotated certificate never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl(d, &url("/metrics"), &["--cacert", "ca.crt", "-u", "bob:bob-password"]).exit, 60, "the old certificate is gone");
    std::fs::write(&web, "basic_auth_users:\n  bob: not-a-hash\n").unwrap();
    serve.signal(libc::SIGHUP);
    let reloads = |result: &str| {
        Scrape::parse(&curl(d, &url("/metrics"), &["--cacert", "otherca.crt", "-u", "bob:bob-password"]).body).sum("badfd_config_reloads_total", &[("result", result)])
    };
    let deadline = Instant::now() + WAIT;
    while reloads("failure") < 1.0 {
        assert!(Instant::now() < deadline, "the broken reload was never counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reloads("success"), 2.0);
    assert_eq!(curl(d, &url("/metrics"), &["--cacert", "otherca.crt", "-u", "bob:bob-password"]).status, 200, "the running config stays");
    // A valid file without TLS: turning TLS off takes a restart, so this
    // reload fails too and TLS stays.
    std::fs::write(&web, format!("basic_auth_users:\n  bob: '{bob}'\n")).unwrap();
    serve.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while reloads("failure") < 2.0 {
        assert!(Instant::now() < deadline, "turning TLS off by SIGHUP was not refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    let plain = curl(d, &format!("http://127.0.0.1:{port}/-/ready"), &[]);
    assert!(plain.exit != 0 && plain.status != 200, "TLS was turned off by a reload");
}

#[test]
fn mutual_tls_lets_in_only_clients_of_the_named_ca() {
    let dir = TempDir::lettered("security-mtls");
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "clientca");
    make_ca(d, "otherca");
    make_cert(d, "ca", "server", "IP:127.0.0.1", "serverAuth");
    make_cert(d, "clientca", "prometheus", "DNS:prometheus", "clientAuth");
    make_cert(d, "otherca", "intruder", "DNS:prometheus", "clientAuth");
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clientca.crt\n  min_version: TLS13\n",
    )
    .unwrap();
    let port = free_port("127.0.0.1");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("https://127.0.0.1:{port}/metrics");
    let client = ["--cacert", "ca.crt", "--cert", "prometheus.crt", "--key", "prometheus.key"];
    let _serve = serve_with(address, &["--web.listen-address", &address.to_string(), "--web.config.file", web.to_str().unwrap()], |_| {
        curl(d, &url, &client).status == 200
    });
    let ok = curl(d, &url, &client);
    assert_eq!((ok.exit, ok.status), (0, 200));
    assert!(ok.body.contains("badfd_ready 1"), "{}", ok.body);
    let anonymous = curl(d, &url, &["--cacert", "ca.crt"]);
    assert!(anonymous.exit != 0 && anonymous.status == 0, "no client certificate: exit {} status {}", anonymous.exit, anonymous.status);
    let intruder = curl(d, &url, &["--cacert", "ca.crt", "--cert", "intruder.crt", "--key", "intruder.key"]);
    assert!(intruder.exit != 0 && intruder.status == 0, "another CA's client: exit {} status {}", intruder.exit, intruder.status);
    // min_version TLS13: a TLS 1.2 client is refused.
    assert_ne!(curl(d, &url, &[&client[..], &["--tls-max", "1.2"]].concat()).exit, 0);
}

#[test]
fn a_bad_web_config_file_is_one_clear_line() {
    let dir = TempDir::lettered("security-webcfg");
    let d = dir.path();
    make_ca(d, "ca");
    make_cert(d, "ca", "server", "IP:127.0.0.1", "serverAuth");
    make_cert(d, "ca", "other", "IP:127.0.0.1", "serverAuth");
    let cases = [
        ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n", "key_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n", "do not go together"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n", "TLS10 is not offered"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "unknown field `cipher_suites`"),
        ("basic_auth_users: [unclosed\n", "web.yml"),
    ];
    let web = d.join("web.yml");
    for (text, says) in cases {
        std::fs::write(&web, text).unwrap();
        let port = free_port("127.0.0.1").to_string();
        let stderr = serve_fails(&["--web.listen-address", &format!("127.0.0.1:{port}"), "--web.config.file", web.to_str().unwrap()]);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{text}: {stderr}");
        assert!(stderr.starts_with("badfd: web config file ") && stderr.contains(says), "{text}: {stderr}");
    }
    let stderr = serve_fails(&["--web.config.file", d.join("nope.yml").to_str().unwrap(), "--config.check"]);
    assert!(stderr.contains("nope.yml") && stderr.contains("No such file"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Path redaction
// ---------------------------------------------------------------------------

/// The personal names in the paths: letters only, so that label templating
/// keeps them whole if they ever leaked; one per test, because each exporter
/// sees (and shows in clear) the other tests' opens outside its own pattern.
const SCRAPE_SECRET: &str = "alicesmithscrape";
const TRACE_SECRET: &str = "alicesmithtrace";

/// `<tmp>/home/<secret>`: the `exporter` workload scenario's directory.
fn secret_tree(dir: &TempDir, secret: &str) -> (PathBuf, PathBuf) {
    let home = dir.path().join("home");
    let personal = home.join(secret);
    std::fs::create_dir_all(&personal).unwrap();
    (home, personal)
}

#[test]
fn redacted_paths_never_reach_the_scrape_or_the_otlp_records() {
    let dir = TempDir::lettered("security-redact");
    let (home, personal) = secret_tree(&dir, SCRAPE_SECRET);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let receiver = runtime.block_on(Receiver::bind(Transport::Grpc, true));
    // The label keeps one component below home: the redacted one.
    let depth = (home.components().count()).to_string();
    let serve = Serve::start(&[
        "--paths.redact", "hash",
        "--paths.redact-under", home.to_str().unwrap(),
        "--path-prefix.depth", &depth,
        "--otlp-endpoint", &receiver.endpoint(),
        "--otlp-protocol", "grpc",
        "--otlp-rate-limit", "0",
        "--otlp-batch-delay-ms", "100",
    ]);
    let run = run_workload(&["exporter", personal.to_str().unwrap()]);
    assert_eq!(run.failures().len(), 21);

    let home_text = home.to_str().unwrap();
    let workload_failures = |s: &Scrape| -> f64 {
        s.matching("badfd_anomaly_failures_total", &[("comm", "workload")]).filter(|x| x.labels["path_prefix"].starts_with(home_text)).map(|x| x.value).sum()
    };
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let (status, body) = serve.get("/metrics", None);
        if workload_failures(&Scrape::parse(&body)) >= 21.0 {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "the workload's 21 failures never showed: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200);
    let leaks: Vec<&str> = body.lines().filter(|l| l.contains(SCRAPE_SECRET)).collect();
    assert!(leaks.is_empty(), "the personal name is in the scrape: {leaks:#?}");
    let (_, page) = serve.get("/", None);
    assert!(!page.contains(SCRAPE_SECRET), "the personal name is on the landing page");
    // Every workload failure under one hashed label: /…/home/#<13 letters>.
    let scrape = Scrape::parse(&body);
    let prefixes: std::collections::BTreeSet<String> = scrape
        .matching("badfd_anomaly_failures_total", &[("comm", "workload")])
        .filter(|x| x.labels["path_prefix"].starts_with(home_text))
        .map(|x| x.labels["path_prefix"].clone())
        .collect();
    assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    let hashed = prefixes.into_iter().next().unwrap();
    let name = hashed.strip_prefix(&format!("{home_text}/")).unwrap();
    assert!(name.starts_with('#') && name.len() == 14 && name[1..].bytes().all(|b| b.is_ascii_lowercase()), "{hashed}");

    // The OTLP records: the workload's 21, each with a redacted path, and no
    // byte of the name anywhere in any record (body, attributes, resource).
    let records = runtime.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            let records = receiver.records();
            // This workload's: other tests' workloads run beside it.
            let ours = records
                .iter()
                .filter(|r| r.str_attr("thread.name") == Some("workload") && r.str_attr("file.path").is_some_and(|p| p.starts_with(home_text)))
                .count();
            if ours >= 21 || Instant::now() > deadline {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ours: Vec<_> = records.iter().filter(|r| r.str_attr("thread.name") == Some("workload") && r.str_attr("file.path").is_some_and(|p| p.starts_with(home_text))).collect();
    assert_eq!(ours.len(), 21, "the workload's records under {home_text}");
    for r in &ours {
        let path = r.str_attr("file.path").unwrap();
        assert!(path.starts_with(&hashed), "{path}");
        // The path as opened is redacted too: every name below home is a hash
        // (relative ones all of theirs).
        let opened = r.str_attr("badfd.file.path.opened").unwrap();
        let below = opened.strip_prefix(&format!("{home_text}/")).unwrap_or(opened);
        assert!(below.split('/').all(|name| name.starts_with('#')), "{opened}");
    }
    for r in &records {
        let text = format!("{:?}", r.record) + &format!("{:?}", r.resource);
        assert!(!text.contains(SCRAPE_SECRET), "the personal name is in an OTLP record: {text}");
    }
    drop(serve);
    runtime.block_on(receiver.stop());
}

#[test]
fn redacted_paths_never_reach_trace_json() {
    let dir = TempDir::lettered("security-trace");
    let (home, personal) = secret_tree(&dir, TRACE_SECRET);
    let out = dir.path().join("trace.jsonl");
    let output = Command::new(badfd_path())
        .args(["trace", "--json", "--no-summary", "--err", "--paths.redact", "drop", "--paths.redact-under", home.to_str().unwrap(), "-o", out.to_str().unwrap(), "--"])
        .arg(workload_path())
        .args(["exporter", personal.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains(TRACE_SECRET), "the personal name is in trace --json: {text}");
    let redacted = format!("{}/<redacted>", home.display());
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let under_home: Vec<_> = lines.iter().filter(|v| v["resolved_path"].as_str().is_some_and(|p| p.starts_with(home.to_str().unwrap()))).collect();
    assert_eq!(under_home.len(), 21, "{text}");
    for v in &under_home {
        assert_eq!(v["resolved_path"], redacted.as_str(), "{v}");
        assert!(v["path"] == redacted.as_str() || v["path"] == "<redacted>", "{v}");
        assert!(v.get("path_base64").is_none() && v.get("resolved_path_base64").is_none(), "nothing raw left: {v}");
    }
    // A bad pattern is one clear line.
    let bad = Command::new(badfd_path()).args(["trace", "--paths.redact", "hash", "--paths.redact-under", "home", "--", "true"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.trim_end().lines().count() == 1 && stderr.contains("--paths.redact-under") && stderr.contains("absolute"), "{stderr}");
}

//! OTLP over TLS (issue 20), with the real `badfd serve` binary and real TLS
//! receivers (gRPC and HTTP/protobuf) whose CA, server and client certificates
//! are made here (rcgen): a custom CA, mutual TLS, and a CA that does not fit.
//! The TLS settings reach badfd through the OpenTelemetry variables.
//!
//! For exact counts each run's anomalies come from a workload running as a
//! user id of its own, and the exporter streams only that user's failures
//! (`--filter.uid`, decided in the kernel), as tests/faults.rs does. Run as
//! root: the exporter loads the real programs.

use std::{
    path::PathBuf,
    process::Command,
    time::Duration,
};

use badfd_tests::{
    badfd_path, free_port,
    otlp_receiver::{Receiver, ReceiverTls, Transport},
    failures_as, Scrape, Serve, TempDir,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// Failed opens each run makes (its dynamic loader adds a few, as the same user).
const ANOMALIES: u64 = 100;

/// A CA, a server certificate for 127.0.0.1 signed by it, a client
/// certificate signed by it, and another CA that signed neither; as PEM files.
struct Pki {
    dir: TempDir,
    server: ReceiverTls,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("otlp-tls-pki");
        let ca = authority("badfd test CA");
        let other_ca = authority("some other CA");

        let leaf = |names: &[&str], usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(&["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(&["badfd-client"], ExtendedKeyUsagePurpose::ClientAuth);
        let pki = Pki {
            server: ReceiverTls { cert_pem: server_cert, key_pem: server_key, client_ca_pem: None },
            ca_pem: ca.pem(),
            dir,
        };
        pki.write("ca.pem", &pki.ca_pem);
        pki.write("other-ca.pem", &other_ca.pem());
        pki.write("client.pem", &client_cert);
        pki.write("client.key", &client_key);
        pki.write("not-pem.pem", "this is not a certificate\n");
        pki
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// The server's TLS, requiring client certificates signed by the CA.
    fn server_requiring_clients(&self) -> ReceiverTls {
        ReceiverTls { client_ca_pem: Some(self.ca_pem.clone()), ..self.server.clone() }
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// `badfd serve` streaming only `uid`'s failures to `endpoint`, with the
/// OpenTelemetry variables `env`.
fn serve_for_uid(uid: u32, endpoint: &str, protocol: &str, extra: &[&str], env: &[(&str, String)]) -> Serve {
    let uid = uid.to_string();
    let mut args = vec![
        "--failures-only",
        "--filter.uid",
        &uid,
        "--otlp-rate-limit",
        "0",
        "--otlp-batch-delay-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    let address = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let mut command = Serve::command(address, &args);
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint).env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
    for (k, v) in env {
        command.env(k, v);
    }
    Serve::launch(command, address, Serve::is_ready)
}

/// Scrapes until the workload's anomalies (at least ANOMALIES) have all
/// arrived and each has its outcome, and stay so.
fn until_accounted(serve: &Serve, timeout: Duration) -> (Scrape, f64) {
    serve.until_otlp_accounted(ANOMALIES, timeout, |_, _| {})
}

fn protocol_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Grpc => "grpc",
        Transport::Http => "http/protobuf",
    }
}

/// Runs the workload as `uid` against `receiver` through a `badfd serve`
/// given `env`; the exporter's scrape once all is accounted, the number of
/// anomalies, and its log.
async fn run(receiver: &Receiver, uid: u32, extra: &'static [&'static str], env: Vec<(&'static str, String)>) -> (Scrape, f64, String) {
    let endpoint = receiver.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let protocol = protocol_name(receiver.transport);
    tokio::task::spawn_blocking(move || {
        let serve = serve_for_uid(uid, &endpoint, protocol, extra, &env);
        let dir = TempDir::new("otlp-tls");
        failures_as(uid, &dir, ANOMALIES);
        let (s, n) = until_accounted(&serve, Duration::from_secs(60));
        (s, n, serve.log())
    })
    .await
    .unwrap()
}

/// (a) The collector's certificate is signed by the CA in
/// OTEL_EXPORTER_OTLP_CERTIFICATE: every record arrives, over TLS.
async fn custom_ca(transport: Transport, uid: u32) {
    let pki = Pki::new();
    let receiver = Receiver::bind_tls(transport, false, pki.server.clone()).await;
    let (s, n, log) = run(&receiver, uid, &[], vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem"))]).await;
    assert_eq!(s.otlp_anomalies("exported"), n, "every record exported: {log}");
    assert_eq!(s.otlp_anomalies("dropped_export_failed"), 0.0);
    assert_eq!(receiver.record_count() as f64, n, "received == exported");
    assert!(receiver.tls_failures().is_empty(), "{:?}", receiver.tls_failures());
    assert!(!log.contains("OTLP export of"), "no export failed: {log}");
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_a_custom_ca() {
    custom_ca(Transport::Grpc, 47201).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_with_a_custom_ca() {
    custom_ca(Transport::Http, 47202).await;
}

/// Without a CA file the system trust store is used: here the test's CA is
/// made the host's whole trust store through SSL_CERT_FILE, which
/// rustls-native-certs honours as OpenSSL does.
async fn system_roots(transport: Transport, uid: u32) {
    let pki = Pki::new();
    let receiver = Receiver::bind_tls(transport, false, pki.server.clone()).await;
    let (s, n, log) = run(&receiver, uid, &[], vec![("SSL_CERT_FILE", pki.path("ca.pem"))]).await;
    assert_eq!(s.otlp_anomalies("exported"), n, "every record exported: {log}");
    assert_eq!(receiver.record_count() as f64, n, "received == exported");
    assert!(receiver.tls_failures().is_empty(), "{:?}", receiver.tls_failures());
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_the_system_trust_store() {
    system_roots(Transport::Grpc, 47209).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_with_the_system_trust_store() {
    system_roots(Transport::Http, 47210).await;
}

/// (b) The collector requires a client certificate signed by its CA: with
/// the client certificate and key (the logs-specific variables and the
/// generic one mixed) every record arrives; without them, the handshake is
/// refused and every record is counted as failed.
async fn mutual_tls(transport: Transport, uid: u32, uid_without: u32) {
    let pki = Pki::new();
    let receiver = Receiver::bind_tls(transport, false, pki.server_requiring_clients()).await;
    let env = vec![
        ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", pki.path("ca.pem")),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", pki.path("client.pem")),
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", pki.path("client.key")),
    ];
    let (s, with_client, log) = run(&receiver, uid, &[], env).await;
    assert_eq!(s.otlp_anomalies("exported"), with_client, "every record exported: {log}");
    assert_eq!(receiver.record_count() as f64, with_client, "received == exported");
    assert!(receiver.tls_failures().is_empty(), "{:?}", receiver.tls_failures());

    // The same collector without a client certificate: nothing gets through.
    let (s, n, log) =
        run(&receiver, uid_without, &["--otlp-timeout-ms", "1000"], vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem"))]).await;
    assert_eq!(s.otlp_anomalies("dropped_export_failed"), n, "every record counted as failed: {log}");
    assert_eq!(s.otlp_anomalies("exported"), 0.0);
    assert_eq!(receiver.record_count() as f64, with_client, "nothing more arrived");
    assert!(!receiver.tls_failures().is_empty(), "the receiver refused the handshake");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("OTLP export")).collect();
    assert_eq!(lines.len(), 1, "exactly one line about the failing export: {log}");
    println!("the one line: {}", lines[0]);
    // Over HTTP the client sees the server's alert; through tonic's HTTP/2
    // connection (TLS 1.3: the server refuses after the client's handshake
    // is done) it shows only as a broken connection.
    if transport == Transport::Http {
        assert!(lines[0].contains("the collector requires a client certificate"), "says what is wrong: {}", lines[0]);
    }
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_mutual_tls() {
    mutual_tls(Transport::Grpc, 47203, 47204).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_mutual_tls() {
    mutual_tls(Transport::Http, 47205, 47206).await;
}

/// (c) A CA that did not sign the collector's certificate: the handshake
/// fails, every record is counted as a failed export, and the log says so in
/// one line (however many batches fail), naming the problem.
async fn wrong_ca(transport: Transport, uid: u32) {
    let pki = Pki::new();
    let receiver = Receiver::bind_tls(transport, false, pki.server.clone()).await;
    // Small batches: several requests fail, one after the other.
    let extra: &'static [&'static str] = &["--otlp-timeout-ms", "1000", "--otlp-max-batch", "20"];
    let (s, n, log) = run(&receiver, uid, extra, vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("other-ca.pem"))]).await;
    assert_eq!(s.otlp_anomalies("dropped_export_failed"), n, "every record counted as failed: {log}");
    assert_eq!(s.otlp_anomalies("exported"), 0.0);
    assert_eq!(receiver.record_count(), 0);
    let failed_requests = s.one("badfd_otlp_export_requests_total", &[("outcome", "failure")]);
    assert!(failed_requests >= 2.0, "several batches failed ({failed_requests}): the one line below is not one per batch");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("OTLP export")).collect();
    assert_eq!(lines.len(), 1, "exactly one line about the failing export: {log}");
    let line = lines[0];
    println!("the one line: {line}");
    assert!(line.contains("level=error"), "{line}");
    assert!(line.contains(&receiver.endpoint()), "names the endpoint: {line}");
    assert!(line.contains("not signed by a trusted CA"), "says what is wrong: {line}");
    assert!(!receiver.tls_failures().is_empty(), "the handshake reached the receiver");
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_the_wrong_ca() {
    wrong_ca(Transport::Grpc, 47207).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_with_the_wrong_ca() {
    wrong_ca(Transport::Http, 47208).await;
}

/// `badfd serve --config.check` with the given variables: (exit code, stderr).
fn config_check(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(badfd_path());
    command.args(["serve", "--config.check"]);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A missing, unreadable or non-PEM file stops badfd at start-up with one
/// line naming the variable and the path.
#[test]
fn bad_tls_files_are_a_start_up_error_naming_the_variable_and_the_path() {
    let pki = Pki::new();
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318");
    let missing = pki.path("missing.pem");
    let not_pem = pki.path("not-pem.pem");
    let client = pki.path("client.pem");
    let unreadable: PathBuf = pki.dir.path().join("a-directory.pem");
    std::fs::create_dir_all(&unreadable).unwrap();
    let unreadable = unreadable.to_str().unwrap().to_string();
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing)], format!("OTEL_EXPORTER_OTLP_CERTIFICATE={missing}: cannot read it")),
        (vec![("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &unreadable)], format!("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE={unreadable}: cannot read it")),
        (
            vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", &not_pem)],
            format!("OTEL_EXPORTER_OTLP_CERTIFICATE={not_pem}: not a PEM file of CA certificates"),
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client), ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", &not_pem)],
            format!("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY={not_pem}: not a PEM file of a private key"),
        ),
        (
            // The client certificate given as its own key.
            vec![("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client)],
            format!("OTEL_EXPORTER_OTLP_CLIENT_KEY={client}: not a PEM file of a private key"),
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client)],
            "OTEL_EXPORTER_OTLP_CLIENT_KEY is set but no client certificate".to_string(),
        ),
    ];
    for (vars, expected) in cases {
        let mut env = vec![endpoint];
        env.extend(vars.iter().copied());
        let (code, stderr) = config_check(&env);
        assert_ne!(code, 0, "{vars:?} accepted: {stderr}");
        assert!(stderr.contains(&expected), "{vars:?}: expected {expected:?} in {stderr}");
        assert_eq!(stderr.lines().filter(|l| l.contains(&expected)).count(), 1, "{stderr}");
    }
    // The same files are not read for a plain endpoint: a warning, not an error.
    let (code, stderr) = config_check(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_CERTIFICATE set, but the OTLP endpoint http://127.0.0.1:4318/v1/logs is plain http"), "{stderr}");
}

/// OTEL_SDK_DISABLED=true and OTEL_LOGS_EXPORTER=none turn OTLP off, in one line saying why.
#[test]
fn sdk_disabled_and_logs_exporter_none_say_why_otlp_is_off() {
    for (var, value) in [("OTEL_SDK_DISABLED", "true"), ("OTEL_LOGS_EXPORTER", "none")] {
        let (code, stderr) = config_check(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318"), (var, value)]);
        assert_eq!(code, 0, "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("OTLP")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(&format!(
                "OTLP is off: {var}={value} (the endpoint OTEL_EXPORTER_OTLP_ENDPOINT=https://127.0.0.1:4318 is not used)"
            )),
            "{stderr}"
        );
    }
}

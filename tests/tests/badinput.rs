//! Bad input (issue 10): every flag of `badfd serve` and `badfd trace`, every
//! config-file field, and hosts that cannot run badfd. Each gets ONE clear
//! line naming the flag, field or missing piece and the problem (clap's
//! usage hints aside), exit status 2 (clap) or 1, never a panic or backtrace.
//!
//! The flags come from `--help` and the config fields from `--config.check`'s
//! output, so a new flag or field without a case here fails the test.
//! The host cases (not root, no BTF, no tracefs, tracefs unreadable, no
//! openat2) run the real binary under another user (setpriv) or in a private
//! mount namespace (unshare) where a tmpfs hides or fakes the kernel's files:
//! run as root.

use std::{
    collections::BTreeSet,
    io::Read,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use badfd_tests::{badfd_path, free_port, run_workload, Serve, TempDir};

/// A bad value of one flag, what badfd must say, and its exit status.
struct Case {
    flag: &'static str,
    args: &'static [&'static str],
    code: i32,
    /// Each must be in the one error line.
    says: &'static [&'static str],
}

const fn case(flag: &'static str, args: &'static [&'static str], code: i32, says: &'static [&'static str]) -> Case {
    Case { flag, args, code, says }
}

/// Reaches OTLP's own checks (they run only with an endpoint).
const OTLP_ON: &str = "--otlp-endpoint=http://127.0.0.1:1";
/// Reaches the TLS checks too (they run only for an https:// endpoint).
const OTLP_TLS_ON: &str = "--otlp-endpoint=https://127.0.0.1:1";

const SERVE_CASES: &[Case] = &[
    case("--attach", &["--attach", "sideways"], 2, &["--attach", "sideways"]),
    case("--log-level", &["--log-level", "=="], 1, &["--log-level", "invalid filter directive"]),
    case("--log.level", &["--log.level", "loud"], 2, &["--log.level", "loud"]),
    case("--log.format", &["--log.format", "xml"], 2, &["--log.format", "xml"]),
    case("--ringbuf-bytes", &["--ringbuf-bytes", "-1"], 2, &["--ringbuf-bytes", "-1"]),
    case("--source-rate", &["--source-rate", "-5"], 2, &["--source-rate", "-5"]),
    case("--source-rate", &["--source-rate", "lots"], 2, &["--source-rate", "lots"]),
    case("--ringbuf-bytes", &["--ringbuf-bytes", "8M"], 2, &["--ringbuf-bytes", "8M"]),
    case("--slow-threshold", &["--slow-threshold", "fast"], 1, &["--slow-threshold", "fast", "10ms"]),
    case("--slow-threshold", &["--slow-threshold", "10 parsecs"], 1, &["--slow-threshold", "unknown unit"]),
    case("--failures-only", &["--failures-only=maybe"], 2, &["--failures-only", "maybe"]),
    case("--no-timing", &["--no-timing=maybe"], 2, &["--no-timing", "maybe"]),
    case("--filter.pid", &["--filter.pid", "-1"], 2, &["--filter.pid", "-1"]),
    case("--filter.uid", &["--filter.uid", "root"], 2, &["--filter.uid", "root"]),
    case("--path-prefix.depth", &["--path-prefix.depth", "0"], 1, &["--path-prefix.depth", "between 1 and 32"]),
    case("--path-prefix.depth", &["--path-prefix.depth", "33"], 1, &["--path-prefix.depth", "between 1 and 32"]),
    case("--metrics.max-label-sets", &["--metrics.max-label-sets", "1"], 1, &["--metrics.max-label-sets", "at least 2"]),
    case("--metrics.label-set-ttl", &["--metrics.label-set-ttl", "10ms"], 1, &["--metrics.label-set-ttl", "at least 1s"]),
    case("--metrics.label-set-ttl", &["--metrics.label-set-ttl", "forever"], 1, &["--metrics.label-set-ttl", "forever"]),
    case("--found-later.window", &["--found-later.window", "soon"], 1, &["--found-later.window", "soon"]),
    case("--found-later.window", &["--found-later.window", "2m"], 1, &["--found-later.window", "at most 60s"]),
    case("--web.listen-address", &["--web.listen-address", "localhost"], 1, &["--web.listen-address", "HOST:PORT"]),
    case("--web.listen-address", &["--web.listen-address", ":99999"], 1, &["--web.listen-address", "bad port"]),
    case("--capabilities.keep", &["--capabilities.keep", "cap_teleport"], 2, &["--capabilities.keep", "cap_teleport"]),
    case("--otlp-endpoint", &["--otlp-endpoint", "collector:4317"], 1, &["--otlp-endpoint", "collector:4317", "http://"]),
    case("--otlp-protocol", &[OTLP_ON, "--otlp-protocol", "http/json"], 1, &["--otlp-protocol", "http/json", "grpc or http/protobuf"]),
    case("--otlp-headers", &[OTLP_ON, "--otlp-headers", "novalue"], 1, &["--otlp-headers", "no '='"]),
    case("--otlp-headers", &[OTLP_ON, "--otlp-headers", "k=%zz"], 1, &["--otlp-headers", "percent-encoding"]),
    case("--otlp-timeout-ms", &[OTLP_ON, "--otlp-timeout-ms", "10s"], 2, &["--otlp-timeout-ms", "10s"]),
    case("--otlp-compression", &[OTLP_ON, "--otlp-compression", "zstd"], 1, &["--otlp-compression", "zstd"]),
    case("--otlp-service-name", &[OTLP_ON, "--otlp-service-name", ""], 1, &["--otlp-service-name", "empty"]),
    case("--otlp-resource-attributes", &[OTLP_ON, "--otlp-resource-attributes", "=v"], 1, &["--otlp-resource-attributes", "empty key"]),
    case("--otlp-certificate", &[OTLP_TLS_ON, "--otlp-certificate", "/nonexistent/ca.pem"], 1, &["--otlp-certificate=/nonexistent/ca.pem", "cannot read"]),
    case("--otlp-certificate", &[OTLP_TLS_ON, "--otlp-certificate", "/etc/hostname"], 1, &["--otlp-certificate=/etc/hostname", "not a PEM file"]),
    case("--otlp-client-certificate", &[OTLP_TLS_ON, "--otlp-client-certificate", "/nonexistent/c.pem"], 1, &["--otlp-client-certificate", "no client key"]),
    case("--otlp-client-key", &[OTLP_TLS_ON, "--otlp-client-key", "/nonexistent/k.pem"], 1, &["--otlp-client-key", "no client certificate"]),
    case("--otlp-insecure", &[OTLP_ON, "--otlp-insecure", "maybe"], 2, &["--otlp-insecure", "maybe"]),
    case("--otlp-queue-size", &[OTLP_ON, "--otlp-queue-size", "0"], 1, &["--otlp-queue-size", "at least 1"]),
    case("--otlp-max-batch", &[OTLP_ON, "--otlp-max-batch", "0"], 1, &["--otlp-max-batch", "at least 1"]),
    case("--otlp-batch-delay-ms", &[OTLP_ON, "--otlp-batch-delay-ms", "-5"], 2, &["--otlp-batch-delay-ms", "-5"]),
    case("--otlp-rate-limit", &[OTLP_ON, "--otlp-rate-limit", "-1"], 2, &["--otlp-rate-limit", "-1"]),
    case("--otlp-rate-burst", &[OTLP_ON, "--otlp-rate-burst", "lots"], 2, &["--otlp-rate-burst", "lots"]),
    case("--config.file", &["--config.file", "/nonexistent/badfd.toml"], 1, &["config file /nonexistent/badfd.toml", "No such file"]),
    case("--config.file", &["--config.file", "/"], 1, &["config file /", "Is a directory"]),
    case("--config.check", &["--config.check=yes"], 2, &["--config.check", "yes"]),
    case("--filter.cgroup", &["--filter.cgroup", "/no/such/cgroup"], 1, &["--filter.cgroup", "/no/such/cgroup", "not a cgroup v2 directory"]),
    case("--filter.cgroup-ignore", &["--filter.cgroup-ignore", "/proc"], 1, &["--filter.cgroup-ignore", "/proc", "not a cgroup v2 directory"]),
    case("--metrics.container-labels", &["--metrics.container-labels=maybe"], 2, &["--metrics.container-labels", "maybe"]),
    case("--kubernetes.pod-metadata", &["--kubernetes.pod-metadata=maybe"], 2, &["--kubernetes.pod-metadata", "maybe"]),
    case("--web.config.file", &["--web.config.file", "/nonexistent/web.yml"], 1, &["web config file /nonexistent/web.yml", "No such file"]),
    case("--paths.redact", &["--paths.redact", "sometimes"], 2, &["--paths.redact", "sometimes"]),
    case("--paths.redact-under", &["--paths.redact-under", "home"], 1, &["--paths.redact-under", "not an absolute directory"]),
    case("--paths.redact-keep", &["--paths.redact-keep", "33"], 1, &["--paths.redact-keep", "more than 32"]),
    case("--paths.redact-key-file", &["--paths.redact", "hash", "--paths.redact-key-file", "/nonexistent/key"], 1, &["--paths.redact-key-file", "/nonexistent/key", "No such file"]),
];

/// `trace` cases run with `--duration 2s`, so that a bad value that slipped
/// through ends the run rather than the test.
const TRACE_CASES: &[Case] = &[
    case("--attach", &["--attach", "sideways"], 2, &["--attach", "sideways"]),
    case("--log-level", &["--log-level", "=="], 1, &["--log-level", "invalid filter directive"]),
    case("--log.level", &["--log.level", "loud"], 2, &["--log.level", "loud"]),
    case("--log.format", &["--log.format", "xml"], 2, &["--log.format", "xml"]),
    case("--ringbuf-bytes", &["--ringbuf-bytes", "-1"], 2, &["--ringbuf-bytes", "-1"]),
    case("--source-rate", &["--source-rate", "-5"], 2, &["--source-rate", "-5"]),
    case("--source-rate", &["--source-rate", "lots"], 2, &["--source-rate", "lots"]),
    case("--err", &["--err=yes"], 2, &["--err", "yes"]),
    case("--no-timing", &["--no-timing=maybe"], 2, &["--no-timing", "maybe"]),
    case("--no-timing", &["--no-timing", "--ms", "5"], 1, &["--ms", "--no-timing", "no slow threshold"]),
    case("--ms", &["--ms", "-1"], 2, &["--ms", "-1"]),
    case("--ms", &["--ms", "5", "--slow", "5ms"], 2, &["--ms", "--slow", "cannot be used with"]),
    case("--slow", &["--slow", "10"], 2, &["--slow", "has no unit", "10ms"]),
    case("--slow", &["--slow", "fast"], 2, &["--slow", "fast"]),
    case("--json", &["--json=yes"], 2, &["--json", "yes"]),
    case("--wide", &["--wide=yes"], 2, &["--wide", "yes"]),
    case("--color", &["--color", "purple"], 2, &["--color", "purple"]),
    case("--output", &["--output", "/nonexistent/out.jsonl"], 1, &["--output /nonexistent/out.jsonl", "No such file"]),
    case("--pid", &["--pid", "-1"], 2, &["--pid", "-1"]),
    case("--comm", &["--comm", ""], 1, &["--comm", "non-empty"]),
    case("--uid", &["--uid", "no-such-user-here"], 2, &["--uid", "no user named"]),
    case("--errno", &["--errno", "ENOENT,ENOPE"], 2, &["--errno", "ENOPE", "not an errno name"]),
    case("--errno", &["--errno", "-2"], 2, &["--errno", "not positive"]),
    case("--cgroup", &["--cgroup", "/no/such/cgroup"], 1, &["--cgroup /no/such/cgroup", "not a cgroup v2 directory"]),
    case("--path-prefix", &["--path-prefix", "var/lib"], 1, &["--path-prefix var/lib", "not an absolute path"]),
    case("--duration", &["--duration", "forever"], 2, &["--duration", "forever"]),
    case("--no-summary", &["--no-summary=yes"], 2, &["--no-summary", "yes"]),
    case("--all-failures", &["--all-failures=yes"], 2, &["--all-failures", "yes"]),
    case("--all", &["--all", "--err"], 2, &["--all", "--err"]),
    case("--user", &["--user", "no-such-user-here"], 2, &["--user", "no user `no-such-user-here`"]),
    case("--found-later-window", &["--found-later-window", "5"], 2, &["--found-later-window", "has no unit"]),
    case("--found-later-window", &["--found-later-window", "2m"], 2, &["--found-later-window", "at most 60s"]),
    case("--paths.redact", &["--paths.redact", "sometimes"], 2, &["--paths.redact", "sometimes"]),
    case("--paths.redact-under", &["--paths.redact-under", "home"], 1, &["--paths.redact-under", "not an absolute directory"]),
    case("--paths.redact-keep", &["--paths.redact-keep", "33"], 1, &["--paths.redact-keep", "more than 32"]),
    case("--paths.redact-key-file", &["--paths.redact", "hash", "--paths.redact-key-file", "/nonexistent/key"], 1, &["--paths.redact-key-file", "/nonexistent/key", "No such file"]),
];

/// Runs badfd with a clean environment (no BADFD_ or OTEL_ variables) and
/// RUST_BACKTRACE=1, which must not put a backtrace into an error; killed
/// (and the test failed) after 30 s.
fn badfd(args: &[&str]) -> Output {
    badfd_via(&[], args)
}

/// As `badfd`, started through `wrapper` (setpriv, unshare).
fn badfd_via(wrapper: &[&str], args: &[&str]) -> Output {
    let badfd = badfd_path();
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&badfd);
            c
        }
        None => Command::new(&badfd),
    };
    for (name, _) in std::env::vars() {
        if name.starts_with("BADFD_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start badfd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("badfd {args:?} still runs after 30 s: a bad value was taken as good? {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// clap's lines around its one error line: usage, hints, possible values.
fn is_clap_hint(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("For more information, try '--help'.")
        || l.starts_with("Usage: ")
        || l.starts_with("tip: ")
        || l.starts_with("[possible values: ")
}

/// The one error line of a failed run; panics unless there is exactly one
/// (clap's hints aside), with the exit status and words wanted.
fn one_error_line(what: &str, out: &Output, code: i32, says: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("{what}: exit {:?}, stderr:\n{stderr}", out.status);
    assert_eq!(out.status.code(), Some(code), "{context}");
    assert!(!stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"), "{context}");
    assert!(out.stdout.is_empty(), "{context}\nstdout: {}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !is_clap_hint(l)).collect();
    assert_eq!(lines.len(), 1, "one clear line: {context}");
    let line = lines[0];
    assert!(line.starts_with("error: ") || line.starts_with("badfd: "), "{context}");
    for word in says {
        assert!(line.contains(word), "the line does not say {word:?}: {context}");
    }
    line.to_string()
}

/// Every `--flag` of a subcommand's `--help`.
fn flags_in_help(subcommand: &str) -> BTreeSet<String> {
    let out = badfd(&[subcommand, "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with('-'))
        .flat_map(|l| l.split_whitespace().take(2))
        .filter_map(|word| word.trim_end_matches(',').strip_prefix("--").map(|f| format!("--{f}")))
        .filter(|f| f.len() > 2 && f != "--help")
        .collect()
}

fn check_cases(subcommand: &str, cases: &[Case], extra: &[&str]) {
    let flags = flags_in_help(subcommand);
    let covered: BTreeSet<String> = cases.iter().map(|c| c.flag.to_string()).collect();
    let missing: Vec<&String> = flags.difference(&covered).collect();
    assert!(missing.is_empty(), "`badfd {subcommand}` flags without a bad-input case: {missing:?}");
    let unknown: Vec<&String> = covered.difference(&flags).collect();
    assert!(unknown.is_empty(), "cases for flags `badfd {subcommand} --help` does not list: {unknown:?}");
    for c in cases {
        let mut args = vec![subcommand];
        args.extend_from_slice(c.args);
        args.extend_from_slice(extra);
        let line = one_error_line(&format!("badfd {}", args.join(" ")), &badfd(&args), c.code, c.says);
        eprintln!("{:<28} {line}", c.flag);
    }
}

#[test]
fn every_serve_flag_with_a_bad_value_gets_one_clear_line() {
    // --config.check: validate and exit, so that nothing loads.
    check_cases("serve", SERVE_CASES, &["--config.check"]);
}

#[test]
fn every_trace_flag_with_a_bad_value_gets_one_clear_line() {
    check_cases("trace", TRACE_CASES, &["--duration", "2s"]);
}

/// A bad value of each config-file field (and files that are no config at
/// all) names the file, the line where it can, the field and the problem.
#[test]
fn every_config_file_field_with_a_bad_value_gets_one_clear_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("slow_threshold", "slow_threshold = \"fast\"\n", &["slow_threshold", "\"fast\"", "10ms"]),
        ("slow_threshold", "slow_threshold = 10\n", &["line 1", "slow_threshold", "invalid type"]),
        ("failures_only", "failures_only = \"yes\"\n", &["line 1", "failures_only", "expected a boolean"]),
        ("filter_pid", "filter_pid = -1\n", &["line 1", "filter_pid", "-1"]),
        ("filter_uid", "\nfilter_uid = \"root\"\n", &["line 2", "filter_uid", "\"root\""]),
        ("path_prefix_depth", "path_prefix_depth = 0\n", &["path_prefix_depth", "between 1 and 32"]),
        ("max_label_sets", "max_label_sets = 1\n", &["max_label_sets", "at least 2"]),
        ("max_label_sets", "max_label_sets = 1.5\n", &["line 1", "max_label_sets", "1.5"]),
        ("label_set_ttl", "label_set_ttl = \"0.5s\"\n", &["label_set_ttl", "at least 1s"]),
        ("listen_address", "listen_address = \"localhost\"\n", &["listen_address", "HOST:PORT"]),
        ("listen_address", "listen_address = 19435\n", &["line 1", "listen_address", "expected a string"]),
        ("filter_cgroup", "filter_cgroup = [\"/no/such/cgroup\"]\n", &["filter_cgroup", "/no/such/cgroup", "not a cgroup v2 directory"]),
        ("filter_cgroup_ignore", "filter_cgroup_ignore = \"/proc\"\n", &["line 1", "filter_cgroup_ignore", "expected a sequence"]),
        ("container_labels", "container_labels = \"yes\"\n", &["line 1", "container_labels", "expected a boolean"]),
        ("kubernetes_pod_metadata", "kubernetes_pod_metadata = 1\n", &["line 1", "kubernetes_pod_metadata", "expected a boolean"]),
        ("paths_redact", "paths_redact = \"sometimes\"\n", &["line 1", "paths_redact", "`hash`"]),
        ("paths_redact", "paths_redact_under = [\"home\"]\n", &["paths_redact_under", "not an absolute directory"]),
        ("paths_redact", "paths_redact_keep = 33\n", &["paths_redact_keep", "more than 32"]),
        ("source_rate", "source_rate = -3\n", &["line 1", "source_rate", "-3"]),
        ("source_rate", "source_rate = \"fast\"\n", &["line 1", "source_rate", "expected u32"]),
        ("found_later_window", "found_later_window = \"2h\"\n", &["found_later_window", "at most 60s"]),
        ("found_later_window", "found_later_window = 1\n", &["line 1", "found_later_window", "expected a string"]),
        ("(unknown key)", "slow_treshold = \"5ms\"\n", &["line 1", "unknown field `slow_treshold`", "slow_threshold"]),
        ("(duplicate key)", "failures_only = true\nfailures_only = false\n", &["line 2", "failures_only", "duplicate key"]),
        ("(not TOML)", "this is not toml\n", &["line 1", "expected `=`"]),
        ("(a table)", "[serve]\nslow_threshold = \"1s\"\n", &["line 1", "unknown field `serve`"]),
    ];
    // The fields, from what --config.check prints of a valid configuration.
    let out = badfd(&["serve", "--config.check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.strip_prefix("config OK: ").expect("config OK: {json}")).unwrap();
    let fields: BTreeSet<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.0).chain(["web_config_file"]).filter(|k| !k.starts_with('(')).collect();
    assert_eq!(fields, covered, "every config field has a bad-value case");

    let dir = TempDir::new("badinput-config");
    let file = dir.path().join("badfd.toml");
    for (field, text, says) in cases {
        std::fs::write(&file, text).unwrap();
        let out = badfd(&["serve", "--config.check", "--config.file", file.to_str().unwrap()]);
        let prefix = format!("badfd: config file {}: ", file.display());
        let line = one_error_line(&format!("{field}: {text:?}"), &out, 1, says);
        assert!(line.starts_with(&prefix), "names the file first: {line}");
        eprintln!("{field:<18} {line}");
    }
    // Files the config names are read after it is parsed: the line names that
    // file and the key.
    for (field, text, says) in [
        ("web_config_file", "web_config_file = \"/nonexistent/web.yml\"\n", &["web config file /nonexistent/web.yml", "web_config_file", "No such file"][..]),
        ("paths_redact", "paths_redact = \"hash\"\npaths_redact_key_file = \"/nonexistent/key\"\n", &["/nonexistent/key", "paths_redact_key_file", "No such file"][..]),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = badfd(&["serve", "--config.check", "--config.file", file.to_str().unwrap()]);
        let line = one_error_line(&format!("{field}: {text:?}"), &out, 1, says);
        eprintln!("{field:<18} {line}");
    }
    // Bytes that are not UTF-8: a clear line, not a panic.
    std::fs::write(&file, b"slow_threshold = \"\xff\"\n").unwrap();
    let out = badfd(&["serve", "--config.check", "--config.file", file.to_str().unwrap()]);
    one_error_line("invalid UTF-8", &out, 1, &["config file", "UTF-8"]);
}

// ---------------------------------------------------------------------------
// Hosts that cannot run badfd.
// ---------------------------------------------------------------------------

/// Runs `badfd <args>` in a mount namespace of its own after `setup` (shell
/// commands; the host's mounts are untouched).
fn in_mount_namespace(setup: &str, args: &[&str]) -> Output {
    let script = format!("set -e; {setup}; exec \"$0\" \"$@\"");
    badfd_via(&["unshare", "--mount", "--propagation", "private", "sh", "-c", &script], args)
}

const SERVE_QUIETLY: &[&str] = &["serve", "--log-level", "warn", "--web.listen-address", "127.0.0.1:0"];

#[test]
fn not_root_or_missing_capabilities_is_one_line_with_the_fix() {
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let says: &[&str] = &["CAP_BPF", "CAP_PERFMON", "run it as root", "setcap cap_bpf,cap_perfmon+ep"];
    for args in [SERVE_QUIETLY, &["trace", "--duration", "2s"][..]] {
        one_error_line(&format!("nobody: badfd {args:?}"), &badfd_via(&nobody, args), 1, says);
    }
    // CAP_BPF without CAP_PERFMON is not enough either.
    let only_bpf = [&nobody[..], &["--inh-caps=+bpf", "--ambient-caps=+bpf"]].concat();
    one_error_line("nobody with CAP_BPF only", &badfd_via(&only_bpf, SERVE_QUIETLY), 1, says);
}

#[test]
fn no_btf_is_one_line_with_the_fix() {
    let out = in_mount_namespace("mount -t tmpfs none /sys/kernel/btf", SERVE_QUIETLY);
    one_error_line("no BTF", &out, 1, &["no kernel BTF at /sys/kernel/btf/vmlinux", "CONFIG_DEBUG_INFO_BTF=y"]);
}

#[test]
fn no_tracefs_is_one_line_with_the_fix() {
    let hide = "mount -t tmpfs none /sys/kernel/tracing; mount -t tmpfs none /sys/kernel/debug";
    for args in [SERVE_QUIETLY, &["trace", "--duration", "2s"][..]] {
        let out = in_mount_namespace(hide, args);
        one_error_line(&format!("no tracefs: {args:?}"), &out, 1, &["tracefs is not mounted", "mount -t tracefs nodev /sys/kernel/tracing"]);
    }
}

/// A user given CAP_BPF and CAP_PERFMON but not root may not look into
/// tracefs (mode 700): that is not "not mounted", and the fix differs.
#[test]
fn unreadable_tracefs_is_not_called_unmounted() {
    let mode = std::fs::metadata("/sys/kernel/tracing").map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o700), "this test expects tracefs mounted with its default mode 700");
    let user = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+bpf,+perfmon",
        "--ambient-caps=+bpf,+perfmon",
    ];
    let out = badfd_via(&user, SERVE_QUIETLY);
    let line = one_error_line("tracefs unreadable", &out, 1, &["tracefs at /sys/kernel/tracing", "permission denied", "mode=755"]);
    assert!(!line.contains("not mounted"), "{line}");
}

/// A kernel without openat2 (before 5.6): its tracepoints are missing from a
/// tracefs made of the real one's other tracepoint ids. badfd starts, says so
/// in one warning, and watches the other three syscalls.
#[test]
fn a_kernel_without_openat2_is_watched_without_it_and_said_once() {
    let fake = TempDir::new("badinput-tracefs");
    let f = fake.path().display();
    let mut setup = format!("mount -t tmpfs none {f}");
    for name in ["open", "openat", "creat"] {
        for side in ["enter", "exit"] {
            let tp = format!("events/syscalls/sys_{side}_{name}");
            setup.push_str(&format!("; mkdir -p {f}/{tp}; cp /sys/kernel/tracing/{tp}/id /sys/kernel/tracing/{tp}/format {f}/{tp}/"));
        }
    }
    // Every kernel since 2.6 has the scheduler's tracepoints (reaping, following children).
    for tp in ["events/sched/sched_process_exit", "events/sched/sched_process_fork"] {
        setup.push_str(&format!("; mkdir -p {f}/{tp}; cp /sys/kernel/tracing/{tp}/id /sys/kernel/tracing/{tp}/format {f}/{tp}/"));
    }
    setup.push_str(&format!("; mount --bind {f} /sys/kernel/tracing"));
    let dir = TempDir::lettered("badinput-openat2");
    let address: std::net::SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let script = format!("set -e; {setup}; exec \"$0\" \"$@\"");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(badfd_path())
        .args(["serve", "--attach", "tracepoint", "--log-level", "warn", "--failures-only"])
        .args(["--web.listen-address", &address.to_string(), "--path-prefix.depth", "9"]);
    // unshare and sh exec badfd: the child is the exporter itself.
    let mut serve = Serve::launch(command, address, Serve::is_ready);
    let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let openat_failures = run.failures().iter().filter(|r| r.syscall == "openat").count() as f64;
    let deadline = Instant::now() + Duration::from_secs(15);
    let scrape = loop {
        let s = serve.scrape();
        let seen = s.sum("badfd_open_failures_total", &[("syscall", "openat")]);
        if seen >= openat_failures || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(scrape.sum("badfd_open_failures_total", &[("syscall", "openat")]) >= openat_failures, "openat is still watched");
    assert!(run.failures().iter().any(|r| r.syscall == "openat2"), "the workload made an openat2 call");
    assert_eq!(scrape.sum("badfd_opens_total", &[("syscall", "openat2")]), 0.0, "no openat2 is seen without its tracepoints");
    serve.signal(libc::SIGTERM);
    let status = serve.child.wait().unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
    let text = serve.log();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("openat2")).collect();
    assert_eq!(warnings.len(), 1, "said once: {text}");
    assert!(warnings[0].contains("this kernel has no openat2 (added in 5.6); watching open, openat and creat only"), "{text}");
}

//! Odd bytes (issue 10): paths with invalid UTF-8, newlines, quotes,
//! backslashes, control bytes, label syntax, and of 4095 and 4096 bytes, made
//! by a real workload, through every output and a real parser of each:
//!
//! - `/metrics`: `promtool check metrics` on the classic text, and the
//!   reference Python parsers (prometheus_client: OpenMetrics, strict, and
//!   the classic text) must read exactly the samples badfd meant;
//! - `badfd trace --json`: every line parses with serde_json and gives the
//!   path's exact bytes back (`path_base64` where it is not UTF-8);
//! - OTLP: the real receiver's protobuf decoder; the record carries the path
//!   losslessly (a string where it is UTF-8, exact bytes beside it where not).
//!
//! Run as root: the events come from the real programs.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use badfd::pipeline::labels::path_prefix;
use badfd_tests::{
    badfd_path,
    otlp_receiver::{Receiver, Transport},
    run_workload, workload_path, workload_run, OpenRecord, Scrape, Serve, TempDir,
};
use base64::Engine as _;

/// The workload's failures: nine odd names, the 4095-byte path, the 4096-byte one.
const ODD_FAILURES: usize = 11;

fn under(dir: &Path, r: &OpenRecord) -> bool {
    r.path.starts_with(dir.to_str().unwrap().as_bytes())
}

/// Runs `tool` with `stdin`; (success, stdout, stderr).
fn pipe(tool: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} (scripts/setup.sh --test installs it): {e}"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every sample of an exposition as the reference parser reads it:
/// (name, labels) -> value.
fn python_parse(format: &str, text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
parse = openmetrics if sys.argv[1] == "openmetrics" else classic
json.dump([[s.name, s.labels, s.value] for f in parse(sys.stdin.read()) for s in f.samples], sys.stdout)
"#;
    let (ok, stdout, stderr) = pipe("/opt/badfd-venv/bin/python", &["-c", SCRIPT, format], text);
    assert!(ok, "the {format} parser rejects the exposition: {stderr}");
    let samples: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_str(&stdout).unwrap();
    samples.into_iter().map(|(n, l, v)| ((n, l), v)).collect()
}

fn as_map(s: &Scrape) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    s.samples.iter().map(|x| ((x.name.clone(), x.labels.clone()), x.value)).collect()
}

#[test]
fn odd_paths_through_the_exposition_and_otlp() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let receiver = runtime.block_on(Receiver::bind(Transport::Grpc, true));
    let dir = TempDir::lettered("oddbytes");
    let depth = dir.path().components().count() + 1;
    let serve = Serve::start(&[
        "--failures-only",
        "--path-prefix.depth",
        &depth.to_string(),
        "--otlp-endpoint",
        &receiver.endpoint(),
        "--otlp-protocol",
        "grpc",
        "--otlp-batch-delay-ms",
        "100",
        "--otlp-rate-limit",
        "0",
    ]);
    let run = run_workload(&["oddbytes", dir.path().to_str().unwrap()]);
    let odd: Vec<&OpenRecord> = run.failures().into_iter().filter(|r| under(dir.path(), r)).collect();
    assert_eq!(odd.len(), ODD_FAILURES, "{:?}", run.manifest);
    assert!(odd.iter().any(|r| r.path.len() == 4095) && odd.iter().any(|r| r.path.len() == 4096));

    // The series badfd means to write: (errno, path_prefix) -> count, the
    // label from the same function the exporter uses.
    let d = dir.path().to_str().unwrap().to_string();
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &odd {
        let errno = badfd::errno::name(-r.ret as i32).to_string();
        *want.entry((errno, path_prefix(&r.path, depth))).or_default() += 1.0;
    }
    let ours = |samples: &BTreeMap<(String, BTreeMap<String, String>), f64>| -> BTreeMap<(String, String), f64> {
        let mut m = BTreeMap::new();
        for ((name, labels), value) in samples {
            let prefix = labels.get("path_prefix").cloned().unwrap_or_default();
            if name == "badfd_anomaly_failures_total" && labels.get("comm").is_some_and(|c| c == "workload") && prefix.starts_with(&d) {
                *m.entry((labels["errno"].clone(), prefix)).or_default() += value;
            }
        }
        m
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let scrape = loop {
        let s = serve.scrape();
        if ours(&as_map(&s)).values().sum::<f64>() >= ODD_FAILURES as f64 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ours(&as_map(&scrape)), want);
    for (_, label) in want.keys() {
        assert!(!label.chars().any(char::is_control), "no control characters in a label value: {label:?}");
    }

    // Both formats, read by real parsers, say exactly what badfd meant.
    let (_, openmetrics) = serve.get("/metrics", None);
    let (_, classic) = serve.get("/metrics", Some("text/plain"));
    let (ok, out, err) = pipe("/usr/bin/promtool", &["check", "metrics"], &classic);
    assert!(ok, "promtool check metrics: {out}{err}");
    for (format, text) in [("openmetrics", &openmetrics), ("classic", &classic)] {
        let reference = python_parse(format, text);
        assert_eq!(ours(&reference), want, "{format}: every odd label set, read back exactly by the reference parser");
        let tests_parser = as_map(&Scrape::parse(text));
        let differ: Vec<_> = reference
            .iter()
            // Values within a rounding step: parsers may differ in the last bit.
            .filter(|(k, v)| !tests_parser.get(*k).is_some_and(|w| (*v - w).abs() <= v.abs() * 1e-12))
            .map(|(k, v)| (k, v, tests_parser.get(k)))
            .collect();
        let only_ours: Vec<_> = tests_parser.keys().filter(|k| !reference.contains_key(*k)).collect();
        assert!(differ.is_empty() && only_ours.is_empty(), "{format}: the parsers disagree: {differ:?}; only the tests' parser: {only_ours:?}");
    }

    // OTLP: one record per failure, its path exact.
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records: Vec<_> = receiver.records().into_iter().filter(|r| r.int_attr("process.pid") == Some(run.pid as i64)).collect();
        let n = records.iter().filter(|r| r.str_attr("file.path").is_some_and(|p| p.starts_with(dir.path().to_str().unwrap()))).count();
        if n >= ODD_FAILURES || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // `file.path`'s bytes are in `badfd.file.path.bytes`, the others' in `<key>.bytes`.
    let exact = |r: &badfd_tests::otlp_receiver::ReceivedRecord, key: &str| -> Vec<u8> {
        let bytes_key = format!("{}.bytes", if key == "file.path" { "badfd.file.path" } else { key });
        match r.bytes_attr(&bytes_key) {
            Some(bytes) => {
                assert!(std::str::from_utf8(bytes).is_err(), "bytes only where the string is lossy");
                assert_eq!(r.str_attr(key).unwrap(), String::from_utf8_lossy(bytes), "the string is the bytes, made UTF-8");
                bytes.to_vec()
            }
            None => r.str_attr(key).expect("a path attribute").as_bytes().to_vec(),
        }
    };
    for want in &odd {
        let found: Vec<_> = records
            .iter()
            .filter(|r| {
                let opened = exact(r, "badfd.file.path.opened");
                opened == want.path || (r.attr("badfd.file.path.truncated").is_some() && want.path.starts_with(&opened))
            })
            .collect();
        assert_eq!(found.len(), 1, "one record for {:?}", String::from_utf8_lossy(&want.path));
        let r = found[0];
        assert_eq!(exact(r, "file.path"), exact(r, "badfd.file.path.opened"), "absolute: resolved as opened");
        if want.path.len() == 4096 {
            assert_eq!(r.str_attr("error.type"), Some("ENAMETOOLONG"));
            assert!(exact(r, "file.path").len() >= 4000, "the kernel's cut keeps nearly all of it");
        } else {
            assert_eq!(r.str_attr("error.type"), Some("ENOENT"));
            assert!(r.attr("badfd.file.path.truncated").is_none());
        }
    }
    drop(serve);
}

/// `badfd trace --json` following the workload: each line is JSON and gives
/// each odd path's bytes back exactly.
#[test]
fn odd_paths_through_trace_json() {
    let dir = TempDir::new("oddbytes-trace");
    let out = dir.path().join("out.jsonl");
    let work = TempDir::lettered("oddbytes-trace");
    let child = Command::new(badfd_path())
        .args(["trace", "--json", "--err", "--no-summary", "-o"])
        .arg(&out)
        .arg("--")
        .arg(workload_path())
        .args(["oddbytes", work.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "badfd trace: {}", String::from_utf8_lossy(&output.stderr));
    // The workload's stdout (its manifest) is its own: badfd writes to the file.
    let run = workload_run(pid, &["oddbytes"], output);
    let odd: Vec<&OpenRecord> = run.failures().into_iter().filter(|r| under(work.path(), r)).collect();
    assert_eq!(odd.len(), ODD_FAILURES);

    let text = std::fs::read(&out).unwrap();
    let text = String::from_utf8(text).expect("JSON lines are UTF-8");
    let mut lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))).collect();
    // The last line is the diagnosis, one object without an event's fields.
    let diagnosis = lines.pop().unwrap_or_default();
    assert!(diagnosis.get("diagnosis").is_some(), "the last line is the diagnosis: {diagnosis}");
    let bytes_of = |line: &serde_json::Value, field: &str| -> Vec<u8> {
        match line.get(format!("{field}_base64")).and_then(|v| v.as_str()) {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                assert_eq!(line[field].as_str().unwrap(), String::from_utf8_lossy(&bytes), "{field} is its bytes made UTF-8");
                bytes
            }
            None => line[field].as_str().expect("a path string").as_bytes().to_vec(),
        }
    };
    for want in &odd {
        let found: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                let path = bytes_of(l, "path");
                path == want.path || (l["path_truncated"] == true && want.path.starts_with(&path))
            })
            .collect();
        assert_eq!(found.len(), 1, "one line for {:?}", String::from_utf8_lossy(&want.path));
        let l = found[0];
        assert_eq!(bytes_of(l, "resolved_path"), bytes_of(l, "path"));
        assert_eq!(l["path_base64"].is_string(), std::str::from_utf8(&bytes_of(l, "path")).is_err(), "base64 exactly where needed");
        if want.path.len() == 4096 {
            assert_eq!(l["path_truncated"], true);
        }
    }
}

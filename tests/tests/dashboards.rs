//! The Grafana dashboard and the Prometheus rules, checked for real (issue 6):
//! promtool checks and unit-tests the rules; every query parses as PromQL and
//! names only metrics a real scrape of badfd exposes; and end to end, Debian's
//! prometheus scrapes two running exporters every second while known workloads
//! run, and every panel query and recording rule returns data through the HTTP
//! API, with the failure-rate panel matching the workload's known rate.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use badfd_tests::{free_port, run_workload, Serve, TempDir};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("dashboards/badfd.json")).unwrap()).unwrap()
}

fn rules_path() -> PathBuf {
    repo().join("deploy/prometheus/badfd-rules.yml")
}

/// (panel title, query) of every dashboard panel target.
fn panel_queries() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((p["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(out.len() >= 10, "the dashboard has {} queries", out.len());
    out
}

/// Every `expr:` of the rules file (recording and alerting).
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r.get("record").or_else(|| r.get("alert")).and_then(|v| v.as_str()).unwrap().to_string();
            out.push((name, r["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// Grafana's variables, as the dashboard's "All" selection expands them.
fn grafana_to_promql(q: &str, instance: &str) -> String {
    grafana_to_promql_over(q, instance, "15s")
}

/// The same with a chosen `$__rate_interval`.
fn grafana_to_promql_over(q: &str, instance: &str, rate_interval: &str) -> String {
    q.replace("$__rate_interval", rate_interval)
        .replace("\"$instance\"", &format!("\"{instance}\""))
        .replace("\"$comm\"", "\".*\"")
        .replace("\"$job\"", "\".*\"")
        .replace("\"$node\"", "\".*\"")
}

/// Metric names a PromQL expression selects.
fn selected_metrics(expr: &str) -> BTreeSet<String> {
    let ast = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("does not parse as PromQL: {expr}\n{e}"));
    let mut names = BTreeSet::new();
    collect(&ast, &mut names);
    names
}

fn collect(e: &promql_parser::parser::Expr, names: &mut BTreeSet<String>) {
    use promql_parser::parser::Expr::*;
    match e {
        Aggregate(a) => {
            collect(&a.expr, names);
            if let Some(p) = &a.param {
                collect(p, names);
            }
        }
        Unary(u) => collect(&u.expr, names),
        Binary(b) => {
            collect(&b.lhs, names);
            collect(&b.rhs, names);
        }
        Paren(p) => collect(&p.expr, names),
        Subquery(s) => collect(&s.expr, names),
        VectorSelector(v) => {
            names.extend(v.name.clone());
        }
        MatrixSelector(m) => {
            names.extend(m.vs.name.clone());
        }
        Call(c) => {
            for a in &c.args.args {
                collect(a, names);
            }
        }
        _ => {}
    }
}

#[test]
fn promtool_checks_and_unit_tests_every_rule() {
    let check = Command::new("promtool").arg("check").arg("rules").arg(rules_path()).output().expect("run promtool (apt package prometheus)");
    assert!(check.status.success(), "promtool check rules:\n{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    let test = Command::new("promtool")
        .args(["test", "rules", "badfd-rules.test.yml"])
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .unwrap();
    assert!(test.status.success(), "promtool test rules:\n{}{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(repo().join("deploy/prometheus/badfd-rules.test.yml")).unwrap();
    let rules = std::fs::read_to_string(rules_path()).unwrap();
    for line in rules.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            assert!(tests.contains(&format!("alertname: {alert}")), "alert {alert} has no promtool unit test");
        }
    }
}

#[test]
fn every_panel_has_a_unit_a_description_and_the_datasource_variable() {
    let d = dashboard();
    let vars: Vec<&str> = d["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    for var in ["datasource", "job", "node", "instance", "comm"] {
        assert!(vars.contains(&var), "no ${var} variable: {vars:?}");
    }
    for p in d["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        assert!(p["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()), "{title} has no unit");
        assert!(p["description"].as_str().is_some_and(|s| s.len() > 20), "{title} has no description");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            if expr.contains("rate(") {
                assert!(expr.contains("$__rate_interval"), "{title}: rates use $__rate_interval");
            }
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(url: &str) -> Result<(u16, String), String> {
    match ureq::get(url).call() {
        Ok(mut r) => Ok((r.status().as_u16(), r.body_mut().read_to_string().map_err(|e| e.to_string())?)),
        Err(ureq::Error::StatusCode(code)) => Ok((code, String::new())),
        Err(e) => Err(e.to_string()),
    }
}

fn wait_ready(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(url) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} not ready at {url} within 30 s");
}

fn start_exporter(port: u16, extra: &[&str], env: &[(&str, String)]) -> Serve {
    let address = ([127, 0, 0, 1], port).into();
    let mut command = Serve::command(address, extra);
    command.stdout(Stdio::null()).envs(env.iter().map(|(k, v)| (k, v)));
    Serve::launch(command, address, Serve::is_ready)
}

fn query(prom: u16, q: &str) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{prom}/api/v1/query?query={}", urlencode(q));
    let (code, body) = http_get(&url).unwrap();
    assert_eq!(code, 200, "query failed: {q}\n{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"].as_array().unwrap().clone()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Metric names a scrape exposes (classic text: series names, with the
/// histogram and counter suffixes as Prometheus stores them).
fn scraped_metric_names(port: u16) -> BTreeSet<String> {
    let (_, body) = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn every_panel_and_rule_returns_data_from_a_real_prometheus() {
    let dir = TempDir::new("dashboards");
    let (port_a, port_b, prom_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    // A: the default exporter, with a slow threshold the FIFO open crosses.
    let _a = start_exporter(port_a, &["--slow-threshold", "30ms"], &[]);
    // B: made to lose events (a one-page ring buffer), to fold label sets (a
    // budget of 4) and to drop OTLP records (a collector that is not there).
    let dead_collector = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let _b = start_exporter(
        port_b,
        &["--slow-threshold", "30ms", "--ringbuf-bytes", "4096", "--metrics.max-label-sets", "4"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", dead_collector), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into())],
    );

    // Every metric a query names is one badfd exposes, read from a real scrape
    // (after the workloads below have made every metric appear).
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: badfd\n    static_configs:\n      - targets: ['127.0.0.1:{port_a}', '127.0.0.1:{port_b}']\n",
            rules_path().display()
        ),
    )
    .unwrap();
    let _prom = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt package prometheus)"),
    );
    wait_ready(&format!("http://127.0.0.1:{prom_port}/-/ready"), "prometheus");

    // Known workloads: a steady 200 failing opens/s for 20 s (in the
    // background), slow opens through a FIFO, a burst that overflows B's ring
    // buffer, and many distinct path prefixes that overflow B's label budget.
    const RATE: f64 = 200.0;
    let steady = Command::new(badfd_tests::workload_path())
        .args(["rate", dir.path().to_str().unwrap(), "200", "20"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _steady = Proc(steady);
    for i in 0..3 {
        let d = TempDir::new(&format!("fifo{i}"));
        run_workload(&["fifo", d.path().to_str().unwrap(), "60"]);
    }
    run_workload(&["burst", dir.path().to_str().unwrap(), "50000"]);
    run_workload(&["prefixes", dir.path().to_str().unwrap(), "50"]);
    std::thread::sleep(Duration::from_secs(12));

    let exposed: BTreeSet<String> = scraped_metric_names(port_a).union(&scraped_metric_names(port_b)).cloned().collect();
    let recorded: BTreeSet<String> = rule_exprs().iter().filter(|(n, _)| n.contains(':')).map(|(n, _)| n.clone()).collect();
    for (title, q) in panel_queries().iter().chain(rule_exprs().iter()) {
        for m in selected_metrics(&grafana_to_promql(q, ".*")) {
            assert!(exposed.contains(&m) || recorded.contains(&m) || m == "up", "{title}: {m} is not exposed by badfd (scrape had {exposed:?})");
        }
    }

    // Every panel query and every recording rule returns data.
    for (title, q) in panel_queries() {
        let result = query(prom_port, &grafana_to_promql(&q, ".*"));
        assert!(!result.is_empty(), "panel {title:?} returned no data: {q}");
    }
    for (name, expr) in rule_exprs().into_iter().filter(|(n, _)| n.contains(':')) {
        assert!(!query(prom_port, &expr).is_empty(), "recording rule {name} returned no data");
        assert!(!query(prom_port, &name).is_empty(), "recording rule {name} was not recorded");
    }

    // The failure-rate panel (top programs) matches the steady workload on A,
    // over a window that lies wholly within the workload's 20 s (a window
    // reaching back before its first sample would extrapolate short).
    let (_, q) = panel_queries().into_iter().find(|(t, _)| t == "Top programs by failures never found").unwrap();
    let q = grafana_to_promql_over(&q, &format!("127.0.0.1:{port_a}"), "6s");
    let result = query(prom_port, &q);
    let workload = result.iter().find(|s| s["metric"]["comm"] == "steady-rate").expect("the steady workload is a top program");
    let value: f64 = workload["value"][1].as_str().unwrap().parse().unwrap();
    eprintln!("failure-rate panel: {value:.1}/s for a workload making {RATE}/s");
    assert!((value - RATE).abs() < RATE * 0.25, "failure rate {value}/s, workload made {RATE}/s");
}

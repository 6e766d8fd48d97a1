//! Least privilege (issue 8), as root: after attach and drop, the process holds
//! exactly the capabilities its log names, in every thread, and the probe still
//! works: events, counters and run-time config changes. The drop happens in the
//! `dropcaps` helper process, because capabilities are per thread and this test
//! harness runs many threads.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use badfd::privileges::{drop_capabilities, status_masks, CapabilityList, PrivilegeError};
use badfd_tests::{dropcaps_path, kernel_version, load_probe};
use exporter_common::Config;

const CAP_SYS_ADMIN: u8 = 21;
const CAP_SYS_PTRACE: u8 = 19;
const CAP_PERFMON: u8 = 38;
const CAP_BPF: u8 = 39;

struct Outcome {
    /// `kept=` and `bounding=` from the "dropped capabilities" log line.
    logged_kept: CapabilityList,
    logged_bounding: CapabilityList,
    /// (thread id, [CapEff, CapPrm, CapBnd, CapInh, CapAmb], NoNewPrivs) of
    /// every thread, read from outside while dropcaps waited.
    threads: Vec<(String, [u64; 5], bool)>,
    report: serde_json::Value,
    log: String,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
}

/// Runs dropcaps with `args`, inspects it after the drop, lets it finish.
fn run_dropcaps(args: &[&str]) -> Outcome {
    run_dropcaps_as(&[], args)
}

/// Same, started through `wrapper` (e.g. setpriv with other credentials).
fn run_dropcaps_as(wrapper: &[String], args: &[&str]) -> Outcome {
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut c = Command::new(program);
            c.args(wrapper_args).arg(dropcaps_path());
            c
        }
        None => Command::new(dropcaps_path()),
    };
    let mut child: Child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dropcaps");
    let (log_tx, log_rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let log_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    let mut log = String::new();
    let pid: u32 = match ready.trim().strip_prefix("ready ") {
        Some(pid) => pid.parse().unwrap(),
        None => {
            let _ = child.wait();
            let _ = log_thread.join();
            log.extend(log_rx.try_iter().map(|l| l + "\n"));
            panic!("dropcaps did not get ready ({ready:?}); its log:\n{log}");
        }
    };

    // The log line was written before `ready`; wait for the reader thread.
    let deadline = Instant::now() + Duration::from_secs(5);
    let dropped_line = loop {
        match log_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("dropped capabilities") {
                    break line;
                }
            }
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => panic!("no \"dropped capabilities\" log line; log:\n{log}"),
        }
    };
    let logged_kept: CapabilityList = field(&dropped_line, "kept").expect("kept= in the log").parse().unwrap();
    let logged_bounding: CapabilityList = field(&dropped_line, "bounding")
        .expect("bounding= in the log")
        .parse()
        .unwrap();

    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let no_new_privs = status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'));
        threads.push((
            task.file_name().to_string_lossy().into_owned(),
            status_masks(&status).unwrap(),
            no_new_privs,
        ));
    }

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    log_thread.join().unwrap();
    log.extend(log_rx.try_iter().map(|l| l + "\n"));
    assert!(status.success(), "dropcaps {args:?} failed ({status}); log:\n{log}");
    let report = serde_json::from_str(rest.lines().last().expect("a report line")).unwrap();
    Outcome {
        logged_kept,
        logged_bounding,
        threads,
        report,
        log,
    }
}

fn assert_process_holds_what_it_logged(outcome: &Outcome) {
    assert_holds_logged_sets(outcome);
    // Run as root with CAP_SETPCAP, so the bounding set shrinks to the kept set.
    assert_eq!(outcome.logged_bounding, outcome.logged_kept, "log:\n{}", outcome.log);
}

fn assert_holds_logged_sets(outcome: &Outcome) {
    let kept = outcome.logged_kept.mask();
    assert!(
        outcome.threads.len() >= 2,
        "the collector thread started after the drop: {:?}",
        outcome.threads
    );
    for (tid, [eff, prm, bnd, inh, amb], no_new_privs) in &outcome.threads {
        assert_eq!(
            *eff, kept,
            "thread {tid}: CapEff {eff:016x} but the log says kept={}",
            outcome.logged_kept
        );
        assert_eq!(
            *prm, kept,
            "thread {tid}: CapPrm {prm:016x} but the log says kept={}",
            outcome.logged_kept
        );
        assert_eq!(
            *bnd,
            outcome.logged_bounding.mask(),
            "thread {tid}: CapBnd {bnd:016x} vs log {}",
            outcome.logged_bounding
        );
        assert_eq!(*inh, 0, "thread {tid}: CapInh {inh:016x}");
        assert_eq!(*amb, 0, "thread {tid}: CapAmb {amb:016x}");
        assert!(no_new_privs, "thread {tid}: no_new_privs not set");
    }
    assert!(
        !outcome.logged_kept.0.contains(&CAP_PERFMON),
        "CAP_PERFMON is not needed after attach"
    );
}

/// Runs the drop under a deployment's credentials (`wrapper`, a setpriv
/// command line): the process holds what it logged, the probe still works,
/// and where map calls need no capability (6.5+) nothing is kept.
fn drop_under_deployment_credentials(wrapper: &[String]) -> Outcome {
    let outcome = run_dropcaps_as(wrapper, &[]);
    assert_holds_logged_sets(&outcome);
    assert_probe_still_worked(&outcome);
    if kernel_version() >= (6, 5) {
        assert!(
            outcome.logged_kept.0.is_empty(),
            "kept {}; log:\n{}",
            outcome.logged_kept,
            outcome.log
        );
    }
    outcome
}

fn assert_probe_still_worked(outcome: &Outcome) {
    let r = &outcome.report;
    assert!(r["events"].as_u64().unwrap() >= 8, "{r}");
    assert!(
        r["failed_counter_delta"].as_u64().unwrap() >= r["events"].as_u64().unwrap(),
        "{r}"
    );
    assert!(r["filtered_counter_delta"].as_u64().unwrap() >= 8, "{r}");
    assert_eq!(r["events_after_restore"], r["events"], "{r}");
}

#[test]
fn keeps_only_what_map_access_needs_and_the_probe_still_works() {
    let outcome = run_dropcaps(&[]);
    assert_process_holds_what_it_logged(&outcome);
    assert_probe_still_worked(&outcome);

    // The experiment's answer for this kernel: from 6.5 on, bpf() on a held map
    // fd needs no capability, so nothing at all is kept.
    let kept = &outcome.logged_kept.0;
    assert!(
        kept.iter().all(|c| [CAP_BPF, CAP_SYS_ADMIN].contains(c)),
        "kept {}",
        outcome.logged_kept
    );
    if kernel_version() >= (6, 5) {
        assert!(
            kept.is_empty(),
            "kernel {:?} kept {}; log:\n{}",
            kernel_version(),
            outcome.logged_kept,
            outcome.log
        );
        assert_eq!(outcome.report["for_maps"], serde_json::Value::Null);
    }
    // Without CAP_SYS_PTRACE a privileged process's cwd is out of reach.
    assert_eq!(outcome.report["privileged_cwd_readable"], false, "{}", outcome.report);
}

#[test]
fn keep_flag_keeps_sys_ptrace_for_proc_cwd() {
    let outcome = run_dropcaps(&["--capabilities.keep", "sys_ptrace"]);
    assert_process_holds_what_it_logged(&outcome);
    assert_probe_still_worked(&outcome);
    assert!(
        outcome.logged_kept.0.contains(&CAP_SYS_PTRACE),
        "kept {}",
        outcome.logged_kept
    );
    assert_eq!(outcome.report["privileged_cwd_readable"], true, "{}", outcome.report);
}

#[test]
fn refuses_while_other_threads_run_and_changes_nothing() {
    let own_caps = || status_masks(&std::fs::read_to_string("/proc/thread-self/status").unwrap()).unwrap();
    let mut probe = load_probe(Config::DEFAULT);
    // A second thread for certain (the harness may run this test on its main thread).
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = stop_rx.recv();
    });
    let before = own_caps();
    let result = drop_capabilities(&[], &mut probe);
    let after = own_caps();
    stop_tx.send(()).unwrap();
    other.join().unwrap();
    match result {
        Err(PrivilegeError::OtherThreadsRunning(n)) => assert!(n >= 2, "{n}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(before, after, "a refused drop changed capabilities");
}

/// The capabilities a deployment file grants, as setpriv takes them: names
/// (`CAP_BPF`, `BPF`) to `+bpf,+perfmon`.
fn setpriv_caps(names: &[String]) -> String {
    let caps: Vec<String> = names
        .iter()
        .map(|n| format!("+{}", n.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    format!("-all,{}", caps.join(","))
}

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn works_with_the_systemd_units_credentials() {
    // What deploy/systemd/badfd.service gives: a non-root dynamic user with
    // ambient capabilities (and the same bounding set), no CAP_SETPCAP.
    let unit = repo_file("deploy/systemd/badfd.service");
    let ambient: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit")
        .split_whitespace()
        .map(String::from)
        .collect();
    let bounding = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    assert_eq!(
        bounding.split_whitespace().collect::<Vec<_>>(),
        ambient.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let caps = setpriv_caps(&ambient);
    let wrapper: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps={caps}"),
        &format!("--ambient-caps={caps}"),
        &format!("--bounding-set={caps}"),
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let outcome = drop_under_deployment_credentials(&wrapper);
    // Without CAP_SETPCAP the bounding set stays the unit's, and the log says so.
    assert_eq!(
        outcome.logged_bounding.to_string().split(',').count(),
        ambient.len(),
        "{}",
        outcome.log
    );
    assert!(outcome.log.contains("no CAP_SETPCAP"), "{}", outcome.log);
}

#[test]
fn works_with_the_containers_credentials() {
    // What `docker run --cap-drop=ALL --cap-add=...` in deploy/container/README.md
    // gives: uid 0 holding only the added capabilities, in every set.
    let readme = repo_file("deploy/container/README.md");
    let mut command = String::new();
    for line in readme.lines().skip_while(|l| !l.starts_with("docker run")) {
        command.push_str(line);
        if !line.ends_with('\\') {
            break;
        }
    }
    let added: Vec<String> = command
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--cap-add="))
        .map(String::from)
        .collect();
    assert!(command.contains("--cap-drop=ALL"), "{command}");
    assert_eq!(
        added,
        ["BPF", "PERFMON"],
        "the README's docker run adds other capabilities"
    );
    let caps = setpriv_caps(&added);
    let wrapper: Vec<String> = [
        "setpriv",
        &format!("--inh-caps={caps}"),
        &format!("--bounding-set={caps}"),
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    drop_under_deployment_credentials(&wrapper);
}

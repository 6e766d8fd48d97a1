//! Loads and attaches badfd's probe, drops capabilities the way `badfd serve`
//! does (`--capabilities.keep` as serve takes it), then proves that the probe
//! still works with what is left. Driven by tests/tests/privileges.rs:
//!
//! 1. loads, attaches, drops (logging what it kept, on stderr), starts the event
//!    collector thread, prints `ready <pid>` and waits for a line on stdin, so
//!    the test can read this process's /proc status from outside;
//! 2. runs the workload: its failures must arrive as events and in counters;
//! 3. changes the Config at run time (pid filter), runs the workload again: no
//!    events, counted as filtered; then back: events flow again;
//! 4. tries to read /proc/<pid>/cwd of a privileged process (a `sleep` started
//!    before the drop) and prints one JSON report line.
//!
//! It panics (non-zero exit) when anything does not hold.

use std::{
    io::BufRead,
    process::{Command, Stdio},
    time::Duration,
};

use badfd::{config::PrivilegeArgs, privileges::drop_capabilities};
use badfd_tests::{load_probe, run_workload, Collector, TempDir};
use clap::Parser;
use exporter_common::{Config, Stream, SLOW_DISABLED};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    privileges: PrivilegeArgs,
}

const WAIT: Duration = Duration::from_secs(5);

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();

    // A privileged process to look at through /proc after the drop (spawn and
    // reap happen on this thread; no thread is left behind).
    let mut privileged = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep");

    let config = Config {
        slow_threshold_ns: SLOW_DISABLED,
        ..Config::DEFAULT
    };
    let mut probe = load_probe(config);
    let retained = drop_capabilities(&cli.privileges.capabilities_keep, &mut probe).unwrap_or_else(|e| panic!("drop: {e}"));
    let collector = Collector::start(&mut probe);

    println!("ready {}", std::process::id());
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");

    // Events and counters still flow.
    let dir = TempDir::new("dropcaps");
    let before = probe.counters().expect("counters after the drop");
    let run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let failures = run.failures().len();
    let events = collector.wait_for(&run, failures, WAIT);
    let after = probe.counters().expect("counters after the drop");
    assert_eq!(events.len(), failures, "events of the workload after the drop");
    let mut seen: Vec<(u32, i64, Vec<u8>)> = events.iter().map(|e| (e.tid, e.ret, e.path.clone())).collect();
    let mut made: Vec<(u32, i64, Vec<u8>)> = run
        .failures()
        .iter()
        .map(|r| {
            (
                r.tid,
                r.ret,
                r.path[..r.path.len().min(exporter_common::PATH_MAX - 1)].to_vec(),
            )
        })
        .collect();
    seen.sort();
    made.sort();
    assert_eq!(seen, made, "the events are exactly the workload's failures");
    let failed_delta: u64 = (0..exporter_common::Syscall::ALL.len())
        .map(|s| after.opens[s][exporter_common::RESULT_FAILED] - before.opens[s][exporter_common::RESULT_FAILED])
        .sum();
    assert!(
        failed_delta >= failures as u64,
        "failed-open counters moved by {failed_delta} < {failures}"
    );

    // A run-time Config change after the drop: stream only pid 1.
    probe
        .set_config(Config {
            filter_pid: 1,
            ..config
        })
        .expect("set_config after the drop");
    let before = probe.counters().unwrap();
    let dir = TempDir::new("dropcaps-filtered");
    let filtered_run = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let filtered_events = collector.wait_for(&filtered_run, 1, Duration::from_millis(500));
    let after = probe.counters().unwrap();
    assert!(
        filtered_events.is_empty(),
        "the pid filter set after the drop was ignored"
    );
    let filtered = after.stream[Stream::Filtered as usize] - before.stream[Stream::Filtered as usize];
    assert!(
        filtered >= filtered_run.failures().len() as u64,
        "filtered counter moved by {filtered}"
    );

    probe.set_config(config).expect("set_config after the drop");
    let dir = TempDir::new("dropcaps-again");
    let again = run_workload(&["failures", dir.path().to_str().unwrap()]);
    let again_events = collector.wait_for(&again, again.failures().len(), WAIT);
    assert_eq!(
        again_events.len(),
        again.failures().len(),
        "events after restoring the config"
    );

    let cwd_readable = std::fs::read_link(format!("/proc/{}/cwd", privileged.id())).is_ok();
    let _ = privileged.kill();
    let _ = privileged.wait();
    drop(collector);

    let report = serde_json::json!({
        "kept": retained.kept.to_string(),
        "kept_mask": retained.kept.mask(),
        "bounding_mask": retained.bounding.mask(),
        "for_maps": retained.needed_for_maps.map(|c| c.to_string()),
        "events": events.len(),
        "failed_counter_delta": failed_delta,
        "filtered_counter_delta": filtered,
        "events_after_restore": again_events.len(),
        "privileged_cwd_readable": cwd_readable,
    });
    println!("{report}");
}

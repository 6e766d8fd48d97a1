//! The terminal sink of `badfd trace`: each anomaly as a row of a fixed-width
//! table for a person, or as a JSON line for a program, and a summary on
//! stderr at the end, which begins with a diagnosis (`diagnosis.rs`). The
//! renderings (`table.rs`, `json.rs`, `summary.rs`, `diagnosis.rs`,
//! `text.rs`) are pure functions (no clock, no terminal, no /proc), so that
//! the output can be tested byte for byte; this module writes them.

pub mod diagnosis;
pub mod json;
pub mod output;
pub mod summary;
pub mod table;
pub mod text;

use std::{
    io::{IsTerminal, Write},
    os::fd::AsFd,
    sync::Arc,
    time::Instant,
};

use exporter_common::LOSS_COUNT;
use tokio::sync::Notify;

pub use diagnosis::{CommandExit, Diagnosis, Interpreter};
pub use output::Output;
pub use summary::Summary;
pub use table::TableStyle;

use crate::pipeline::{Anomaly, PipelineStats, Sink};

/// How the terminal sink writes.
#[derive(Clone, Copy, Debug)]
pub struct TerminalOptions {
    /// JSON lines instead of the table.
    pub json: bool,
    /// `--wide`: whole paths in the table, even on a terminal.
    pub wide: bool,
    /// ANSI colours in the table.
    pub color: bool,
    /// The summary on stderr at the end.
    pub summary: bool,
    /// `--all-failures`: failures found later (a search path's probes) are
    /// shown too, marked; otherwise only counted.
    pub all_failures: bool,
    /// Failures are classified found later or not (`--found-later-window` not 0).
    pub classified: bool,
}

/// How the followed command ended, told to the sink before the stream ends.
pub type ExitSlot = Arc<std::sync::Mutex<Option<CommandExit>>>;

/// Interpreters of scripts whose exec failed, looked up at most this many times.
const INTERPRETERS_CACHED: usize = 1_024;

/// Reads the kernel's loss counters (host-wide, since attach) for the summary.
pub type KernelLosses = Box<dyn FnMut() -> anyhow::Result<[u64; LOSS_COUNT]> + Send>;

pub struct TerminalSink {
    options: TerminalOptions,
    style: TableStyle,
    output: Output,
    /// Set when the output failed (a closed pipe): nothing more is written.
    output_error: Option<std::io::Error>,
    /// Told once the output has failed.
    closed: Arc<Notify>,
    summary: Summary,
    diagnosis: Diagnosis,
    exit: ExitSlot,
    /// Scripts' `#!` interpreters by (pid's root, path), read once.
    interpreters: std::collections::HashMap<(u32, Vec<u8>), Option<Interpreter>>,
    /// The pipeline's counters: what the summary says was hidden or undecodable.
    stats: PipelineStats,
    started: Instant,
    kernel_losses: KernelLosses,
}

impl TerminalSink {
    /// Writes the table's header at once (before any anomaly can arrive).
    pub fn new(output: Output, options: TerminalOptions, stats: PipelineStats, kernel_losses: KernelLosses) -> TerminalSink {
        let mut sink = TerminalSink {
            options,
            style: TableStyle { width: None, wide: options.wide, color: options.color },
            output,
            output_error: None,
            closed: Arc::new(Notify::new()),
            summary: Summary::new(),
            diagnosis: Diagnosis::new(),
            exit: Arc::new(std::sync::Mutex::new(None)),
            interpreters: std::collections::HashMap::new(),
            stats,
            started: Instant::now(),
            kernel_losses,
        };
        sink.refresh_width();
        if !options.json {
            let header = table::header(&sink.style);
            sink.write(header);
        }
        sink
    }

    /// Notified once the output fails (nobody reads any more, as after
    /// `| head`): without a command to follow, `trace` ends then.
    pub fn closed(&self) -> Arc<Notify> {
        self.closed.clone()
    }

    /// Where `trace` puts the command's exit before stopping the stream: the
    /// diagnosis ranks by it and the JSON last line reports it.
    pub fn exit_slot(&self) -> ExitSlot {
        self.exit.clone()
    }

    /// For a failed exec (ENOENT, not found later) of a script: its `#!`
    /// interpreter and whether that exists, read now (after the fact) in the
    /// process's root, or badfd's own when the process is gone.
    fn interpreter_of(&mut self, a: &Anomaly) -> Option<Interpreter> {
        let e = &a.event;
        if !e.syscall.is_exec() || e.errno() != Some(libc::ENOENT) || !a.not_found() || !a.resolved.path.starts_with(b"/") {
            return None;
        }
        let key = (e.pid, a.resolved.path.clone());
        if let Some(known) = self.interpreters.get(&key) {
            return known.clone();
        }
        let found = read_interpreter(e.pid, e.mnt_ns, &a.resolved.path);
        if self.interpreters.len() < INTERPRETERS_CACHED {
            self.interpreters.insert(key, found.clone());
        }
        found
    }

    fn refresh_width(&mut self) {
        self.style.width = if self.output.is_terminal() { self.output.terminal_width() } else { None };
    }

    fn write(&mut self, line: String) {
        if self.output_error.is_none() {
            if let Err(e) = self.output.line(line) {
                self.output_error = Some(e);
                self.closed.notify_one();
            }
        }
    }

    /// The summary, to stderr: paths fit the terminal; in a log they stay whole.
    fn write_summary(&mut self) {
        let losses = (self.kernel_losses)().unwrap_or_else(|error| {
            eprintln!("badfd trace: reading the kernel's loss counters failed ({error}); the summary shows none");
            [0; LOSS_COUNT]
        });
        self.summary.hidden_by_filters = self.stats.filtered.get();
        self.summary.undecodable = self.stats.events_undecodable.get();
        let stderr = std::io::stderr();
        let path_width = match stderr.is_terminal() {
            true => terminal_size::terminal_size_of(stderr.as_fd()).map(|(w, _)| (w.0 as usize).saturating_sub(12).max(20)),
            false => None,
        };
        let exit = *self.exit.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = self.diagnosis.render(exit.as_ref(), self.options.all_failures, self.options.classified, path_width);
        text.push_str(&self.summary.render(self.started.elapsed(), &losses, path_width));
        let _ = stderr.lock().write_all(text.as_bytes());
    }
}

/// The `#!` interpreter of the script at `path` as the process `pid` saw it.
fn read_interpreter(pid: u32, mnt_ns: u32, path: &[u8]) -> Option<Interpreter> {
    use std::{io::Read, os::unix::ffi::OsStrExt, os::unix::fs::MetadataExt, path::Path};
    let process_root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let own_mnt_ns = std::fs::metadata("/proc/self/ns/mnt").ok().map(|m| m.ino());
    let root = if std::fs::read_link(&process_root).is_ok() {
        process_root
    } else if mnt_ns == 0 || Some(mnt_ns as u64) == own_mnt_ns {
        std::path::PathBuf::from("/")
    } else {
        return None;
    };
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(root.join(Path::new(std::ffi::OsStr::from_bytes(&path[1..])))).ok()?;
    let n = file.read(&mut head).ok()?;
    let interpreter = diagnosis::shebang_interpreter(&head[..n])?;
    let missing = match interpreter.first() {
        Some(b'/') => crate::pipeline::missing::first_missing(&root, &interpreter),
        _ => None,
    };
    Some(Interpreter { path: interpreter, missing })
}

impl Sink for TerminalSink {
    fn accept(&mut self, batch: &[Anomaly]) {
        self.refresh_width();
        for a in batch {
            // Every failure counts in the diagnosis, shown or not.
            let interpreter = self.interpreter_of(a);
            self.diagnosis.record(a, interpreter);
            if self.output_error.is_some() {
                // Nobody reads any more (`| head`): the summary counts what was shown.
                continue;
            }
            if a.found_later == Some(true) && !self.options.all_failures {
                continue;
            }
            self.summary.record(a);
            let line = if self.options.json { json::json_line(a) } else { table::row(a, &chrono::Local, &self.style) };
            self.write(line);
        }
    }

    fn finish(&mut self) {
        if let Some(error) = &self.output_error {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("badfd trace: writing the output failed: {error}");
            }
        }
        if self.options.summary {
            self.write_summary();
        }
        // Last, so that it is the last line even when the output is stderr.
        if self.options.json {
            let exit = *self.exit.lock().unwrap_or_else(|e| e.into_inner());
            let line = self.diagnosis.json_line(exit.as_ref());
            self.write(line);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use exporter_common::{EVENT_FAILED, EVENT_SLOW};

    use super::*;
    use crate::{
        pipeline::resolve::{Resolution, ResolvedPath},
        OpenEvent,
    };

    /// An anomaly of `cat` (pid 4242) at 2023-11-14T22:13:20.123456789Z.
    pub fn anomaly(path: &[u8], ret: i64, latency_ns: u64, slow: bool) -> Anomaly {
        let mut flags = if ret < 0 { EVENT_FAILED } else { 0 };
        if slow {
            flags |= EVENT_SLOW;
        }
        let event = OpenEvent {
            start_ns: 5_000_000_000,
            latency_ns,
            cgroup_id: 77,
            ret,
            open_flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            pid: 4242,
            tid: 4243,
            uid: 1000,
            gid: 100,
            flags,
            comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
            path: path.to_vec(),
            ..Default::default()
        };
        Anomaly::new(event, ResolvedPath { path: path.to_vec(), how: Resolution::Absolute }, 1_700_000_000_123_456_789)
    }

    /// JSON lines into a file, one per anomaly shown; after the output
    /// fails, nothing more is written or counted, and `closed` is told once.
    #[test]
    fn writes_whole_lines_and_stops_at_a_closed_output() {
        let dir = std::env::temp_dir().join(format!("badfd-terminal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("out.jsonl");
        let output = Output::open(Some(&file), false).unwrap();
        let options = TerminalOptions { json: true, wide: false, color: false, summary: false, all_failures: false, classified: true };
        let mut sink = TerminalSink::new(output, options, PipelineStats::default(), Box::new(|| Ok([0; LOSS_COUNT])));
        sink.accept(&[anomaly(b"/etc/a", -2, 1, false), anomaly(b"/etc/b", -13, 1, false)]);
        let text = std::fs::read_to_string(&file).unwrap();
        let paths: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string()).collect();
        assert_eq!(paths, ["\"/etc/a\"", "\"/etc/b\""]);
        assert_eq!(sink.summary.anomalies, 2);

        // /dev/full refuses every write: the output fails at the first line.
        let full = Output::File(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap());
        let mut sink = TerminalSink::new(full, options, PipelineStats::default(), Box::new(|| Ok([0; LOSS_COUNT])));
        let closed = sink.closed();
        sink.accept(&[anomaly(b"/etc/a", -2, 1, false), anomaly(b"/etc/b", -2, 1, false)]);
        assert_eq!(sink.summary.anomalies, 1, "the one whose write failed is counted, none after it");
        assert!(sink.output_error.is_some());
        let told = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), closed.notified()).await.is_ok()
        });
        assert!(told, "closed was notified");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Found-later failures: written with --all-failures only, counted either
    /// way; the diagnosis is the last line (with --no-summary too) and says
    /// how the command ended.
    #[test]
    fn probes_are_set_aside_and_the_diagnosis_is_the_last_line() {
        let dir = std::env::temp_dir().join(format!("badfd-terminal-diag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for all_failures in [false, true] {
            let file = dir.join(format!("out-{all_failures}.jsonl"));
            let output = Output::open(Some(&file), false).unwrap();
            let options = TerminalOptions { json: true, wide: false, color: false, summary: false, all_failures, classified: true };
            let mut sink = TerminalSink::new(output, options, PipelineStats::default(), Box::new(|| Ok([0; LOSS_COUNT])));
            let mut probe = anomaly(b"/usr/lib/locale/C.UTF-8/LC_CTYPE", -2, 1, false);
            probe.found_later = Some(true);
            let mut cause = anomaly(b"/etc/myapp.conf", -2, 1, false);
            cause.found_later = Some(false);
            sink.accept(&[probe, cause]);
            *sink.exit_slot().lock().unwrap() = Some(CommandExit::killed(libc::SIGSEGV));
            sink.finish();
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let shown: Vec<&str> = lines[..lines.len() - 1].iter().map(|l| l["path"].as_str().unwrap()).collect();
            match all_failures {
                false => assert_eq!(shown, ["/etc/myapp.conf"]),
                true => assert_eq!(shown, ["/usr/lib/locale/C.UTF-8/LC_CTYPE", "/etc/myapp.conf"]),
            }
            let last = lines.last().unwrap();
            assert_eq!(last["found_later"], 1);
            assert_eq!(last["diagnosis"][0]["path"], "/etc/myapp.conf");
            assert_eq!(last["diagnosis"].as_array().unwrap().len(), 1);
            assert_eq!(last["exit"]["signal"], "SIGSEGV");
            assert_eq!(last["exit"]["code"], serde_json::Value::Null);
            assert_eq!(sink.summary.anomalies, if all_failures { 2 } else { 1 }, "the summary counts what was shown");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

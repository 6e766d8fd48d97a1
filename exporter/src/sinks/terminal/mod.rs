//! The terminal sink of `badfd trace`: each anomaly as a row of a fixed-width
//! table for a person, or as a JSON line for a program, and a summary on
//! stderr at the end. The renderings (`table.rs`, `json.rs`, `summary.rs`,
//! `text.rs`) are pure functions (no clock, no terminal, no /proc), so that
//! the output can be tested byte for byte; this module writes them.

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
}

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
        let text = self.summary.render(self.started.elapsed(), &losses, path_width);
        let _ = stderr.lock().write_all(text.as_bytes());
    }
}

impl Sink for TerminalSink {
    fn accept(&mut self, batch: &[Anomaly]) {
        self.refresh_width();
        for a in batch {
            if self.output_error.is_some() {
                // Nobody reads any more (`| head`): the summary counts what was shown.
                return;
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
        let options = TerminalOptions { json: true, wide: false, color: false, summary: false };
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
}

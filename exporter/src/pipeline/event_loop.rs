//! The one event reader: the probe's ring buffer drained into the pipeline on
//! a thread of its own, so that a flood of anomalies never delays a scrape or
//! a signal, and vice versa. `serve` and `trace` both run it.

use std::{
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::Pipeline;
use crate::probe::{EventReader, POLL_INTERVAL};

/// How often idle label sets are expired and unused strings forgotten.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

/// Records one turn reads at most: under a flood the ring never empties, and
/// the turn's other work (deciding held failures, handing batches on,
/// housekeeping) must still run.
pub const TURN_RECORDS: usize = 16_384;

/// What one turn read from the ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub events: usize,
    pub bytes: u64,
}

/// The ring buffer and the pipeline it feeds.
pub struct EventLoop {
    reader: EventReader,
    pipeline: Pipeline,
    last_housekeeping: Instant,
}

impl EventLoop {
    pub fn new(reader: EventReader, pipeline: Pipeline) -> EventLoop {
        EventLoop { reader, pipeline, last_housekeeping: Instant::now() }
    }

    /// Drains what the ring buffer holds into the pipeline, hands it to the
    /// sinks, and runs the housekeeping when it is due.
    pub fn turn(&mut self) -> Drained {
        let mut bytes = 0;
        let pipeline = &mut self.pipeline;
        let events = self.reader.drain_at_most(TURN_RECORDS, |record| {
            bytes += record.len() as u64;
            pipeline.push_bytes(record)
        });
        pipeline.flush();
        if self.last_housekeeping.elapsed() >= HOUSEKEEPING_INTERVAL {
            pipeline.housekeeping();
            // What a flood allocated and freed since (label strings, batches).
            release_free_heap();
            self.last_housekeeping = Instant::now();
        }
        Drained { events, bytes }
    }

    /// Waits until the kernel wakes the reader (a batch is waiting) or
    /// `POLL_INTERVAL` passes: events below the kernel's wakeup watermark
    /// wait at most that long.
    pub fn wait(&self) {
        let mut pfd = libc::pollfd { fd: self.reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; the fd lives as long as `self.reader`.
        unsafe { libc::poll(&mut pfd, 1, POLL_INTERVAL.as_millis() as i32) };
    }

    /// Turns until `stop` is set, then once more for what came before it,
    /// and finishes the pipeline; returns it.
    pub fn run(mut self, stop: &AtomicBool) -> Pipeline {
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let full_turn = self.turn().events == TURN_RECORDS;
            if full_turn {
                // More is waiting (and, when stopping, came before the stop).
                continue;
            }
            if stopping {
                break;
            }
            self.wait();
        }
        self.pipeline.finish();
        self.pipeline
    }

    /// `run` on a thread of its own (`badfd-events`).
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<Pipeline>> {
        std::thread::Builder::new().name("badfd-events".into()).spawn(move || self.run(&stop))
    }
}

/// Hands free heap pages back to the system. Loading parses the kernel's BTF
/// and the eBPF object: about 20 MiB of heap that is free again afterwards but
/// that glibc keeps (idle RSS 54 MiB before this, 38 MiB after; see
/// bench/RESULTS.md); a flood of anomalies leaves the same behind. It walks
/// glibc's free lists (a few MiB after a flood), once per housekeeping; the
/// ring buffer holds tens of ms of events meanwhile.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! The event ring buffer, read in batches without a wakeup per event: one
//! reader for every surface (serve and trace alike).

use std::{
    os::fd::AsRawFd,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use exporter_common::MAP_EVENTS;
use tokio::io::unix::AsyncFd;

use super::{Probe, ProbeError};

impl Probe {
    /// Takes the event ring buffer; call once.
    pub fn take_events(&mut self) -> Result<EventReader, ProbeError> {
        let map = self.ebpf.take_map(MAP_EVENTS).ok_or(ProbeError::MapMissing(MAP_EVENTS))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Map(MAP_EVENTS, e))?;
        Ok(EventReader { ring })
    }
}

/// Reads anomaly events from the ring buffer without a wakeup per event.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

/// How long the reader sleeps at most when the kernel does not wake it: events
/// below the kernel's wakeup watermark wait at most this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl EventReader {
    /// Calls `f` with every event now in the ring buffer; returns how many.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        self.drain_at_most(usize::MAX, f)
    }

    /// As `drain`, stopping after `limit` records (the rest stay in the ring).
    pub fn drain_at_most(&mut self, limit: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(item) = self.ring.next() else { break };
            f(&item);
            n += 1;
        }
        n
    }

    /// Turns the reader into one that tokio can wait on.
    pub fn into_async(self) -> std::io::Result<AsyncEventReader> {
        // SAFETY: the ring buffer's fd is owned by `self`, which the AsyncFd owns
        // and never closes or replaces while registered.
        let fd = unsafe { AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(AsyncEventReader { fd })
    }
}

impl AsRawFd for EventReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

pub struct AsyncEventReader {
    fd: AsyncFd<EventReader>,
}

impl AsyncEventReader {
    /// Waits until the kernel wakes us or `POLL_INTERVAL` passes, then drains.
    pub async fn next_batch(&mut self, f: impl FnMut(&[u8])) -> usize {
        if let Ok(Ok(mut guard)) = tokio::time::timeout(POLL_INTERVAL, self.fd.readable_mut()).await {
            guard.clear_ready();
        }
        self.fd.get_mut().drain(f)
    }

    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        self.fd.get_mut().drain(f)
    }
}


//! The one clock of the pipeline: the kernel stamps events with
//! CLOCK_MONOTONIC, people read wall-clock time. The offset between the two is
//! read when the clock is made and again on every [`WallClock::refresh`] (the
//! pipeline refreshes it once per batch), so that a wall clock stepped by NTP
//! is followed within a batch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Unix-epoch ns minus monotonic ns.
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        WallClock { offset_ns: realtime as i128 - monotonic as i128 }
    }

    /// A clock whose epoch offset is given (tests).
    pub fn with_offset_ns(offset_ns: i128) -> WallClock {
        WallClock { offset_ns }
    }

    /// Reads the offset between the two clocks again.
    pub fn refresh(&mut self) {
        *self = WallClock::now();
    }

    /// Unix-epoch ns of a CLOCK_MONOTONIC timestamp.
    pub fn wall_ns(&self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}

/// The wall-clock time of Unix-epoch ns (as [`WallClock::wall_ns`] gives them).
pub fn system_time(wall_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(wall_ns)
}

/// CLOCK_MONOTONIC (the kernel's event time) now, in ns.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_adds_the_offset() {
        let c = WallClock::with_offset_ns(1_000);
        assert_eq!(c.wall_ns(5), 1_005);
        let now = WallClock::now();
        let wall = now.wall_ns(clock_ns(libc::CLOCK_MONOTONIC));
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!(wall.abs_diff(real) < 1_000_000_000, "{wall} vs {real}");
    }

    #[test]
    fn monotonic_times_become_wall_times() {
        let now = monotonic_ns();
        let wall = system_time(WallClock::now().wall_ns(now - 2_000_000_000));
        let age = SystemTime::now().duration_since(wall).unwrap();
        assert!(age >= Duration::from_secs(2) && age < Duration::from_secs(3), "{age:?}");
    }
}

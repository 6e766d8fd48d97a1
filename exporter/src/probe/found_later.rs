//! The kernel's found-later counters, read once each epoch is decided: every
//! failure of an epoch is counted in its bucket when it happens, and its find
//! (a successful open of the same basename by the same process within the
//! window) in the same bucket when that happens, so once the window after an
//! epoch has closed, its failures less its finds were never found. The
//! kernel reuses a bucket `FOUND_EPOCHS` epochs later; reading each epoch in
//! between keeps every count exact (the contract, "Found later").

use exporter_common::{Config, Counters, FOUND_EPOCHS, FOUND_ERRNO_SLOTS};

/// After an epoch's window has closed, how much longer to wait before reading
/// it, for the kernel's last counter writes of that epoch to land.
const SETTLE_NS: u64 = 20_000_000;

/// Failures decided so far, per errno slot, cumulative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLaterTotals {
    /// Failures found later (probes of a search path).
    pub found: [u64; FOUND_ERRNO_SLOTS],
    /// Failures not found within the window.
    pub not_found: [u64; FOUND_ERRNO_SLOTS],
}

impl Default for FoundLaterTotals {
    fn default() -> Self {
        FoundLaterTotals { found: [0; FOUND_ERRNO_SLOTS], not_found: [0; FOUND_ERRNO_SLOTS] }
    }
}

/// Reads the kernel's epoch buckets as their epochs close.
#[derive(Clone, Debug)]
pub struct FoundLaterTally {
    window_ns: u64,
    epoch_ns: u64,
    /// The oldest epoch not read yet.
    next_epoch: u64,
    /// Each bucket's counts when it was last read.
    seen_failures: [[u64; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
    seen_found: [[u64; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
    totals: FoundLaterTotals,
    /// Epochs read after the kernel had begun to reuse their bucket (the
    /// reader was late by `FOUND_EPOCHS - 2` epochs or more): their counts may
    /// be mixed with a later epoch's.
    pub late_epochs: u64,
    /// Finds beyond an epoch's failures: two threads of one process deciding
    /// the same name at the same instant, or a late read. Counted as found;
    /// never subtracted from another errno's count.
    pub excess_finds: u64,
}

impl FoundLaterTally {
    /// A tally of a probe loaded with `config` (its counters start at 0),
    /// from the epoch of `now_ns` (CLOCK_MONOTONIC) on; `None` where the
    /// classification is off.
    pub fn new(config: &Config, now_ns: u64) -> Option<FoundLaterTally> {
        let (window_ns, epoch_ns) = (config.found_later_window_ns, config.found_later_epoch_ns);
        if window_ns == 0 || epoch_ns == 0 {
            return None;
        }
        Some(FoundLaterTally {
            window_ns,
            epoch_ns,
            next_epoch: now_ns / epoch_ns,
            seen_failures: [[0; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
            seen_found: [[0; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
            totals: FoundLaterTotals::default(),
            late_epochs: 0,
            excess_finds: 0,
        })
    }

    /// The newest epoch decided at `now_ns`: its window has closed (and the
    /// counters have settled).
    fn newest_decided(&self, now_ns: u64) -> Option<u64> {
        let decided_until = now_ns.checked_sub(self.window_ns + SETTLE_NS)?;
        // Epoch k is decided once (k + 1) * epoch_ns <= decided_until.
        (decided_until / self.epoch_ns).checked_sub(1)
    }

    /// Counts every epoch decided at `now_ns`, from `counters` read at `now_ns`.
    /// Call at least once every `FOUND_EPOCHS - 2` epochs.
    pub fn harvest(&mut self, counters: &Counters, now_ns: u64) {
        let Some(newest) = self.newest_decided(now_ns) else { return };
        while self.next_epoch <= newest {
            let epoch = self.next_epoch;
            let bucket = (epoch % FOUND_EPOCHS as u64) as usize;
            // The kernel writes this bucket again from epoch + FOUND_EPOCHS on.
            if now_ns >= (epoch + FOUND_EPOCHS as u64) * self.epoch_ns {
                self.late_epochs += 1;
            }
            for slot in 0..FOUND_ERRNO_SLOTS {
                let failures = counters.failures_by_epoch[bucket][slot].wrapping_sub(self.seen_failures[bucket][slot]);
                let found = counters.found_by_epoch[bucket][slot].wrapping_sub(self.seen_found[bucket][slot]);
                self.seen_failures[bucket][slot] = counters.failures_by_epoch[bucket][slot];
                self.seen_found[bucket][slot] = counters.found_by_epoch[bucket][slot];
                self.totals.found[slot] += found;
                self.totals.not_found[slot] += failures.saturating_sub(found);
                self.excess_finds += found.saturating_sub(failures);
            }
            self.next_epoch += 1;
        }
    }

    /// Failures decided so far.
    pub fn totals(&self) -> &FoundLaterTotals {
        &self.totals
    }

    /// How long after a failure it is counted at most: its window, the
    /// settling time and one epoch.
    pub fn delay_ns(&self) -> u64 {
        self.window_ns + SETTLE_NS + self.epoch_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn config() -> Config {
        Config { found_later_window_ns: S, found_later_epoch_ns: S, ..Config::DEFAULT }
    }

    #[test]
    fn an_epoch_is_counted_once_its_window_has_closed() {
        let mut tally = FoundLaterTally::new(&config(), 10 * S + 1).unwrap();
        let mut c = Counters::ZERO;
        // Epoch 10: 5 ENOENT, 3 of them found (one found in epoch 11).
        c.failures_by_epoch[10 % 4][2] = 5;
        c.found_by_epoch[10 % 4][2] = 3;
        // Epoch 11: 2 EACCES, none found yet.
        c.failures_by_epoch[11 % 4][13] = 2;
        tally.harvest(&c, 11 * S + S / 2);
        assert_eq!(tally.totals(), &FoundLaterTotals::default(), "epoch 10's window is still open");
        tally.harvest(&c, 12 * S + SETTLE_NS + 1);
        assert_eq!((tally.totals().found[2], tally.totals().not_found[2]), (3, 2));
        assert_eq!(tally.totals().not_found[13], 0, "epoch 11 is not decided yet");
        // Epoch 11 gets one find before its window closes.
        c.found_by_epoch[11 % 4][13] = 1;
        tally.harvest(&c, 13 * S + SETTLE_NS + 1);
        assert_eq!((tally.totals().found[13], tally.totals().not_found[13]), (1, 1));
        // Epoch 14 reuses bucket 2 (epoch 10's): only what is new counts.
        c.failures_by_epoch[14 % 4][2] += 4;
        for second in 14..=16 {
            tally.harvest(&c, second * S + SETTLE_NS + 1);
        }
        assert_eq!((tally.totals().found[2], tally.totals().not_found[2]), (3, 6));
        assert_eq!((tally.late_epochs, tally.excess_finds), (0, 0));
    }

    #[test]
    fn a_late_reader_and_excess_finds_are_counted_not_hidden() {
        let mut tally = FoundLaterTally::new(&config(), 0).unwrap();
        let mut c = Counters::ZERO;
        c.failures_by_epoch[0][2] = 1;
        c.found_by_epoch[0][2] = 2;
        tally.harvest(&c, 5 * S);
        assert_eq!((tally.totals().found[2], tally.totals().not_found[2]), (2, 0));
        assert_eq!(tally.excess_finds, 1);
        assert!(tally.late_epochs >= 1, "epoch 0 was read after its bucket's reuse began");
    }

    #[test]
    fn off_without_a_window() {
        assert!(FoundLaterTally::new(&Config { found_later_window_ns: 0, ..Config::DEFAULT }, 0).is_none());
    }
}

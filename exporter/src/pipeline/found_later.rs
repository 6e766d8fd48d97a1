//! The found-later stage: tells a failure that a search path probed (the same
//! process opened a file of the same basename successfully soon after: the
//! dynamic loader, locale lookup, sys.path) from one that was never found.
//!
//! The kernel decides it (exporter-ebpf/src/found_later.rs): each failure's
//! event carries its basename hash, and a successful open that finds earlier
//! failures of its process streams a notice (`EVENT_FOUND`, with
//! `CONFIG_FOUND_NOTICES`). This stage holds each failure until a notice of its
//! process and name arrives (found later) or its window has closed (not
//! found), then hands it on, decided. Non-failures pass at once.

use std::collections::{HashMap, VecDeque};

use super::Anomaly;
use crate::OpenEvent;

/// Failures held at most (about 300 bytes each, plus the path): a flood
/// beyond it decides the oldest early, as not found, and counts them.
pub const HELD_MAX: usize = 32_768;

/// Bytes of paths held at most (the path as passed, the kernel's directory,
/// the resolved path: up to 16 KB for one failure of any user who opens
/// 4095-byte relative paths from a 4 KB-deep directory, and `HELD_MAX` of
/// them 512 MiB): past it the oldest are decided early too, and counted.
/// Ordinary paths (a few hundred bytes a failure) never reach it.
pub const HELD_MAX_PATH_BYTES: usize = 16 << 20;

/// After a failure's window has closed, how long to wait for a notice still on
/// its way: the ring buffer's wakeup (`POLL_INTERVAL`, 50 ms) twice, and
/// margin.
pub const GRACE_NS: u64 = 150_000_000;

/// What to do with an event: a notice is consumed here.
pub enum Notice {
    /// The event was a found notice and nothing more.
    Consumed,
    /// The event was a found notice and goes on: it is also slow, or every
    /// open was asked for (`trace --all`).
    NoticeAndShown(OpenEvent),
    /// The event is no notice.
    NotANotice(OpenEvent),
}

struct Held {
    seq: u64,
    key: (u32, u32),
    /// CLOCK_MONOTONIC ns after which the failure is decided as not found.
    deadline_ns: u64,
    anomaly: Anomaly,
}

/// Counts of this stage, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoundLaterCounts {
    pub notices: u64,
    pub found: u64,
    pub not_found: u64,
    /// Failures decided as not found before their window closed, because
    /// `HELD_MAX` were held (a flood).
    pub decided_early: u64,
}

/// Holds failures until they are decided.
pub struct FoundLaterStage {
    window_ns: u64,
    held: VecDeque<Held>,
    /// Sequence number of `held.front()`.
    next_seq: u64,
    /// Bytes of paths in `held` (see `path_bytes`).
    held_path_bytes: usize,
    /// Undecided failures by (tgid, basename hash): their sequence numbers.
    /// Oldest first: failures are released oldest first, so a released one
    /// is always the front of its name's list.
    by_name: HashMap<(u32, u32), VecDeque<u64>>,
    counts: FoundLaterCounts,
}

impl FoundLaterStage {
    /// A stage for the kernel's window; `None` (pass everything, undecided)
    /// when the window is 0 (classification off).
    pub fn new(window_ns: u64) -> Option<FoundLaterStage> {
        (window_ns != 0).then(|| FoundLaterStage {
            window_ns,
            held: VecDeque::new(),
            held_path_bytes: 0,
            next_seq: 0,
            by_name: HashMap::new(),
            counts: FoundLaterCounts::default(),
        })
    }

    /// Takes a found notice out of the stream, marking the failures it found.
    pub fn notice(&mut self, event: OpenEvent) -> Notice {
        if !event.found_notice() {
            return Notice::NotANotice(event);
        }
        self.counts.notices += 1;
        if let Some(seqs) = self.by_name.remove(&(event.pid, event.name_hash)) {
            let front = self.held.front().map_or(0, |h| h.seq);
            for seq in seqs {
                if let Some(held) = self.held.get_mut((seq - front) as usize) {
                    held.anomaly.found_later = Some(true);
                }
            }
        }
        match event.shown() {
            true => Notice::NoticeAndShown(event),
            false => Notice::Consumed,
        }
    }

    /// Takes an anomaly arriving at `now_ns` (CLOCK_MONOTONIC): a failure
    /// that can be found later is held; anything else is decided now and
    /// handed to `out`. Holding more than `HELD_MAX` decides the oldest early.
    ///
    /// A failure is held for the window from its arrival, not from its
    /// timestamp: its notice comes after it in the stream, at most a window
    /// later, however long both waited in the ring buffer; and deadlines in
    /// arrival order keep the queue in deadline order.
    pub fn push(&mut self, mut anomaly: Anomaly, now_ns: u64, out: &mut impl FnMut(Anomaly)) {
        let event = &anomaly.event;
        if !event.failed() {
            return out(anomaly);
        }
        if event.name_hash == 0 {
            // No name to find (unreadable or empty path): never found.
            anomaly.found_later = Some(false);
            self.counts.not_found += 1;
            return out(anomaly);
        }
        let bytes = path_bytes(&anomaly);
        while self.held.len() >= HELD_MAX || (!self.held.is_empty() && self.held_path_bytes + bytes > HELD_MAX_PATH_BYTES) {
            self.counts.decided_early += 1;
            self.release_front(out);
        }
        self.held_path_bytes += bytes;
        let key = (event.pid, event.name_hash);
        let seq = self.next_seq + self.held.len() as u64;
        self.by_name.entry(key).or_default().push_back(seq);
        self.held.push_back(Held { seq, key, deadline_ns: now_ns + self.window_ns + GRACE_NS, anomaly });
    }

    /// Hands on, in order, every failure decided by `now_ns` (CLOCK_MONOTONIC):
    /// found, or past its deadline. Stops at the first undecided one (the
    /// stream's order is kept; deadlines are in arrival order).
    pub fn release_due(&mut self, now_ns: u64, out: &mut impl FnMut(Anomaly)) {
        while let Some(front) = self.held.front() {
            if front.anomaly.found_later.is_none() && front.deadline_ns > now_ns {
                break;
            }
            self.release_front(out);
        }
    }

    /// The end of the stream: everything held is decided now (a process that
    /// has not found a name by the end of the trace did not find it).
    pub fn release_all(&mut self, out: &mut impl FnMut(Anomaly)) {
        while !self.held.is_empty() {
            self.release_front(out);
        }
    }

    fn release_front(&mut self, out: &mut impl FnMut(Anomaly)) {
        let Some(mut held) = self.held.pop_front() else { return };
        self.held_path_bytes -= path_bytes(&held.anomaly);
        self.next_seq = held.seq + 1;
        if let Some(seqs) = self.by_name.get_mut(&held.key) {
            if seqs.front() == Some(&held.seq) {
                seqs.pop_front();
            }
            if seqs.is_empty() {
                self.by_name.remove(&held.key);
            }
        }
        let found = *held.anomaly.found_later.get_or_insert(false);
        if found {
            self.counts.found += 1;
        } else {
            self.counts.not_found += 1;
        }
        out(held.anomaly)
    }

    /// Failures held, undecided.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn counts(&self) -> FoundLaterCounts {
        self.counts
    }
}

/// The heap bytes of an anomaly's paths.
fn path_bytes(a: &Anomaly) -> usize {
    let dir = match &a.event.kernel_dir {
        crate::pipeline::event::KernelDir::Resolved(d) => d.capacity(),
        _ => 0,
    };
    a.event.path.capacity() + dir + a.resolved.path.capacity()
}

#[cfg(test)]
mod tests {
    use exporter_common::{EVENT_FAILED, EVENT_FOUND};

    use super::*;
    use crate::pipeline::resolve::{Resolution, ResolvedPath};

    const S: u64 = 1_000_000_000;

    fn failure(pid: u32, hash: u32, at: u64) -> Anomaly {
        let event = OpenEvent { pid, name_hash: hash, start_ns: at, ret: -2, flags: EVENT_FAILED, ..OpenEvent::default() };
        Anomaly::new(event, ResolvedPath { path: Vec::new(), how: Resolution::Unresolved }, 0)
    }

    fn notice(pid: u32, hash: u32, at: u64) -> OpenEvent {
        OpenEvent { pid, name_hash: hash, start_ns: at, ret: 3, flags: EVENT_FOUND, ..OpenEvent::default() }
    }

    fn run(stage: &mut FoundLaterStage, f: impl FnOnce(&mut FoundLaterStage, &mut dyn FnMut(Anomaly))) -> Vec<(u32, u32, bool)> {
        let mut out = Vec::new();
        let mut push = |a: Anomaly| out.push((a.event.pid, a.event.name_hash, a.found_later.unwrap()));
        f(stage, &mut push);
        out
    }

    #[test]
    fn a_failure_is_held_until_found_or_its_window_closes() {
        let mut s = FoundLaterStage::new(S).unwrap();
        let out = run(&mut s, |s, out| {
            s.push(failure(1, 7, 10 * S), 10 * S, &mut |a| out(a));
            s.push(failure(1, 8, 10 * S), 10 * S, &mut |a| out(a));
            s.push(failure(2, 7, 10 * S), 10 * S, &mut |a| out(a));
        });
        assert!(out.is_empty(), "all three wait");
        assert!(matches!(s.notice(notice(1, 7, 10 * S + S / 2)), Notice::Consumed));
        let out = run(&mut s, |s, out| s.release_due(10 * S + S / 2, &mut |a| out(a)));
        assert_eq!(out, vec![(1, 7, true)], "found: released at once; the next waits");
        let out = run(&mut s, |s, out| s.release_due(11 * S + GRACE_NS + 1, &mut |a| out(a)));
        assert_eq!(out, vec![(1, 8, false), (2, 7, false)], "another name, another process: not found");
        assert_eq!(s.counts(), FoundLaterCounts { notices: 1, found: 1, not_found: 2, decided_early: 0 });
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn order_is_kept_and_a_notice_finds_every_failure_of_the_name() {
        let mut s = FoundLaterStage::new(S).unwrap();
        run(&mut s, |s, out| {
            s.push(failure(1, 9, S), S, &mut |a| out(a));
            for _ in 0..3 {
                s.push(failure(1, 7, S), S, &mut |a| out(a));
            }
        });
        s.notice(notice(1, 7, S + 1));
        let out = run(&mut s, |s, out| s.release_due(S + 2, &mut |a| out(a)));
        assert!(out.is_empty(), "the undecided first holds back the found ones behind it");
        let out = run(&mut s, |s, out| s.release_all(&mut |a| out(a)));
        assert_eq!(out, vec![(1, 9, false), (1, 7, true), (1, 7, true), (1, 7, true)]);
    }

    #[test]
    fn a_slow_or_asked_for_notice_finds_and_goes_on() {
        use exporter_common::{EVENT_OPENED, EVENT_SLOW};
        let mut s = FoundLaterStage::new(S).unwrap();
        run(&mut s, |s, out| s.push(failure(1, 7, S), S, &mut |a| out(a)));
        // The loader found the library, and opening it was slow: both.
        let slow = OpenEvent { flags: EVENT_FOUND | EVENT_SLOW, ..notice(1, 7, S + 1) };
        match s.notice(slow) {
            Notice::NoticeAndShown(e) => assert!(e.slow()),
            _ => panic!("a slow open that found a failure is still a slow open"),
        }
        let opened = OpenEvent { flags: EVENT_FOUND | EVENT_OPENED, ..notice(1, 8, S + 1) };
        assert!(matches!(s.notice(opened), Notice::NoticeAndShown(_)), "trace --all shows it");
        let out = run(&mut s, |s, out| s.release_due(S + 2, &mut |a| out(a)));
        assert_eq!(out, vec![(1, 7, true)], "and the failure was found");
        assert_eq!(s.counts().notices, 2);
    }

    #[test]
    fn a_notice_without_held_failures_and_a_nameless_failure() {
        let mut s = FoundLaterStage::new(S).unwrap();
        s.notice(notice(1, 7, S));
        let out = run(&mut s, |s, out| {
            s.push(failure(1, 0, S), S, &mut |a| out(a));
            s.push(failure(1, 7, 2 * S), 2 * S, &mut |a| out(a));
            s.release_all(&mut |a| out(a));
        });
        assert_eq!(out, vec![(1, 0, false), (1, 7, false)], "a notice finds only failures before it");
    }

    #[test]
    fn a_flood_decides_the_oldest_early_and_counts_them() {
        let mut s = FoundLaterStage::new(S).unwrap();
        let mut released = 0;
        for i in 0..HELD_MAX as u64 + 5 {
            s.push(failure(1, 7, S + i), S + i, &mut |_| released += 1);
        }
        assert_eq!((released, s.counts().decided_early, s.held()), (5, 5, HELD_MAX));
        s.notice(notice(1, 7, 2 * S));
        let mut found = 0;
        s.release_due(2 * S, &mut |a| found += a.found_later.unwrap() as usize);
        assert_eq!(found, HELD_MAX, "the index survives the early releases");
    }

    #[test]
    fn long_paths_are_held_within_their_byte_budget() {
        let mut s = FoundLaterStage::new(S).unwrap();
        let mut released = 0;
        let long = |i: u64| {
            let mut a = failure(1, 7, S + i);
            a.event.path = vec![b'a'; 4095];
            a.resolved.path = vec![b'/'; 8191];
            a
        };
        let fit = HELD_MAX_PATH_BYTES / (4095 + 8191);
        for i in 0..fit as u64 + 10 {
            s.push(long(i), S + i, &mut |_| released += 1);
        }
        assert_eq!((released, s.counts().decided_early, s.held()), (10, 10, fit));
        s.release_all(&mut |_| released += 1);
        assert_eq!((released, s.held_path_bytes), (fit + 10, 0));
    }

    #[test]
    fn off_without_a_window() {
        assert!(FoundLaterStage::new(0).is_none());
    }
}

//! Rate limit per (user, cgroup, errno): a token bucket each, keyed by what a
//! process cannot choose (a command name is one `prctl` away, and a fork is a
//! new pid), so that one program failing in a loop cannot flood the collector
//! nor buy a fresh budget by renaming or forking, while every other user's and
//! container's records still pass. What is held back is counted and reported
//! by a summary record, never lost silently.

use std::{
    collections::HashMap,
    time::{Instant, SystemTime},
};

use exporter_common::TASK_COMM_LEN;

use super::record::Suppressed;

/// Buckets kept at most; sources past that share one bucket per errno (named
/// `OVERFLOW_COMM`; errnos are few: the map stays bounded).
pub const MAX_KEYS: usize = 4096;
pub const OVERFLOW_COMM: &[u8] = b"(other)";

/// Who opened: what the rate limit keys on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub uid: u32,
    pub cgroup_id: u64,
}

impl Source {
    /// The bucket of sources past `MAX_KEYS`.
    const OVERFLOW: Source = Source { uid: u32::MAX, cgroup_id: u64::MAX };
}

/// (source, errno; 0 for slow opens).
type Key = (Source, i32);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    first: SystemTime,
    last: SystemTime,
    /// The command of the latest record held back, for the summary.
    comm: [u8; TASK_COMM_LEN],
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Tokens per second; 0 disables the limit.
    rate: f64,
    burst: f64,
    buckets: HashMap<Key, Bucket>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate: rate as f64, burst: burst.max(1) as f64, buckets: HashMap::new() }
    }

    /// Whether a record of `source` (whose command is `comm`) with `errno`
    /// (None: slow open) may pass now; if not, it is counted for the next
    /// summary.
    pub fn admit(&mut self, source: Source, comm: &[u8], errno: Option<i32>, now: Instant, wall: SystemTime) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut key: Key = (source, errno.unwrap_or(0));
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_KEYS {
            key.0 = Source::OVERFLOW;
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            refilled: now,
            suppressed: 0,
            first: wall,
            last: wall,
            comm: [0; TASK_COMM_LEN],
        });
        bucket.tokens = (bucket.tokens + now.saturating_duration_since(bucket.refilled).as_secs_f64() * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            if bucket.suppressed == 0 {
                bucket.first = wall;
            }
            bucket.suppressed += 1;
            bucket.last = wall;
            let named = if key.0 == Source::OVERFLOW { OVERFLOW_COMM } else { comm };
            let n = named.len().min(TASK_COMM_LEN);
            bucket.comm = [0; TASK_COMM_LEN];
            bucket.comm[..n].copy_from_slice(&named[..n]);
            false
        }
    }

    /// What was suppressed since the last call, one entry per key; forgets
    /// buckets that are full again and owe no summary.
    pub fn take_summaries(&mut self, now: Instant) -> Vec<Suppressed> {
        let mut out = Vec::new();
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|key, b| {
            if b.suppressed > 0 {
                let end = b.comm.iter().position(|&c| c == 0).unwrap_or(TASK_COMM_LEN);
                out.push(Suppressed {
                    comm: b.comm[..end].to_vec(),
                    source: (key.0 != Source::OVERFLOW).then_some(key.0),
                    errno: (key.1 != 0).then_some(key.1),
                    count: b.suppressed,
                    first: b.first,
                    last: b.last,
                });
                b.suppressed = 0;
            }
            let tokens = b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * rate;
            tokens < burst
        });
        out
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const STORM: Source = Source { uid: 1000, cgroup_id: 7 };
    const QUIET: Source = Source { uid: 1001, cgroup_id: 7 };

    #[test]
    fn limits_each_source_and_errno_on_its_own() {
        let mut l = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        let w = SystemTime::now();
        let passed = (0..100).filter(|_| l.admit(STORM, b"storm", Some(2), t0, w)).count();
        assert_eq!(passed, 5, "the burst passes, the rest is held");
        assert!(l.admit(STORM, b"storm", Some(13), t0, w), "another errno has its own bucket");
        assert!(l.admit(QUIET, b"quiet", Some(2), t0, w), "another user has its own bucket");
        let other_cgroup = Source { cgroup_id: 8, ..STORM };
        assert!(l.admit(other_cgroup, b"storm", Some(2), t0, w), "another cgroup has its own bucket");
        // Renaming (or forking: the pid is not in the key) buys nothing.
        assert!(!l.admit(STORM, b"renamed", Some(2), t0, w));
        // One second later ten more tokens.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.admit(STORM, b"storm", Some(2), t1, w)).count(), 5, "capped at the burst");
        let s = l.take_summaries(t1);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].comm.as_slice(), s[0].source, s[0].errno, s[0].count), (&b"storm"[..], Some(STORM), Some(2), 95 + 1 + 95));
        assert!(l.take_summaries(t1).is_empty(), "counts are reported once");
        // Full buckets are forgotten.
        l.take_summaries(t1 + Duration::from_secs(10));
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn a_process_named_like_its_victim_cannot_spend_the_victims_budget() {
        let mut l = RateLimiter::new(10, 20);
        let t = Instant::now();
        let w = SystemTime::now();
        // The attacker, another user, renames itself to the victim's command
        // and fails as fast as it can (forks would change nothing either).
        let attacker = Source { uid: 2000, cgroup_id: 9 };
        let passed = (0..100_000).filter(|_| l.admit(attacker, b"postgres", Some(2), t, w)).count();
        assert_eq!(passed, 20);
        let victim = Source { uid: 999, cgroup_id: 7 };
        assert_eq!((0..20).filter(|_| l.admit(victim, b"postgres", Some(2), t, w)).count(), 20, "every victim record passes");
        let s = l.take_summaries(t);
        assert_eq!((s.len(), s[0].source, s[0].count), (1, Some(attacker), 100_000 - 20), "the attacker's drops are counted");
    }

    #[test]
    fn zero_rate_disables_and_keys_are_bounded() {
        let mut l = RateLimiter::new(0, 1);
        let t = Instant::now();
        let w = SystemTime::now();
        assert!((0..1000).all(|_| l.admit(STORM, b"x", Some(2), t, w)));
        let mut l = RateLimiter::new(1, 1);
        for i in 0..MAX_KEYS + 10 {
            l.admit(Source { uid: i as u32, cgroup_id: 1 }, b"c", Some(2), t, w);
        }
        assert_eq!(l.keys(), MAX_KEYS + 1, "sources past the bound share one bucket per errno");
        assert!(!l.admit(Source { uid: 999_999, cgroup_id: 1 }, b"y", Some(2), t, w));
        let s = l.take_summaries(t);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].comm.as_slice(), s[0].source, s[0].count), (OVERFLOW_COMM, None, 10));
    }
}

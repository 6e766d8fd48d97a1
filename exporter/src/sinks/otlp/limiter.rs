//! Rate limit per (command, errno): a token bucket each, so that one program
//! failing in a loop cannot flood the collector, while every other program's
//! records still pass. What is held back is counted and reported by a summary
//! record, never lost silently.

use std::{
    collections::HashMap,
    time::{Instant, SystemTime},
};

use exporter_common::TASK_COMM_LEN;

use super::record::Suppressed;

/// Buckets kept at most; commands past that share one bucket per errno under
/// the command name `OVERFLOW_COMM` (errnos are few: the map stays bounded).
pub const MAX_KEYS: usize = 4096;
pub const OVERFLOW_COMM: &[u8] = b"(other)";

/// (comm up to its NUL, errno; 0 for slow opens).
type Key = ([u8; TASK_COMM_LEN], i32);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    first: SystemTime,
    last: SystemTime,
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

    /// Whether a record of `comm` with `errno` (None: slow open) may pass now;
    /// if not, it is counted for the next summary.
    pub fn admit(&mut self, comm: &[u8], errno: Option<i32>, now: Instant, wall: SystemTime) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut key: Key = ([0; TASK_COMM_LEN], errno.unwrap_or(0));
        let n = comm.len().min(TASK_COMM_LEN);
        key.0[..n].copy_from_slice(&comm[..n]);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_KEYS {
            key.0 = [0; TASK_COMM_LEN];
            key.0[..OVERFLOW_COMM.len()].copy_from_slice(OVERFLOW_COMM);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            refilled: now,
            suppressed: 0,
            first: wall,
            last: wall,
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
                let end = key.0.iter().position(|&c| c == 0).unwrap_or(TASK_COMM_LEN);
                out.push(Suppressed {
                    comm: key.0[..end].to_vec(),
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

    #[test]
    fn limits_each_command_and_errno_on_its_own() {
        let mut l = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        let w = SystemTime::now();
        let passed = (0..100).filter(|_| l.admit(b"storm", Some(2), t0, w)).count();
        assert_eq!(passed, 5, "the burst passes, the rest is held");
        assert!(l.admit(b"storm", Some(13), t0, w), "another errno has its own bucket");
        assert!(l.admit(b"quiet", Some(2), t0, w), "another command has its own bucket");
        // One second later ten more tokens.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.admit(b"storm", Some(2), t1, w)).count(), 5, "capped at the burst");
        let s = l.take_summaries(t1);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].comm.as_slice(), s[0].errno, s[0].count), (&b"storm"[..], Some(2), 95 + 95));
        assert!(l.take_summaries(t1).is_empty(), "counts are reported once");
        // Full buckets are forgotten.
        l.take_summaries(t1 + Duration::from_secs(10));
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn zero_rate_disables_and_keys_are_bounded() {
        let mut l = RateLimiter::new(0, 1);
        let t = Instant::now();
        let w = SystemTime::now();
        assert!((0..1000).all(|_| l.admit(b"x", Some(2), t, w)));
        let mut l = RateLimiter::new(1, 1);
        for i in 0..MAX_KEYS + 10 {
            l.admit(format!("c{i}").as_bytes(), Some(2), t, w);
        }
        assert_eq!(l.keys(), MAX_KEYS + 1, "commands past the bound share one bucket per errno");
        assert!(!l.admit(b"y", Some(2), t, w));
        let s = l.take_summaries(t);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].comm.as_slice(), s[0].count), (OVERFLOW_COMM, 10));
    }
}

//! Fairness between sources: a noisy source must not fill the ring buffer and
//! starve the others' anomalies (GHSA-wv52-frfv-mfh4). While less than half
//! the ring buffer is used everything streams and nothing else is looked at.
//! Past half, each source has a generic cell rate limit (GCRA), charged in
//! bytes: an event of N bytes costs N / `NOMINAL_EVENT_BYTES` of the
//! configured rate. A source is a process, and also its cgroup and (but for
//! root) its uid, with larger shares: an event streams only when each of them
//! has credit, so a process that forks, renames itself or moves into new
//! cgroups cannot reset its budget, and one user cannot take another's half.

use aya_ebpf::maps::LruHashMap;
use exporter_common::{Config, CGROUP_SOURCE_SHARE, NOMINAL_EVENT_BYTES, UID_SOURCE_SHARE};

use crate::maps::{frozen, RINGBUF_BYTES, SOURCES, SOURCE_CGROUPS, SOURCE_UIDS};

/// The task whose event is being decided.
#[derive(Clone, Copy)]
pub struct Source {
    pub pid: u32,
    pub uid: u32,
    pub cgroup: u64,
}

/// Whether fairness applies now: on, and half the ring buffer or more in use.
#[inline(always)]
fn active(config: &Config, waiting: u64) -> bool {
    config.source_interval_ns != 0 && waiting >= frozen(&RINGBUF_BYTES) as u64 / 2
}

/// Whether a bucket (its theoretical arrival time, `None`: never seen) has credit.
#[inline(always)]
fn has_credit(tat: Option<&u64>, now: u64, burst_ns: u64) -> bool {
    match tat {
        Some(&tat) => tat <= now || tat - now <= burst_ns,
        None => true,
    }
}

/// Whether `source` may stream an event now (checked before the event's work).
#[inline(always)]
pub fn may_stream(config: &Config, source: Source, now: u64, waiting: u64) -> bool {
    if !active(config, waiting) {
        return true;
    }
    let burst = config.source_burst_ns;
    // SAFETY: plain reads of map values; a race with another CPU only blurs a rate.
    unsafe {
        has_credit(SOURCES.get(&source.pid), now, burst)
            && has_credit(SOURCE_CGROUPS.get(&source.cgroup), now, burst)
            && (source.uid == 0 || has_credit(SOURCE_UIDS.get(&source.uid), now, burst))
    }
}

/// Charges `cost_ns` of credit to a bucket.
#[inline(always)]
fn charge_bucket<K>(map: &LruHashMap<K, u64>, key: &K, now: u64, cost_ns: u64) {
    match map.get_ptr_mut(key) {
        Some(tat) => {
            // SAFETY: a valid map value; see `may_stream`.
            let tat = unsafe { &mut *tat };
            *tat = if *tat > now { *tat } else { now } + cost_ns;
        }
        None => {
            let _ = map.insert(key, &(now + cost_ns), 0);
        }
    }
}

/// Charges a streamed event of `bytes` to its sources (only while fairness applies).
#[inline(always)]
pub fn charge(config: &Config, source: Source, now: u64, waiting: u64, bytes: u64) {
    if !active(config, waiting) {
        return;
    }
    let cost = bytes * config.source_interval_ns / NOMINAL_EVENT_BYTES;
    charge_bucket(&SOURCES, &source.pid, now, cost);
    charge_bucket(&SOURCE_CGROUPS, &source.cgroup, now, cost / CGROUP_SOURCE_SHARE);
    if source.uid != 0 {
        charge_bucket(&SOURCE_UIDS, &source.uid, now, cost / UID_SOURCE_SHARE);
    }
}

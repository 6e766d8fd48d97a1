//! The label-set budget of one metric: at most N label sets; past it, a new
//! label set's increments go to its `other` label set; idle ones dropped after
//! a TTL.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    time::Duration,
};

use lru::LruCache;

/// The label-set budget of one metric: at most `max` label sets are kept by
/// name; once that many exist, a new label set is folded: its increments go to
/// its `other` label set from then on. A folded label set moves no history:
/// the named series keep their counts (an alert's `rate()` sees no burst in
/// `other`), and `other` gains only what happens after the fold. Label sets
/// idle longer than `ttl` are dropped, which makes room for new names.
///
/// `fold` maps a key to its `other` key (e.g. keeps `errno`, sets `comm` and
/// `path_prefix` to `other`). The `other` label sets come on top of the `max`
/// named ones; their number is bounded by the kept labels (the errnos).
#[derive(Debug)]
pub struct Budgeted<K: Hash + Eq, V> {
    series: LruCache<K, Entry<V>>,
    others: HashMap<K, Entry<V>>,
    /// Label sets folded, remembered (up to `4 * max`) so that each counts
    /// once in `folded`.
    folded_keys: HashSet<K>,
    fold: fn(&K) -> K,
    max: usize,
    ttl: Duration,
    /// Label sets folded into `other` so far.
    pub folded: u64,
    /// Label sets dropped after the TTL so far.
    pub expired: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Seconds on the caller's clock (`now` arguments).
    last_seen: u64,
}

impl<K: Hash + Eq + Clone, V: Default> Budgeted<K, V> {
    pub fn new(max: usize, ttl: Duration, fold: fn(&K) -> K) -> Self {
        Budgeted {
            series: LruCache::unbounded(),
            others: HashMap::new(),
            folded_keys: HashSet::new(),
            fold,
            max: max.max(1),
            ttl,
            folded: 0,
            expired: 0,
        }
    }

    /// The value of `key`'s label set, created if new and the budget allows,
    /// else its `other` label set's. `now` is a monotonic time in seconds.
    pub fn get_mut(&mut self, key: &K, now: u64) -> &mut V {
        // Two lookups instead of one so that the borrow of a hit does not outlive
        // the miss path (a known borrow checker limit).
        if self.series.contains(key) {
            let e = self.series.get_mut(key).expect("present");
            e.last_seen = now;
            return &mut e.value;
        }
        if self.others.contains_key(key) {
            let e = self.others.get_mut(key).expect("present");
            e.last_seen = now;
            return &mut e.value;
        }
        if self.series.len() < self.max {
            self.folded_keys.remove(key);
            self.series.push(key.clone(), Entry { value: V::default(), last_seen: now });
            return &mut self.series.get_mut(key).expect("just pushed").value;
        }
        if !self.folded_keys.contains(key) {
            if self.folded_keys.len() >= 4 * self.max {
                self.folded_keys.clear();
            }
            self.folded_keys.insert(key.clone());
            self.folded += 1;
        }
        let other = self.others.entry((self.fold)(key)).or_insert_with(|| Entry { value: V::default(), last_seen: now });
        other.last_seen = now;
        &mut other.value
    }

    /// Drops label sets not seen for longer than the TTL.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl.as_secs();
        while let Some((_, e)) = self.series.peek_lru() {
            if now.saturating_sub(e.last_seen) <= ttl {
                break;
            }
            self.series.pop_lru();
            self.expired += 1;
        }
        let before = self.others.len();
        self.others.retain(|_, e| now.saturating_sub(e.last_seen) <= ttl);
        self.expired += (before - self.others.len()) as u64;
    }

    /// Number of label sets (series) now.
    pub fn len(&self) -> usize {
        self.series.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every label set and its value, `other` ones last.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.series.iter().map(|(k, e)| (k, &e.value)).chain(self.others.iter().map(|(k, e)| (k, &e.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::labels::OTHER;

    fn fold(k: &(u16, String)) -> (u16, String) {
        (k.0, OTHER.to_string())
    }

    #[test]
    fn past_the_budget_new_label_sets_count_in_other_and_history_stays() {
        let mut b: Budgeted<(u16, String), u64> = Budgeted::new(3, Duration::from_secs(60), fold);
        *b.get_mut(&(2, "a".to_string()), 0) += 5;
        *b.get_mut(&(2, "b".to_string()), 0) += 1;
        *b.get_mut(&(2, "c".to_string()), 2) += 1;
        assert_eq!((b.len(), b.folded), (3, 0), "three label sets fit a budget of three");
        // A fourth and fifth: folded, from their first increment on; the named
        // series keep their counts (no burst in `other`).
        *b.get_mut(&(2, "d".to_string()), 3) += 1;
        *b.get_mut(&(2, "e".to_string()), 3) += 2;
        *b.get_mut(&(2, "d".to_string()), 3) += 1;
        let m: HashMap<_, _> = b.iter().map(|(k, v)| (k.1.clone(), *v)).collect();
        assert_eq!(m, HashMap::from([("a".into(), 5), ("b".into(), 1), ("c".into(), 1), ("other".into(), 4)]));
        assert_eq!(b.folded, 2, "d counted once");
        for i in 0..1000 {
            *b.get_mut(&(2, format!("flood{i}")), 3) += 1;
        }
        assert_eq!(b.len(), 4, "three named and one other");
        let total: u64 = b.iter().map(|(_, v)| *v).sum();
        assert_eq!(total, 5 + 1 + 1 + 4 + 1000, "folding loses no count");
        assert_eq!(b.folded, 1002);
        // Room again once idle names expire: a new name gets its own series.
        b.expire(100);
        *b.get_mut(&(2, "f".to_string()), 100) += 1;
        assert_eq!(b.iter().map(|(k, v)| (k.1.clone(), *v)).collect::<Vec<_>>(), [("f".to_string(), 1)]);
    }

    #[test]
    fn idle_label_sets_expire() {
        let mut b: Budgeted<(u16, String), u64> = Budgeted::new(10, Duration::from_secs(60), fold);
        *b.get_mut(&(2, "old".to_string()), 0) += 1;
        *b.get_mut(&(2, "new".to_string()), 50) += 1;
        b.expire(100);
        assert_eq!(b.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(b.expired, 1);
        b.expire(111);
        assert!(b.is_empty());
        assert_eq!(b.expired, 2);
    }
}

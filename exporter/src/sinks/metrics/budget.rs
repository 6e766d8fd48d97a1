//! The label-set budget of one metric: at most N label sets, the least
//! recently used folded into `other`, idle ones dropped after a TTL.

use std::{collections::HashMap, hash::Hash, time::Duration};

use lru::LruCache;

/// A value a label set holds, which can be folded into another.
pub trait Fold: Default {
    fn fold_into(self, target: &mut Self);
}

impl Fold for u64 {
    fn fold_into(self, target: &mut u64) {
        *target += self;
    }
}

/// The label-set budget of one metric: at most `max` named label sets are kept,
/// the least recently used one folded into its `other` label set when a new one
/// arrives; label sets idle longer than `ttl` are dropped.
///
/// `fold` maps a key to its `other` key (e.g. keeps `errno`, sets `comm` and
/// `path_prefix` to `other`). `other` label sets count towards the budget as
/// well, so the series count stays at or below `max` as long as the number of
/// distinct `other` keys (bounded by the errno count) is below it.
#[derive(Debug)]
pub struct Budgeted<K: Hash + Eq, V> {
    series: LruCache<K, Entry<V>>,
    others: HashMap<K, Entry<V>>,
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

impl<K: Hash + Eq + Clone, V: Fold> Budgeted<K, V> {
    pub fn new(max: usize, ttl: Duration, fold: fn(&K) -> K) -> Self {
        Budgeted {
            series: LruCache::unbounded(),
            others: HashMap::new(),
            fold,
            max: max.max(1),
            ttl,
            folded: 0,
            expired: 0,
        }
    }

    /// The value of `key`'s label set, created (and the budget enforced) if new.
    /// `now` is a monotonic time in seconds.
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
        while self.series.len() + self.others.len() >= self.max {
            let Some((old_key, old)) = self.series.pop_lru() else { break };
            let other = self.others.entry((self.fold)(&old_key)).or_insert_with(|| Entry { value: V::default(), last_seen: now });
            old.value.fold_into(&mut other.value);
            other.last_seen = now;
            self.folded += 1;
        }
        self.series.push(key.clone(), Entry { value: V::default(), last_seen: now });
        &mut self.series.get_mut(key).expect("just pushed").value
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
    fn folds_least_recently_used_into_other() {
        let mut b: Budgeted<(u16, String), u64> = Budgeted::new(3, Duration::from_secs(60), fold);
        *b.get_mut(&(2, "a".to_string()), 0) += 5;
        *b.get_mut(&(2, "b".to_string()), 0) += 1;
        *b.get_mut(&(2, "a".to_string()), 1) += 1; // a is now more recent than b
        *b.get_mut(&(2, "c".to_string()), 2) += 1;
        assert_eq!((b.len(), b.folded), (3, 0), "three label sets fit a budget of three");
        // A fourth: the least recently used (b) is folded into `other`, and since
        // `other` itself takes a place, the next least recently used (a) too.
        *b.get_mut(&(2, "d".to_string()), 3) += 1;
        assert_eq!(b.len(), 3);
        assert_eq!(b.folded, 2);
        let m: HashMap<_, _> = b.iter().map(|(k, v)| (k.1.clone(), *v)).collect();
        assert_eq!(m, HashMap::from([("c".into(), 1), ("d".into(), 1), ("other".into(), 7)]));
        for i in 0..1000 {
            *b.get_mut(&(2, format!("flood{i}")), 3) += 1;
        }
        assert!(b.len() <= 3, "{}", b.len());
        let total: u64 = b.iter().map(|(_, v)| *v).sum();
        assert_eq!(total, 6 + 1 + 1 + 1 + 1000, "folding loses no count");
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

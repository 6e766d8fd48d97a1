//! The pipeline's label stage: each anomaly's `comm` and `path_prefix` label
//! values, made once per distinct value and shared between anomalies.
//!
//! - [`value`]: any raw bytes made into a label value that can never break the
//!   exposition.
//! - [`path_prefix`](mod@path_prefix): the first N components of a path, volatile
//!   segments templated.
//! - [`interner`]: one shared string per distinct value.

pub mod interner;
pub mod path_prefix;
pub mod value;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

pub use interner::{CommInterner, Interner};
pub use path_prefix::{path_prefix, path_prefix_into, raw_prefix};
pub use value::{label_value, push_label_value, MAX_LABEL_BYTES, OTHER};

/// Entries of the `path_prefix` cache before it is emptied.
const PREFIX_CACHE_MAX: usize = 8192;

/// Longest raw prefix cached, in bytes: the label's own bound. A longer one
/// (a path of thousands of slashes or long names, which any user can open) is
/// templated on every event instead of cached, so the cache's keys hold at
/// most `PREFIX_CACHE_MAX * PREFIX_CACHE_KEY_MAX` bytes (2 MiB) whatever the
/// paths. Real raw prefixes at the default depth are far shorter.
pub const PREFIX_CACHE_KEY_MAX: usize = MAX_LABEL_BYTES;

/// Interned strings at which unused ones are forgotten, at the least.
pub const COLLECT_AT_LEAST: usize = 4 * PREFIX_CACHE_MAX;

/// Makes the label values of anomalies.
pub struct Labeler {
    comms: CommInterner,
    prefixes: Interner,
    prefix_buf: String,
    /// Raw prefix (the path up to its `depth`-th component) -> its label:
    /// templating a path costs hundreds of ns, a lookup tens. Emptied when full,
    /// since volatile raw components (pids under /proc) keep making new keys.
    /// Keys are at most `PREFIX_CACHE_KEY_MAX` bytes.
    prefix_cache: HashMap<Box<[u8]>, Arc<str>>,
    /// The depth the cached labels were made at.
    prefix_cache_depth: usize,
    /// Interned strings at which unused ones are forgotten (see `collect_if_due`).
    collect_at: usize,
    /// The `path_prefix` depth, shared so that a reload can change it.
    depth: Arc<AtomicUsize>,
}

impl Labeler {
    pub fn new(depth: Arc<AtomicUsize>) -> Labeler {
        Labeler {
            comms: CommInterner::default(),
            prefixes: Interner::default(),
            prefix_buf: String::new(),
            prefix_cache: HashMap::new(),
            prefix_cache_depth: 0,
            collect_at: COLLECT_AT_LEAST,
            depth,
        }
    }

    /// The interned `comm` label of the kernel's 16 comm bytes.
    pub fn comm(&mut self, raw: &[u8; exporter_common::TASK_COMM_LEN]) -> Arc<str> {
        self.comms.intern(raw)
    }

    /// The interned `path_prefix` label of a resolved path.
    pub fn path_prefix(&mut self, path: &[u8]) -> Arc<str> {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth != self.prefix_cache_depth {
            self.prefix_cache.clear();
            self.prefix_cache_depth = depth;
        }
        let raw = raw_prefix(path, depth);
        let cached = raw.len() <= PREFIX_CACHE_KEY_MAX;
        if cached {
            if let Some(label) = self.prefix_cache.get(raw) {
                return label.clone();
            }
        }
        path_prefix_into(&mut self.prefix_buf, raw, depth);
        let label = self.prefixes.intern(&self.prefix_buf);
        if cached {
            if self.prefix_cache.len() >= PREFIX_CACHE_MAX {
                self.prefix_cache.clear();
            }
            self.prefix_cache.insert(raw.into(), label.clone());
        }
        label
    }

    /// Distinct `path_prefix` values interned now.
    pub fn prefixes_interned(&self) -> usize {
        self.prefixes.len()
    }

    /// Interned strings now.
    pub fn interned(&self) -> usize {
        self.prefixes.len() + self.comms.len()
    }

    /// Forgets unused strings once they pile up: a flood of new paths interns
    /// a new prefix every few events, and the label sets keep only a bounded
    /// number of them (measured: +20 MiB in 10 s without this).
    pub fn collect_if_due(&mut self) {
        if self.interned() > self.collect_at {
            self.collect_garbage();
        }
    }

    /// Forgets interned strings no label set holds any more.
    pub fn collect_garbage(&mut self) {
        // The cache holds labels too: empty it so unused ones can go.
        self.prefix_cache.clear();
        self.prefixes.collect();
        self.comms.collect();
        // Twice what is still in use: collecting stays amortized O(1) per event.
        self.collect_at = COLLECT_AT_LEAST.max(2 * self.interned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes held by the cache's keys.
    fn key_bytes(l: &Labeler) -> usize {
        l.prefix_cache.keys().map(|k| k.len()).sum()
    }

    #[test]
    fn long_raw_prefixes_are_labeled_alike_but_never_cached() {
        let mut l = Labeler::new(Arc::new(AtomicUsize::new(3)));
        // 3000 slashes then three names, a new second one each time: raw
        // prefixes of over 3 KB, as a hostile user can open.
        for n in 0..(2 * PREFIX_CACHE_MAX) {
            let path = format!("/nonexistent{}/u{n:x}{}/{}/file", "/".repeat(3000), "x".repeat(60), "y".repeat(200));
            let label = l.path_prefix(path.as_bytes());
            assert_eq!(&*label, path_prefix(path.as_bytes(), 3), "the same label as templating it");
            assert!(label.len() <= MAX_LABEL_BYTES);
        }
        assert_eq!(l.prefix_cache.len(), 0, "no raw prefix over PREFIX_CACHE_KEY_MAX is a key");
        // Short raw prefixes are cached, within the stated bound.
        for n in 0..(2 * PREFIX_CACHE_MAX) {
            let path = format!("/srv/{}{n:x}/y/file", "z".repeat(PREFIX_CACHE_KEY_MAX - 20));
            assert!(raw_prefix(path.as_bytes(), 3).len() <= PREFIX_CACHE_KEY_MAX);
            l.path_prefix(path.as_bytes());
            assert!(l.prefix_cache.len() <= PREFIX_CACHE_MAX);
            assert!(key_bytes(&l) <= PREFIX_CACHE_MAX * PREFIX_CACHE_KEY_MAX);
        }
        assert!(!l.prefix_cache.is_empty());
        let path = b"/srv/a/b/c";
        let first = l.path_prefix(path);
        assert!(Arc::ptr_eq(&first, &l.path_prefix(path)), "a cached label is shared");
    }
}

//! One shared string per distinct label value, so the event loop does not
//! allocate per event once values are known.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::value::label_value;

/// One shared copy of each distinct string. `collect` drops the strings no one
/// else holds any more (label sets that were folded or expired).
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    pub fn collect(&mut self) {
        self.strings.retain(|a| Arc::strong_count(a) > 1);
    }
}

/// Interns `comm` values by their raw 16 kernel bytes, so the common case is a
/// hash lookup of a fixed array.
#[derive(Debug, Default)]
pub struct CommInterner {
    comms: HashMap<[u8; exporter_common::TASK_COMM_LEN], Arc<str>>,
}

impl CommInterner {
    pub fn intern(&mut self, raw: &[u8; exporter_common::TASK_COMM_LEN]) -> Arc<str> {
        if let Some(a) = self.comms.get(raw) {
            return a.clone();
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let a: Arc<str> = Arc::from(label_value(&raw[..end]));
        self.comms.insert(*raw, a.clone());
        a
    }

    pub fn collect(&mut self) {
        self.comms.retain(|_, a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.comms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.comms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interners_share_and_collect() {
        let mut i = Interner::default();
        let a = i.intern("/tmp");
        let b = i.intern("/tmp");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        i.collect();
        assert!(i.is_empty());
        let mut c = CommInterner::default();
        let comm = *b"work\nload\0\0\0\0\0\0\0";
        assert_eq!(&*c.intern(&comm), "work%0Aload");
    }
}

//! The userspace filters: what the kernel cannot decide (`trace --errno`, on
//! the errno set, and `--path-prefix`, on the resolved path). They run before
//! redaction, on the real path.

use std::{collections::BTreeSet, os::unix::ffi::OsStrExt, path::PathBuf};

use super::{event::OpenEvent, resolve::normalize};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Errnos shown; empty: all (and slow successful opens).
    errnos: BTreeSet<i32>,
    /// Directory prefixes as bytes, normalized, without a trailing slash.
    prefixes: Vec<Vec<u8>>,
}

impl Filter {
    /// Anomalies failing with one of `errnos` (none given: any anomaly) on a
    /// path under one of `dirs` (none given: anywhere).
    pub fn new(errnos: &[i32], dirs: &[PathBuf]) -> Filter {
        let prefixes = dirs
            .iter()
            .map(|p| {
                let mut b = normalize(p.as_os_str().as_bytes());
                while b.len() > 1 && b.ends_with(b"/") {
                    b.pop();
                }
                b
            })
            .collect();
        Filter { errnos: errnos.iter().copied().collect(), prefixes }
    }

    /// Whether this filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.errnos.is_empty() && self.prefixes.is_empty()
    }

    /// Whether the anomaly of `event`, at the resolved `path`, is kept.
    pub fn keep(&self, event: &OpenEvent, path: &[u8]) -> bool {
        if !self.errnos.is_empty() && !event.errno().is_some_and(|e| self.errnos.contains(&e)) {
            return false;
        }
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| is_under(path, p))
    }
}

/// `path` is `dir` or inside it (by whole components: /etc does not hold /etcd).
fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir == b"/" || (path.starts_with(dir) && matches!(path.get(dir.len()), None | Some(b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes_match_whole_components() {
        assert!(is_under(b"/etc/passwd", b"/etc"));
        assert!(is_under(b"/etc", b"/etc"));
        assert!(!is_under(b"/etcd/x", b"/etc"));
        assert!(is_under(b"/anything", b"/"));
        assert!(!is_under(b"relative", b"/etc"));
    }

    #[test]
    fn errnos_and_prefixes_both_have_to_match() {
        let failed = |errno: i64| OpenEvent { ret: -errno, flags: exporter_common::EVENT_FAILED, ..Default::default() };
        let slow = OpenEvent { ret: 3, flags: exporter_common::EVENT_SLOW, ..Default::default() };
        let f = Filter::new(&[libc::ENOTDIR], &["/srv/a/".into()]);
        assert!(f.keep(&failed(libc::ENOTDIR as i64), b"/srv/a/file/x"));
        assert!(!f.keep(&failed(libc::ENOENT as i64), b"/srv/a/missing"), "another errno");
        assert!(!f.keep(&failed(libc::ENOTDIR as i64), b"/srv/ab/file/x"), "another directory");
        assert!(!f.keep(&slow, b"/srv/a/fifo"), "--errno hides slow successful opens");
        let none = Filter::new(&[], &[]);
        assert!(none.is_empty() && none.keep(&slow, b"relative"));
    }
}

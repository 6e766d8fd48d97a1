//! Scratch directories, removed on drop.

use std::{
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("badfd-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A fresh directory whose name has no digits (letters from the pid, a
    /// counter and the clock), so that path-prefix templating keeps it apart
    /// from every other test's directory.
    pub fn lettered(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut n = (std::process::id() as u64) << 32 ^ nanos ^ NEXT.fetch_add(1, Ordering::Relaxed) << 56;
        let mut letters = String::new();
        for _ in 0..10 {
            letters.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
        }
        let dir = std::env::temp_dir().join(format!("badfd-{tag}-{letters}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

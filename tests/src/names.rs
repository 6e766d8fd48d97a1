//! Scratch names and places the tests and benchmarks share.

use std::path::PathBuf;

use badfd::pipeline::containers::cgroup2_mount;

/// `n` in base-26 letters: unique names that label templating keeps (it
/// turns digits and hex into `<n>`).
pub fn letters(mut n: u64) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

/// A cgroup v2 directory of the test's own (`badfd-test-PID-NAME` under the
/// v2 mount), removed on drop.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let root = cgroup2_mount().expect("a cgroup v2 hierarchy is mounted");
        let dir = root.join(format!("badfd-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

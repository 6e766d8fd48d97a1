//! The binaries the tests and benchmarks run, found one way: beside the
//! running test or bench binary (or where `BADFD_WORKLOAD` says, in the kernel
//! matrix's VMs).

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The workload binary, built beside the test binaries; `BADFD_WORKLOAD` names
/// it where the build tree is not there (the kernel matrix's VMs).
pub fn workload_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BADFD_WORKLOAD") {
        return PathBuf::from(p);
    }
    // Test binaries live in target/<profile>/deps; the workload in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") { dir.parent().unwrap() } else { dir };
    dir.join("workload")
}

/// The `dropcaps` helper (tests/src/bin/dropcaps.rs), beside the workload.
pub fn dropcaps_path() -> PathBuf {
    workload_path().with_file_name("dropcaps")
}

/// The `badfd` binary (target/<profile>/badfd), built before the tests run
/// (`cargo build --workspace --all-targets`, as scripts/test.sh does). `cargo
/// test` does not rebuild a binary for another package's tests, so a binary
/// older than badfd's sources fails loudly here, once per test process (where
/// the sources are not there, as in the kernel matrix's VMs, it is not checked).
pub fn badfd_path() -> PathBuf {
    let path = workload_path().with_file_name("badfd");
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` before the tests", path.display());
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| assert_newer_than_sources(&path));
    path
}

/// Panics if a source file of the `badfd` binary is newer than `bin`.
fn assert_newer_than_sources(bin: &Path) {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; build it first (`cargo build`, as scripts/test.sh does)", bin.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = ["exporter/src", "exporter-ebpf/src", "exporter-common/src"].iter().map(|d| root.join(d)).collect();
    if !dirs.iter().all(|d| d.is_dir()) {
        return;
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            assert!(
                meta.modified().unwrap() <= built,
                "{} is older than {}: run `cargo build` (scripts/test.sh does) before these tests",
                bin.display(),
                entry.path().display()
            );
        }
    }
}

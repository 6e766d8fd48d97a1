//! Turning the path an open was given into an absolute path, against the
//! **traced process's** dirfd or cwd (never the exporter's), and saying how.

use std::path::PathBuf;

use exporter_common::AT_FDCWD;

use super::event::{KernelDir, OpenEvent};

/// How a path was made absolute; the `method` label of
/// `badfd_path_resolutions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The path was absolute already.
    Absolute,
    /// The kernel sent the directory the path is relative to.
    Kernel,
    /// Read from /proc/<pid>/cwd or /proc/<pid>/fd/<dirfd> after the fact.
    Proc,
    /// Could not be resolved (the process and its directory are gone); the path
    /// is kept as it was given.
    Unresolved,
}

impl Resolution {
    pub const ALL: [Resolution; 4] =
        [Resolution::Absolute, Resolution::Kernel, Resolution::Proc, Resolution::Unresolved];

    pub fn name(self) -> &'static str {
        match self {
            Resolution::Absolute => "absolute",
            Resolution::Kernel => "kernel",
            Resolution::Proc => "proc",
            Resolution::Unresolved => "unresolved",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPath {
    /// Absolute unless `how` is `Unresolved`; raw bytes, not necessarily UTF-8.
    pub path: Vec<u8>,
    pub how: Resolution,
}

/// Resolves event paths and counts how each was resolved.
#[derive(Debug)]
pub struct Resolver {
    proc_root: PathBuf,
    /// Indexed by `Resolution as usize`.
    counts: [u64; Resolution::ALL.len()],
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new()
    }
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver { proc_root: PathBuf::from("/proc"), counts: [0; Resolution::ALL.len()] }
    }

    /// How many paths this resolver resolved this way, since it was made.
    pub fn count(&self, how: Resolution) -> u64 {
        self.counts[how as usize]
    }

    /// Makes the event's path absolute (see `resolve_uncounted`) and counts how.
    pub fn resolve(&mut self, event: &OpenEvent) -> ResolvedPath {
        let resolved = self.resolve_uncounted(event);
        self.counts[resolved.how as usize] += 1;
        resolved
    }

    /// Makes the event's path absolute: as given if absolute; else against the
    /// directory the kernel found at the syscall's exit; else (no BTF offsets, a
    /// directory too deep for the kernel) against /proc/<pid>/cwd or
    /// /proc/<pid>/fd/<dirfd> if the process still lives; else unresolved.
    fn resolve_uncounted(&self, event: &OpenEvent) -> ResolvedPath {
        if event.path.is_empty() {
            // open("") (ENOENT) or a path the kernel could not read: there is
            // nothing to join to a directory, and the directory is not the file.
            return ResolvedPath { path: Vec::new(), how: Resolution::Unresolved };
        }
        if event.path.first() == Some(&b'/') {
            return ResolvedPath { path: normalize(&event.path), how: Resolution::Absolute };
        }
        if let KernelDir::Resolved(dir) = &event.kernel_dir {
            if dir.first() == Some(&b'/') {
                return ResolvedPath { path: join(dir, &event.path), how: Resolution::Kernel };
            }
        }
        if matches!(event.kernel_dir, KernelDir::BadFd | KernelDir::Unreachable) {
            // No such descriptor at the time of the open (whatever /proc shows
            // now under that number is another file), or a directory with no
            // absolute path (/proc would show a path that leads elsewhere).
            return ResolvedPath { path: event.path.clone(), how: Resolution::Unresolved };
        }
        let link = if event.dirfd == AT_FDCWD {
            self.proc_root.join(event.pid.to_string()).join("cwd")
        } else {
            self.proc_root.join(event.pid.to_string()).join("fd").join(event.dirfd.to_string())
        };
        match std::fs::read_link(&link) {
            Ok(dir) => {
                use std::os::unix::ffi::OsStrExt;
                ResolvedPath { path: join(dir.as_os_str().as_bytes(), &event.path), how: Resolution::Proc }
            }
            Err(_) => ResolvedPath { path: event.path.clone(), how: Resolution::Unresolved },
        }
    }
}

/// `dir` + `/` + `relative`, normalized.
pub fn join(dir: &[u8], relative: &[u8]) -> Vec<u8> {
    let mut v = dir.to_vec();
    v.push(b'/');
    v.extend_from_slice(relative);
    normalize(&v)
}

/// Removes empty and `.` components and applies `..` lexically (the kernel's
/// view after symlinks is not known here; lexical is what users read).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let absolute = path.first() == Some(&b'/');
    // Most paths are normal already: copy them without splitting (the event
    // loop's hot path).
    if absolute && path[1..].split(|&b| b == b'/').all(|p| !matches!(p, b"" | b"." | b"..")) {
        return path.to_vec();
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !absolute {
                    parts.push(part);
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if absolute {
        out.push(b'/');
    }
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(b"/a//b/./c/../d"), b"/a/b/d");
        assert_eq!(normalize(b"/../x"), b"/x");
        assert_eq!(normalize(b"a/../../b"), b"../b");
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b"/a/b/"), b"/a/b");
        assert_eq!(normalize(b"/a/.b/c..d"), b"/a/.b/c..d");
        assert_eq!(normalize(b"/bad\xff/./n"), b"/bad\xff/n");
        assert_eq!(join(b"/home/u", b"sub/../f"), b"/home/u/f");
    }

    #[test]
    fn resolves_against_the_traced_process_not_ours() {
        let dir = std::env::temp_dir().join(format!("badfd-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sleep").arg("5").current_dir(&dir).spawn().unwrap();
        let mut event = OpenEvent {
            ret: -2,
            pid: child.id(),
            tid: child.id(),
            dirfd: AT_FDCWD,
            path: b"x/../missing".to_vec(),
            ..OpenEvent::default()
        };
        let mut r = Resolver::new();
        let got = r.resolve(&event);
        use std::os::unix::ffi::OsStrExt;
        let want = join(dir.canonicalize().unwrap().as_os_str().as_bytes(), b"missing");
        assert_eq!(got, ResolvedPath { path: want, how: Resolution::Proc });
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(r.resolve(&event).how, Resolution::Unresolved, "gone process");
        event.path = b"/abs/./p".to_vec();
        assert_eq!(r.resolve(&event), ResolvedPath { path: b"/abs/p".to_vec(), how: Resolution::Absolute });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_or_unreadable_path_is_never_a_directory() {
        let mut r = Resolver::new();
        // Our own pid: /proc has a cwd for it, which must not be used.
        let mut event = OpenEvent { ret: -2, pid: std::process::id(), path: Vec::new(), ..OpenEvent::default() };
        assert_eq!(r.resolve(&event), ResolvedPath { path: Vec::new(), how: Resolution::Unresolved });
        event.kernel_dir = KernelDir::Resolved(b"/home".to_vec());
        event.flags = exporter_common::EVENT_PATH_UNREADABLE;
        assert_eq!(r.resolve(&event), ResolvedPath { path: Vec::new(), how: Resolution::Unresolved });
        assert_eq!(crate::pipeline::labels::path_prefix::path_prefix(b"", 3), "(empty)");
    }

    #[test]
    fn prefers_the_kernels_directory_and_falls_back() {
        let mut r = Resolver::new();
        // A pid that cannot exist: /proc has nothing for it.
        let mut event = OpenEvent {
            ret: -2,
            pid: u32::MAX - 1,
            path: b"a/../b".to_vec(),
            kernel_dir: KernelDir::Resolved(b"/srv/x\xff/y".to_vec()),
            ..OpenEvent::default()
        };
        assert_eq!(r.resolve(&event), ResolvedPath { path: b"/srv/x\xff/y/b".to_vec(), how: Resolution::Kernel });
        event.path = b"../../../../z".to_vec();
        assert_eq!(r.resolve(&event), ResolvedPath { path: b"/z".to_vec(), how: Resolution::Kernel });
        event.kernel_dir = KernelDir::Resolved(b"/".to_vec());
        event.path = b"f".to_vec();
        assert_eq!(r.resolve(&event), ResolvedPath { path: b"/f".to_vec(), how: Resolution::Kernel });
        for kernel_dir in
            [KernelDir::Truncated, KernelDir::ReadFailed, KernelDir::NotAttempted, KernelDir::BadFd, KernelDir::Unreachable]
        {
            event.kernel_dir = kernel_dir;
            assert_eq!(r.resolve(&event), ResolvedPath { path: b"f".to_vec(), how: Resolution::Unresolved });
        }
        // Truncated in the kernel, alive in /proc: resolved from /proc.
        event.pid = std::process::id();
        event.kernel_dir = KernelDir::Truncated;
        let cwd = std::env::current_dir().unwrap();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(r.resolve(&event), ResolvedPath { path: join(cwd.as_os_str().as_bytes(), b"f"), how: Resolution::Proc });
        // A bad dirfd is never looked up in /proc (the number may be reused),
        // nor an unreachable directory.
        for kernel_dir in [KernelDir::BadFd, KernelDir::Unreachable] {
            event.kernel_dir = kernel_dir;
            event.dirfd = 0;
            assert_eq!(r.resolve(&event).how, Resolution::Unresolved);
        }
        assert_eq!(
            Resolution::ALL.map(|how| r.count(how)),
            [0, 3, 1, 7],
            "absolute, kernel, proc, unresolved"
        );
        assert_eq!(Resolver::default().proc_root, PathBuf::from("/proc"));
    }
}

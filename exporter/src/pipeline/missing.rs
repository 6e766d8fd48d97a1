//! Why an ENOENT or ENOTDIR failure failed: the first component of its path
//! that does not exist (or is not a directory), so that "/etc/myapp/ does not
//! exist" is said rather than only the file. Looked up by badfd when the
//! failure is decided (up to the found-later window after the open), in the
//! opener's root (`/proc/PID/root`, or badfd's own when the process is gone and
//! shared badfd's mount namespace): the file system may have changed since,
//! and every view that shows it says it was checked afterwards.

use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::{resolve::Resolution, Anomaly};

/// The first component of a failed path that was missing when badfd looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingComponent {
    /// The path up to and including that component (absolute, raw bytes).
    pub path: Vec<u8>,
    /// It exists but is not a directory (ENOTDIR), rather than missing.
    pub not_a_directory: bool,
}

impl MissingComponent {
    /// "/etc/myapp/ does not exist", "/etc/passwd is not a directory".
    pub fn describe(&self) -> String {
        let path = String::from_utf8_lossy(&self.path);
        match self.not_a_directory {
            true => format!("{path} is not a directory"),
            false => format!("{path} does not exist"),
        }
    }
}

/// Looks up missing components from `proc_root` (`/proc` but in tests).
#[derive(Debug)]
pub struct MissingLookup {
    proc_root: PathBuf,
    own_mnt_ns: Option<u64>,
}

impl MissingLookup {
    pub fn new() -> MissingLookup {
        MissingLookup::with_proc_root(PathBuf::from("/proc"))
    }

    pub fn with_proc_root(proc_root: PathBuf) -> MissingLookup {
        use std::os::unix::fs::MetadataExt;
        let own_mnt_ns = std::fs::metadata(proc_root.join("self/ns/mnt")).ok().map(|m| m.ino());
        MissingLookup { proc_root, own_mnt_ns }
    }

    /// The first missing component of a failed ENOENT/ENOTDIR anomaly's
    /// resolved path; `None` for other failures, unresolved paths, or when
    /// the opener's file system cannot be reached any more.
    pub fn lookup(&self, a: &Anomaly) -> Option<MissingComponent> {
        let errno = a.event.errno().filter(|_| a.event.failed())?;
        if (errno != libc::ENOENT && errno != libc::ENOTDIR) || a.resolved.how == Resolution::Unresolved {
            return None;
        }
        let process_root = self.proc_root.join(a.event.pid.to_string()).join("root");
        let root = if std::fs::read_link(&process_root).is_ok() {
            process_root
        } else if a.event.mnt_ns != 0 && Some(a.event.mnt_ns as u64) == self.own_mnt_ns {
            PathBuf::from("/")
        } else {
            return None;
        };
        first_missing(&root, &a.resolved.path)
    }
}

impl Default for MissingLookup {
    fn default() -> Self {
        MissingLookup::new()
    }
}

/// The first prefix of the absolute `path` (within `root`) that does not
/// exist, or that exists but is not a directory while more follows. `None`
/// when the whole path exists now (it was created since, or the failure was
/// another kind of ENOENT, e.g. a dangling symlink's target).
pub fn first_missing(root: &Path, path: &[u8]) -> Option<MissingComponent> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let mut prefix = Vec::with_capacity(path.len());
    for (i, component) in components.iter().enumerate() {
        prefix.push(b'/');
        prefix.extend_from_slice(component);
        let on_disk = root.join(Path::new(std::ffi::OsStr::from_bytes(&prefix[1..])));
        // Follows symlinks, as the open did.
        match std::fs::metadata(&on_disk) {
            Err(_) => return Some(MissingComponent { path: prefix, not_a_directory: false }),
            Ok(m) if !m.is_dir() && i + 1 < components.len() => {
                return Some(MissingComponent { path: prefix, not_a_directory: true });
            }
            Ok(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_missing_directory_or_file() {
        let dir = std::env::temp_dir().join(format!("badfd-missing-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "").unwrap();
        let m = first_missing(&dir, b"/etc/myapp/conf.toml").unwrap();
        assert_eq!((m.path.as_slice(), m.not_a_directory), (&b"/etc/myapp"[..], false));
        assert_eq!(m.describe(), "/etc/myapp does not exist");
        let m = first_missing(&dir, b"/etc/nothere").unwrap();
        assert_eq!(m.path, b"/etc/nothere", "only the file itself is missing");
        let m = first_missing(&dir, b"/etc/passwd/x").unwrap();
        assert_eq!((m.path.as_slice(), m.not_a_directory), (&b"/etc/passwd"[..], true));
        assert_eq!(m.describe(), "/etc/passwd is not a directory");
        assert_eq!(first_missing(&dir, b"/etc/passwd"), None, "exists now");
        assert_eq!(first_missing(&dir, b"etc/x"), None, "relative paths are not looked up");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

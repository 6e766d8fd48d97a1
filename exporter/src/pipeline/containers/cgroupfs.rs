//! Cgroup id to cgroup path: the cgroup v2 id the kernel puts in each event is
//! the inode number of the cgroup's directory, so the path is found by walking
//! the hierarchy's directories (their inode numbers come with readdir, no stat
//! needed). Found paths are kept in a bounded LRU cache; an entry is checked
//! again after a while and dropped once its directory is gone. Ids not found
//! are remembered for a while too, so a storm of events from a cgroup that has
//! just gone costs one walk, not one per event.

use std::{
    num::NonZeroUsize,
    os::unix::fs::{DirEntryExt, MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lru::LruCache;

use super::path::{parse_cgroup_path, CgroupOwner};

/// The root cgroup's id (cgroup v2).
pub const ROOT_CGROUP_ID: u64 = 1;
/// Deepest directory level walked (kubelet's container scopes are at 4).
const MAX_WALK_DEPTH: usize = 32;

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a pure v2
/// host, `/sys/fs/cgroup/unified` on a hybrid one; from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_mount_in(&text)
}

/// The cgroup2 mount point in mountinfo text; `/sys/fs/cgroup` preferred.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            // id parent major:minor root mount-point options [optional...] - fstype source options
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_mountinfo(mount_point)))
        })
        .collect();
    found.sort_by_key(|p| (p != Path::new("/sys/fs/cgroup"), p.as_os_str().len()));
    found.into_iter().next()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The cgroup v2 id of a cgroup directory: its inode number.
pub fn cgroup_id_of_dir(dir: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup directory", dir.display()),
        ));
    }
    Ok(meta.ino())
}

/// The cgroup v2 directory a user names: a directory of the cgroup v2
/// hierarchy (`/sys/fs/cgroup/kubepods.slice/...`), or a path as
/// `/proc/PID/cgroup` spells it (`/kubepods.slice/...`), under the mount.
/// The error is one line, saying what is wrong.
pub fn cgroup_dir(path: &Path) -> Result<PathBuf, String> {
    let is_cgroup2 = |dir: &Path| {
        dir.is_dir() && nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    if path.is_absolute() && is_cgroup2(path) {
        return Ok(path.to_path_buf());
    }
    let Some(root) = cgroup2_mount() else {
        return Err(format!("{}: not a cgroup v2 directory (and no cgroup v2 hierarchy is mounted)", path.display()));
    };
    let under_root = root.join(path.strip_prefix("/").unwrap_or(path));
    if is_cgroup2(&under_root) {
        return Ok(under_root);
    }
    Err(format!("{}: not a cgroup v2 directory (nor one under the cgroup v2 mount {})", path.display(), root.display()))
}

#[derive(Clone, Debug)]
pub struct CgroupPathsOptions {
    /// Paths kept at most (least recently used dropped first).
    pub capacity: usize,
    /// How long a found path is trusted before its directory is checked again.
    pub recheck_after: Duration,
    /// How long an id not found is not looked for again.
    pub miss_ttl: Duration,
}

impl Default for CgroupPathsOptions {
    fn default() -> Self {
        CgroupPathsOptions { capacity: 4096, recheck_after: Duration::from_secs(10), miss_ttl: Duration::from_secs(5) }
    }
}

/// What the cache did, for self-metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPathsStats {
    pub hits: u64,
    pub walks: u64,
    /// Lookups answered "unknown" from the remembered misses, without a walk.
    pub misses_remembered: u64,
    /// Entries dropped because their cgroup was removed.
    pub invalidated: u64,
    /// Entries dropped to stay within the capacity.
    pub evicted: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    /// Relative to the hierarchy's root, with a leading `/` (as /proc/PID/cgroup has it).
    path: String,
    owner: CgroupOwner,
    checked: Instant,
}

/// Cgroup id to path and owner, cached.
pub struct CgroupPaths {
    root: PathBuf,
    options: CgroupPathsOptions,
    found: LruCache<u64, Entry>,
    missing: LruCache<u64, Instant>,
    stats: CgroupPathsStats,
}

/// A resolved cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    /// Relative to the hierarchy's root, with a leading `/`.
    pub path: String,
    pub owner: CgroupOwner,
}

impl CgroupPaths {
    /// A cache over the cgroup v2 hierarchy mounted at `root`.
    pub fn new(root: impl Into<PathBuf>, options: CgroupPathsOptions) -> CgroupPaths {
        let capacity = NonZeroUsize::new(options.capacity.max(1)).expect("nonzero");
        CgroupPaths {
            root: root.into(),
            found: LruCache::new(capacity),
            missing: LruCache::new(capacity),
            options,
            stats: CgroupPathsStats::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> CgroupPathsStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The cgroup with this id, or `None` if the hierarchy has no such
    /// directory (any more).
    pub fn lookup(&mut self, id: u64) -> Option<Cgroup> {
        let now = Instant::now();
        if let Some(entry) = self.found.get_mut(&id) {
            if now.duration_since(entry.checked) < self.options.recheck_after {
                self.stats.hits += 1;
                return Some(Cgroup { id, path: entry.path.clone(), owner: entry.owner.clone() });
            }
            let full = self.root.join(entry.path.trim_start_matches('/'));
            match std::fs::metadata(&full) {
                Ok(m) if m.ino() == id => {
                    entry.checked = now;
                    self.stats.hits += 1;
                    return Some(Cgroup { id, path: entry.path.clone(), owner: entry.owner.clone() });
                }
                // Removed (or renamed: walked again below).
                _ => {
                    self.found.pop(&id);
                    self.stats.invalidated += 1;
                }
            }
        }
        if let Some(when) = self.missing.get(&id) {
            if now.duration_since(*when) < self.options.miss_ttl {
                self.stats.misses_remembered += 1;
                return None;
            }
        }
        self.stats.walks += 1;
        match self.walk_for(id) {
            Some(path) => {
                self.missing.pop(&id);
                let owner = parse_cgroup_path(&path);
                let entry = Entry { path: path.clone(), owner: owner.clone(), checked: now };
                if self.found.push(id, entry).is_some_and(|(old, _)| old != id) {
                    self.stats.evicted += 1;
                }
                Some(Cgroup { id, path, owner })
            }
            None => {
                self.missing.put(id, now);
                None
            }
        }
    }

    /// Drops what is cached about `id` (e.g. when the caller knows it is gone).
    pub fn forget(&mut self, id: u64) {
        self.found.pop(&id);
        self.missing.pop(&id);
    }

    /// Walks the hierarchy for the directory whose inode is `id`.
    fn walk_for(&self, id: u64) -> Option<String> {
        if id == ROOT_CGROUP_ID || std::fs::metadata(&self.root).is_ok_and(|m| m.ino() == id) {
            return Some("/".to_string());
        }
        let mut stack: Vec<(PathBuf, usize)> = vec![(self.root.clone(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir {
                    continue;
                }
                if entry.ino() == id {
                    let rel = entry.path();
                    let rel = rel.strip_prefix(&self.root).ok()?;
                    return Some(format!("/{}", rel.to_string_lossy()));
                }
                if depth + 1 < MAX_WALK_DEPTH {
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_on_pure_and_hybrid_hosts() {
        let pure = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount_in(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        let hybrid = "25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:5 - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:6 - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,xattr,name=systemd\n";
        assert_eq!(cgroup2_mount_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        // A DaemonSet that mounts the host's hierarchy elsewhere, with a space escaped.
        let odd = "40 1 0:26 / /host/sys/fs\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(odd), Some(PathBuf::from("/host/sys/fs cgroup")));
        let v1_only = "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount_in(v1_only), None);
    }

    /// A fake hierarchy of plain directories: inode numbers work the same way.
    #[test]
    fn walks_caches_rechecks_and_forgets() {
        let root = std::env::temp_dir().join(format!("badfd-cgroupfs-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let scope = root.join("system.slice").join(format!("docker-{}.scope", "ab".repeat(32)));
        std::fs::create_dir_all(&scope).unwrap();
        let id = cgroup_id_of_dir(&scope).unwrap();
        // Made now, so that no inode number of the removed scope is reused by
        // them (a plain filesystem reuses them; cgroup ids are never reused).
        let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("d{i}"))).collect();
        let ids: Vec<u64> = dirs
            .iter()
            .map(|d| {
                std::fs::create_dir_all(d).unwrap();
                cgroup_id_of_dir(d).unwrap()
            })
            .collect();
        let options = CgroupPathsOptions { capacity: 2, recheck_after: Duration::ZERO, miss_ttl: Duration::from_secs(60) };
        let mut paths = CgroupPaths::new(&root, options);

        let found = paths.lookup(id).expect("found by walking");
        assert_eq!(found.path, format!("/system.slice/docker-{}.scope", "ab".repeat(32)));
        assert_eq!(found.owner.container_id.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(paths.stats().walks, 1);
        assert_eq!(paths.lookup(id), Some(found.clone()));
        assert_eq!(paths.stats().walks, 1, "the second lookup is a cache hit");
        assert_eq!(paths.stats().hits, 1);

        // Gone: the recheck drops it, the walk does not find it, and the miss
        // is remembered.
        std::fs::remove_dir(&scope).unwrap();
        assert_eq!(paths.lookup(id), None);
        assert_eq!(paths.stats().invalidated, 1);
        assert_eq!(paths.stats().walks, 2);
        assert_eq!(paths.lookup(id), None);
        assert_eq!(paths.stats().walks, 2, "a remembered miss walks no more");
        assert_eq!(paths.stats().misses_remembered, 1);
        assert!(paths.is_empty());

        // Bounded: the least recently used goes.
        for &i in &ids {
            assert!(paths.lookup(i).is_some());
        }
        assert_eq!(paths.len(), 2);
        assert_eq!(paths.stats().evicted, 1);
        assert!(cgroup_id_of_dir(&root.join("nope")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

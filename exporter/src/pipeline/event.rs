//! Anomaly events as userspace sees them, decoded from the ring buffer's bytes.

use exporter_common::{
    EventHeader, Syscall, DIR_BAD_FD, DIR_NOT_ATTEMPTED, DIR_READ_FAILED, DIR_RESOLVED,
    DIR_TRUNCATED, DIR_UNREACHABLE, EVENT_FAILED, EVENT_HEADER_SIZE, EVENT_PATH_TRUNCATED, EVENT_PATH_UNREADABLE,
    EUID_UNKNOWN, EVENT_FOUND, EVENT_OPENED, EVENT_SLOW, EVENT_UNTIMED, TASK_COMM_LEN,
};

/// What the kernel found for the directory a relative path is relative to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KernelDir {
    /// The path is absolute, or the kernel has no struct offsets (no BTF).
    #[default]
    NotAttempted,
    /// The absolute directory (raw bytes), as the kernel walked it at the
    /// syscall's exit, in the traced process's mount namespace.
    Resolved(Vec<u8>),
    /// Deeper or longer than the kernel walks; not sent.
    Truncated,
    /// A kernel read failed on the way.
    ReadFailed,
    /// The dirfd was not an open descriptor of the process.
    BadFd,
    /// The directory has no absolute path (its mount was lazily unmounted).
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    /// CLOCK_MONOTONIC ns at syscall entry.
    pub start_ns: u64,
    pub latency_ns: u64,
    pub cgroup_id: u64,
    /// The syscall's return value: an fd, or -errno.
    pub ret: i64,
    pub open_flags: u64,
    pub pid: u32,
    pub tid: u32,
    /// The real uid and gid (`bpf_get_current_uid_gid`).
    pub uid: u32,
    pub gid: u32,
    /// The effective uid, where the kernel could read it (BTF).
    pub euid: Option<u32>,
    pub mode: u32,
    pub dirfd: i32,
    pub syscall: Syscall,
    pub flags: u8,
    pub comm: [u8; TASK_COMM_LEN],
    /// The path as passed to the syscall: raw bytes, not necessarily UTF-8.
    pub path: Vec<u8>,
    /// For a relative path: the directory the kernel resolved it against.
    pub kernel_dir: KernelDir,
    /// Inode number of the task's mount namespace (`/proc/PID/ns/mnt`); 0 if unknown.
    pub mnt_ns: u32,
    /// The kernel's `basename_hash` of the path (found-later classification); 0 if none.
    pub name_hash: u32,
    /// The opener's parent process id at the time of the open; 0 if unknown.
    pub ppid: u32,
}

impl Default for OpenEvent {
    fn default() -> Self {
        OpenEvent {
            start_ns: 0,
            latency_ns: 0,
            cgroup_id: 0,
            ret: 0,
            open_flags: 0,
            pid: 0,
            tid: 0,
            uid: 0,
            gid: 0,
            euid: None,
            mode: 0,
            dirfd: exporter_common::AT_FDCWD,
            syscall: Syscall::Openat,
            flags: 0,
            comm: [0; TASK_COMM_LEN],
            path: Vec::new(),
            kernel_dir: KernelDir::NotAttempted,
            mnt_ns: 0,
            name_hash: 0,
            ppid: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its {EVENT_HEADER_SIZE}-byte header")]
    Short(usize),
    #[error("event announces {announced} path bytes but carries {carried}")]
    PathLength { announced: usize, carried: usize },
    #[error("unknown syscall index {0}")]
    Syscall(u8),
    #[error("event announces {announced} directory bytes after its path but carries {carried}")]
    DirLength { announced: usize, carried: usize },
    #[error("unknown directory status {0}")]
    DirStatus(u8),
}

impl OpenEvent {
    pub fn decode(bytes: &[u8]) -> Result<OpenEvent, DecodeError> {
        if bytes.len() < EVENT_HEADER_SIZE {
            return Err(DecodeError::Short(bytes.len()));
        }
        // SAFETY: length checked; EventHeader is plain data; the ring buffer
        // gives 8-byte alignment but read_unaligned does not rely on it.
        let h: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let path = &bytes[EVENT_HEADER_SIZE..];
        let announced = h.path_len as usize;
        if announced > path.len() {
            return Err(DecodeError::PathLength { announced, carried: path.len() });
        }
        let dir = &path[announced..];
        let dir_len = h.dir_len as usize;
        if dir_len > dir.len() {
            return Err(DecodeError::DirLength { announced: dir_len, carried: dir.len() });
        }
        let kernel_dir = match h.dir_status {
            DIR_NOT_ATTEMPTED => KernelDir::NotAttempted,
            DIR_RESOLVED => KernelDir::Resolved(dir[..dir_len].to_vec()),
            DIR_TRUNCATED => KernelDir::Truncated,
            DIR_READ_FAILED => KernelDir::ReadFailed,
            DIR_BAD_FD => KernelDir::BadFd,
            DIR_UNREACHABLE => KernelDir::Unreachable,
            other => return Err(DecodeError::DirStatus(other)),
        };
        Ok(OpenEvent {
            start_ns: h.start_ns,
            latency_ns: h.latency_ns,
            cgroup_id: h.cgroup_id,
            ret: h.ret,
            open_flags: h.open_flags,
            pid: h.pid,
            tid: h.tid,
            uid: h.uid,
            gid: h.gid,
            euid: (h.euid != EUID_UNKNOWN).then_some(h.euid),
            mode: h.mode,
            dirfd: h.dirfd,
            syscall: Syscall::from_u8(h.syscall).ok_or(DecodeError::Syscall(h.syscall))?,
            flags: h.event_flags,
            comm: h.comm,
            path: path[..announced].to_vec(),
            kernel_dir,
            mnt_ns: h.mnt_ns,
            name_hash: h.name_hash,
            ppid: h.ppid,
        })
    }

    pub fn failed(&self) -> bool {
        self.flags & EVENT_FAILED != 0
    }

    pub fn slow(&self) -> bool {
        self.flags & EVENT_SLOW != 0
    }

    /// A successful open that found earlier failures of its process with the
    /// same basename (`name_hash`): a notice for the found-later stage, and
    /// no anomaly unless it is also slow or asked for ([`Self::opened`]).
    pub fn found_notice(&self) -> bool {
        self.flags & EVENT_FOUND != 0
    }

    /// A successful open streamed because every open was asked for
    /// (`badfd trace --all`): shown, never an anomaly.
    pub fn opened(&self) -> bool {
        self.flags & EVENT_OPENED != 0
    }

    /// Whether the event is more than a found notice: a failure, a slow
    /// open, or an open asked for.
    pub fn shown(&self) -> bool {
        self.flags & (EVENT_FAILED | EVENT_SLOW | EVENT_OPENED) != 0
    }

    /// The open's latency; `None` where it was not timed (`--no-timing`).
    pub fn latency_ns(&self) -> Option<u64> {
        (self.flags & EVENT_UNTIMED == 0).then_some(self.latency_ns)
    }

    pub fn path_truncated(&self) -> bool {
        self.flags & EVENT_PATH_TRUNCATED != 0
    }

    pub fn path_unreadable(&self) -> bool {
        self.flags & EVENT_PATH_UNREADABLE != 0
    }

    /// The errno of a failed open.
    pub fn errno(&self) -> Option<i32> {
        (self.ret < 0).then(|| (-self.ret) as i32)
    }

    /// The command name, up to its NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        &self.comm[..end]
    }

    pub fn comm_lossy(&self) -> String {
        String::from_utf8_lossy(self.comm_bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path_len: u16) -> EventHeader {
        EventHeader {
            start_ns: 1,
            latency_ns: 2,
            cgroup_id: 3,
            ret: -2,
            open_flags: 0o100,
            pid: 10,
            tid: 11,
            uid: 0,
            gid: 0,
            mode: 0o644,
            dirfd: -100,
            path_len,
            syscall: Syscall::Openat as u8,
            event_flags: EVENT_FAILED,
            name_hash: 0,
            comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
            dir_len: 0,
            dir_status: DIR_NOT_ATTEMPTED,
            _reserved2: [0; 5],
            mnt_ns: 4026531841,
            euid: EUID_UNKNOWN,
            ppid: 0,
            _reserved4: 0,
        }
    }

    fn bytes(h: &EventHeader, path: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; EVENT_HEADER_SIZE];
        // SAFETY: v holds EVENT_HEADER_SIZE bytes.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), *h) };
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn decodes_header_and_raw_path() {
        let path = b"/etc/\xffbad\nname";
        let e = OpenEvent::decode(&bytes(&header(path.len() as u16), path)).unwrap();
        assert_eq!(e.path, path);
        assert_eq!(e.errno(), Some(2));
        assert_eq!(e.comm_lossy(), "cat");
        assert_eq!(e.mnt_ns, 4026531841);
        assert_eq!(e.syscall, Syscall::Openat);
        assert!(e.failed() && !e.slow());
        assert_eq!(e.kernel_dir, KernelDir::NotAttempted);
        assert_eq!(e.euid, None, "EUID_UNKNOWN is no uid");
        let mut h = header(path.len() as u16);
        (h.uid, h.euid) = (1000, 0);
        let e = OpenEvent::decode(&bytes(&h, path)).unwrap();
        assert_eq!((e.uid, e.euid), (1000, Some(0)), "a setuid-root program run by uid 1000");
    }

    #[test]
    fn decodes_the_kernel_directory_after_the_path() {
        let mut h = header(4);
        h.dir_len = 8;
        h.dir_status = DIR_RESOLVED;
        let e = OpenEvent::decode(&bytes(&h, b"../x/home/\xffu")).unwrap();
        assert_eq!(e.path, b"../x");
        assert_eq!(e.kernel_dir, KernelDir::Resolved(b"/home/\xffu".to_vec()));
        for (status, want) in [
            (DIR_TRUNCATED, KernelDir::Truncated),
            (DIR_READ_FAILED, KernelDir::ReadFailed),
            (DIR_BAD_FD, KernelDir::BadFd),
            (DIR_UNREACHABLE, KernelDir::Unreachable),
        ] {
            h.dir_len = 0;
            h.dir_status = status;
            assert_eq!(OpenEvent::decode(&bytes(&h, b"../x")).unwrap().kernel_dir, want);
        }
        h.dir_len = 20;
        h.dir_status = DIR_RESOLVED;
        assert_eq!(
            OpenEvent::decode(&bytes(&h, b"../x/home")),
            Err(DecodeError::DirLength { announced: 20, carried: 5 })
        );
        h.dir_status = 99;
        h.dir_len = 0;
        assert_eq!(OpenEvent::decode(&bytes(&h, b"../x")), Err(DecodeError::DirStatus(99)));
    }

    #[test]
    fn rejects_short_and_inconsistent_events() {
        assert_eq!(OpenEvent::decode(&[0; 10]), Err(DecodeError::Short(10)));
        let b = bytes(&header(50), b"short");
        assert_eq!(OpenEvent::decode(&b), Err(DecodeError::PathLength { announced: 50, carried: 5 }));
    }
}

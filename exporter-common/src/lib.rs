//! The kernel/user contract of badfd: every type and constant that both the eBPF
//! program and userspace read or write. Layouts are `#[repr(C)]` and only grow at
//! the end, so both sides agree on them byte for byte.
#![no_std]

/// Longest path the kernel accepts, including the terminating NUL.
pub const PATH_MAX: usize = 4096;
/// Length of `task_struct.comm`, including the NUL.
pub const TASK_COMM_LEN: usize = 16;

/// The syscalls that open a path, the execs (a program that fails to start
/// often fails at execve: a missing binary or `#!` interpreter), and the other
/// ways a program opens a path (io_uring requests, 32-bit processes'
/// syscalls). The discriminant indexes the counter arrays; `name` is the
/// `syscall` label.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Syscall {
    Open = 0,
    Openat = 1,
    Openat2 = 2,
    Creat = 3,
    Execve = 4,
    Execveat = 5,
    /// An io_uring `IORING_OP_OPENAT` request (no syscall of its own: the
    /// kernel opens it for the ring, in the submitter or an io_uring worker).
    IoUringOpenat = 6,
    /// An io_uring `IORING_OP_OPENAT2` request.
    IoUringOpenat2 = 7,
    /// The open syscalls of a 32-bit (ia32) process on x86_64 (numbers 5, 295,
    /// 437 and 8, arguments in bx, cx, dx, si).
    Ia32Open = 8,
    Ia32Openat = 9,
    Ia32Openat2 = 10,
    Ia32Creat = 11,
}

pub const SYSCALL_COUNT: usize = 12;

impl Syscall {
    pub const ALL: [Syscall; SYSCALL_COUNT] = [
        Syscall::Open,
        Syscall::Openat,
        Syscall::Openat2,
        Syscall::Creat,
        Syscall::Execve,
        Syscall::Execveat,
        Syscall::IoUringOpenat,
        Syscall::IoUringOpenat2,
        Syscall::Ia32Open,
        Syscall::Ia32Openat,
        Syscall::Ia32Openat2,
        Syscall::Ia32Creat,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Syscall::Open => "open",
            Syscall::Openat => "openat",
            Syscall::Openat2 => "openat2",
            Syscall::Creat => "creat",
            Syscall::Execve => "execve",
            Syscall::Execveat => "execveat",
            Syscall::IoUringOpenat => "io_uring_openat",
            Syscall::IoUringOpenat2 => "io_uring_openat2",
            Syscall::Ia32Open => "ia32_open",
            Syscall::Ia32Openat => "ia32_openat",
            Syscall::Ia32Openat2 => "ia32_openat2",
            Syscall::Ia32Creat => "ia32_creat",
        }
    }

    /// An exec rather than an open: its `Inflight::mode` carries the
    /// basename hash taken at entry (the path is gone once the exec
    /// succeeded), and it is never a slow anomaly.
    pub const fn is_exec(self) -> bool {
        matches!(self, Syscall::Execve | Syscall::Execveat)
    }

    pub const fn from_u8(value: u8) -> Option<Syscall> {
        match value {
            0 => Some(Syscall::Open),
            1 => Some(Syscall::Openat),
            2 => Some(Syscall::Openat2),
            3 => Some(Syscall::Creat),
            4 => Some(Syscall::Execve),
            5 => Some(Syscall::Execveat),
            6 => Some(Syscall::IoUringOpenat),
            7 => Some(Syscall::IoUringOpenat2),
            8 => Some(Syscall::Ia32Open),
            9 => Some(Syscall::Ia32Openat),
            10 => Some(Syscall::Ia32Openat2),
            11 => Some(Syscall::Ia32Creat),
            _ => None,
        }
    }

    /// Whether this is an io_uring request rather than a syscall.
    pub const fn is_io_uring(self) -> bool {
        matches!(self, Syscall::IoUringOpenat | Syscall::IoUringOpenat2)
    }

    /// x86_64 syscall numbers, used by the fentry programs to tell which syscall
    /// reached the common open function.
    pub const fn from_x86_64_nr(nr: u64) -> Option<Syscall> {
        match nr {
            2 => Some(Syscall::Open),
            257 => Some(Syscall::Openat),
            437 => Some(Syscall::Openat2),
            85 => Some(Syscall::Creat),
            59 => Some(Syscall::Execve),
            322 => Some(Syscall::Execveat),
            _ => None,
        }
    }

    /// aarch64 syscall numbers (the generic table, include/uapi/asm-generic/unistd.h),
    /// which has no `open` and no `creat`.
    pub const fn from_aarch64_nr(nr: u64) -> Option<Syscall> {
        match nr {
            56 => Some(Syscall::Openat),
            437 => Some(Syscall::Openat2),
            221 => Some(Syscall::Execve),
            281 => Some(Syscall::Execveat),
            _ => None,
        }
    }
}

/// The architectures whose syscall ABI badfd's kernel programs know (the
/// register layout in exporter-ebpf/src/arch, the syscall numbers above).
/// badfd refuses to start on any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name Rust (`std::env::consts::ARCH`) and `uname -m` give it.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The open syscalls of the architecture's native (64-bit) ABI, in
    /// `Syscall::ALL` order. 32-bit compat syscalls are not among them.
    pub const fn syscalls(self) -> &'static [Syscall] {
        match self {
            Arch::X86_64 => &[
                Syscall::Open,
                Syscall::Openat,
                Syscall::Openat2,
                Syscall::Creat,
                Syscall::Execve,
                Syscall::Execveat,
            ],
            Arch::Aarch64 => &[Syscall::Openat, Syscall::Openat2, Syscall::Execve, Syscall::Execveat],
        }
    }

    /// The opens the architecture has besides its native syscalls: io_uring
    /// requests everywhere, and on x86_64 the 32-bit (ia32) syscalls.
    pub const fn other_opens(self) -> &'static [Syscall] {
        match self {
            Arch::X86_64 => &[
                Syscall::IoUringOpenat,
                Syscall::IoUringOpenat2,
                Syscall::Ia32Open,
                Syscall::Ia32Openat,
                Syscall::Ia32Openat2,
                Syscall::Ia32Creat,
            ],
            Arch::Aarch64 => &[Syscall::IoUringOpenat, Syscall::IoUringOpenat2],
        }
    }

    /// The open syscall a native syscall number stands for, if any.
    pub const fn syscall_from_nr(self, nr: u64) -> Option<Syscall> {
        match self {
            Arch::X86_64 => Syscall::from_x86_64_nr(nr),
            Arch::Aarch64 => Syscall::from_aarch64_nr(nr),
        }
    }
}

/// `dirfd` recorded for `open` and `creat`, which resolve relative paths against
/// the cwd exactly as `openat(AT_FDCWD, ..)` does.
pub const AT_FDCWD: i32 = -100;

/// `dirfd` of an open whose directory fd the kernel did not say (an io_uring
/// request that failed before it ran): a relative path is left unresolved.
pub const DIRFD_UNKNOWN: i32 = i32::MIN;

// ---------------------------------------------------------------------------
// Configuration: one element of the `CONFIG` array map, written by userspace at
// any time; the kernel reads it on every exit.
// ---------------------------------------------------------------------------

/// `Config::slow_threshold_ns` value that turns slow-open reporting off.
pub const SLOW_DISABLED: u64 = u64::MAX;
/// `Config::filter_pid` / `filter_uid` value that matches everything.
pub const FILTER_ANY: u32 = u32::MAX;

/// Stream only failed opens; slow successful opens are still counted.
pub const CONFIG_FAILURES_ONLY: u32 = 1 << 0;
/// Stream only processes in the `TRACKED` map (`badfd trace -- command`).
pub const CONFIG_TRACKED_ONLY: u32 = 1 << 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// An open that takes at least this long is an anomaly. `SLOW_DISABLED` = never.
    pub slow_threshold_ns: u64,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// Stream only this process (tgid); `FILTER_ANY` for all.
    pub filter_pid: u32,
    /// Stream only this uid; `FILTER_ANY` for all.
    pub filter_uid: u32,
    /// Wake the reader once this many bytes wait in the ring buffer; below it the
    /// reader polls on a timer, so a storm costs no wakeup per event. Past it, each
    /// CPU wakes the reader at most once per `WAKEUP_MIN_INTERVAL_NS`.
    pub wakeup_bytes: u32,
    /// Offset of `child_pid` in the `sched/sched_process_fork` tracepoint record,
    /// read by userspace from tracefs (the layout changed across kernels).
    pub fork_child_pid_offset: u32,
    pub _pad: u32,
    /// Kernel struct offsets for resolving the directory of a relative path in
    /// the kernel; read by userspace from the kernel's BTF at load time.
    pub offsets: KernelOffsets,
    /// Stream only tasks whose `comm` is exactly this (NUL-padded, at most 15
    /// bytes, as the kernel truncates it); all zeros for all.
    pub filter_comm: [u8; TASK_COMM_LEN],
    /// `CGROUP_FILTER_*`: how the `CGROUP_FILTER` map of cgroup ids is used.
    pub cgroup_filter: u32,
    pub _pad2: u32,
    /// Fairness between sources (GHSA-wv52-frfv-mfh4): once the ring buffer is
    /// at least half full, each source may stream one nominal event
    /// (`NOMINAL_EVENT_BYTES`, charged by the event's real size) per this many
    /// ns on average; the rest of its anomalies are dropped and counted
    /// (`Loss::SourceThrottled`), keeping the other half of the buffer for
    /// quieter sources. A source is a process (tgid), and also its cgroup
    /// (`CGROUP_SOURCE_SHARE` times the rate) and, but for root, its uid
    /// (`UID_SOURCE_SHARE` times): forking, renaming or making cgroups gives
    /// no fresh budget. 0 turns the limit off.
    pub source_interval_ns: u64,
    /// Burst a process may stream above its rate before it is throttled, as a
    /// time credit in ns (burst events times `source_interval_ns`).
    pub source_burst_ns: u64,
    /// A failed open is *found later* when the same process opens a file of
    /// the same basename successfully within this many ns after it (see
    /// `FailedNames`). 0 turns the classification off.
    pub found_later_window_ns: u64,
    /// Length of a found-later epoch in ns (at least the window): failures and
    /// their finds are counted in the bucket of the failure's epoch
    /// (`Counters::failures_by_epoch`), so that userspace can count each
    /// epoch's failures once all of them are decided.
    pub found_later_epoch_ns: u64,
    /// What the exit programs read of the current task: how a pending signal
    /// ends an interrupted open, and whether a syscall is a 32-bit one.
    pub task: TaskOffsets,
    /// What the io_uring programs read of a request and of the io_uring
    /// tracepoints' records.
    pub io_uring: IoUringOffsets,
    /// Where the kernel keeps its copy of a path (`struct filename`).
    pub filename: FilenameOffsets,
}

/// `struct filename`, the kernel's copy of a path an open was given (from
/// the kernel's BTF): the opens whose path is read after the kernel freed it
/// copy it from here first (`KERNEL_PATHS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilenameOffsets {
    /// Nonzero when `name` was found.
    pub valid: u32,
    /// `filename.name` (the kernel's copy of the path).
    pub name: u32,
    /// `filename.uptr` (the user's pointer the path was copied from), or
    /// `FIELD_ABSENT` (Linux 7.x keeps none).
    pub uptr: u32,
    pub _pad: u32,
}

impl FilenameOffsets {
    pub const NONE: FilenameOffsets = FilenameOffsets { valid: 0, name: 0, uptr: FIELD_ABSENT, _pad: 0 };
}

/// Set by the loader, not by callers: opens are not timed (`--no-timing`).
/// The io_uring programs, which are the same in both timing modes, read it.
pub const CONFIG_UNTIMED: u32 = 1 << 8;

/// Byte offsets in the kernel's task structs, from its BTF (userspace finds
/// them, as it does `KernelOffsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOffsets {
    /// Nonzero when every signal offset below was found. Without them an
    /// open that leaves with a restart code is taken as restarted (its entry
    /// stays; a thread that dies instead has it reaped).
    pub signals_valid: u32,
    /// `task_struct.pending.signal` (`sigset_t`, one u64 on 64-bit kernels).
    pub task_pending_signal: u32,
    /// `task_struct.blocked` (`sigset_t`).
    pub task_blocked: u32,
    /// `task_struct.signal` (`struct signal_struct *`).
    pub task_signal: u32,
    /// `signal_struct.shared_pending.signal` (`sigset_t`).
    pub signal_shared_pending: u32,
    /// `task_struct.sighand` (`struct sighand_struct *`).
    pub task_sighand: u32,
    /// `sighand_struct.action` (`struct k_sigaction[64]`).
    pub sighand_action: u32,
    /// Size of `struct k_sigaction`.
    pub k_sigaction_size: u32,
    /// `k_sigaction.sa.sa_handler`.
    pub sa_handler: u32,
    /// `k_sigaction.sa.sa_flags` (`unsigned long`).
    pub sa_flags: u32,
    /// Nonzero when `thread_status` was found (x86_64).
    pub compat_valid: u32,
    /// `task_struct.thread_info.status` (u32): `TS_COMPAT` while the task
    /// runs a 32-bit syscall.
    pub thread_status: u32,
    /// Nonzero when both credential offsets below were found. Without them
    /// events carry `EUID_UNKNOWN`.
    pub cred_valid: u32,
    /// `task_struct.cred` (`const struct cred *`, the subjective credentials
    /// that `bpf_get_current_uid_gid` reads too).
    pub task_cred: u32,
    /// `cred.euid` (`kuid_t`, one u32).
    pub cred_euid: u32,
    /// Nonzero when the two offsets below were found.
    pub parent_valid: u32,
    /// `task_struct.real_parent` (`struct task_struct *`).
    pub task_real_parent: u32,
    /// `task_struct.tgid` (`pid_t`).
    pub task_tgid: u32,
}

impl TaskOffsets {
    pub const NONE: TaskOffsets = TaskOffsets {
        signals_valid: 0,
        task_pending_signal: 0,
        task_blocked: 0,
        task_signal: 0,
        signal_shared_pending: 0,
        task_sighand: 0,
        sighand_action: 0,
        k_sigaction_size: 0,
        sa_handler: 0,
        sa_flags: 0,
        compat_valid: 0,
        thread_status: 0,
        cred_valid: 0,
        task_cred: 0,
        cred_euid: 0,
        parent_valid: 0,
        task_real_parent: 0,
        task_tgid: 0,
    };
}

/// `thread_info.status` bit of x86: a 32-bit syscall is running.
pub const TS_COMPAT: u32 = 0x0002;

/// An offset of a field the running kernel's struct lacks, e.g.
/// `FilenameOffsets::uptr` where `struct filename` keeps no user pointer
/// (Linux 7.x).
pub const FIELD_ABSENT: u32 = u32::MAX;

/// io_uring opcodes of opens (include/uapi/linux/io_uring.h).
pub const IORING_OP_OPENAT: u8 = 18;
pub const IORING_OP_OPENAT2: u8 = 28;
/// `io_kiocb.flags` bit of `IOSQE_CQE_SKIP_SUCCESS`: a successful request
/// posts no completion (and so no `io_uring_complete` event).
pub const REQ_F_CQE_SKIP: u64 = 1 << 6;

/// Where the io_uring programs find an open request's arguments and result:
/// `struct io_kiocb` and `struct io_open` from the kernel's BTF; the records
/// of the `io_uring` tracepoints from their tracefs formats.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoUringOffsets {
    /// Nonzero when every request offset was found (BTF).
    pub valid: u32,
    /// `io_kiocb.opcode` (u8).
    pub req_opcode: u32,
    /// `io_kiocb.cqe.res` (s32): the request's result once it is set.
    pub req_result: u32,
    /// The `struct io_open` inside `io_kiocb` (its command data).
    pub req_open: u32,
    /// `io_open.dfd` (int).
    pub open_dfd: u32,
    /// `io_open.filename`: a `struct filename *` (or a struct whose first
    /// member is one, Linux 7.x's `delayed_filename`).
    pub open_filename: u32,
    /// `io_open.how` (`struct open_how`: flags, mode, resolve).
    pub open_how: u32,
    /// Nonzero when every tracepoint record offset below was found (tracefs).
    pub records_valid: u32,
    /// `io_uring_submit_req` (`io_uring_submit_sqe` before 6.2): req, opcode, flags.
    pub submit_req: u32,
    pub submit_opcode: u32,
    pub submit_flags: u32,
    /// `io_uring_complete`: req, res.
    pub complete_req: u32,
    pub complete_res: u32,
    /// `io_uring_req_failed` (a request that failed before it ran): req, opcode,
    /// addr (the path), off (openat2's `struct open_how *`), len (openat's
    /// mode), op_flags (openat's flags), error.
    pub failed_opcode: u32,
    pub failed_addr: u32,
    pub failed_off: u32,
    pub failed_len: u32,
    pub failed_op_flags: u32,
    pub failed_error: u32,
    pub failed_req: u32,
}

impl IoUringOffsets {
    pub const NONE: IoUringOffsets = IoUringOffsets {
        valid: 0,
        req_opcode: 0,
        req_result: 0,
        req_open: 0,
        open_dfd: 0,
        open_filename: 0,
        open_how: 0,
        records_valid: 0,
        submit_req: 0,
        submit_opcode: 0,
        submit_flags: 0,
        complete_req: 0,
        complete_res: 0,
        failed_opcode: 0,
        failed_addr: 0,
        failed_off: 0,
        failed_len: 0,
        failed_op_flags: 0,
        failed_error: 0,
        failed_req: 0,
    };
}

/// Stream a successful open that found earlier failures of its process
/// (`EVENT_FOUND`), so that userspace can classify the failures it holds.
pub const CONFIG_FOUND_NOTICES: u32 = 1 << 2;
/// Stream failed execs (they are always counted): set by a userspace that
/// sets aside the failures of a `PATH` search, which most execs make.
pub const CONFIG_STREAM_EXECS: u32 = 1 << 3;
/// Stream successful opens too (`EVENT_OPENED`; `badfd trace --all`, with its
/// filters): "which config file did it load". Successful execs are not
/// streamed (their path is in the old program's memory, gone at exit).
pub const CONFIG_STREAM_OPENS: u32 = 1 << 4;

/// Default found-later window: 1 s.
pub const DEFAULT_FOUND_LATER_WINDOW_NS: u64 = 1_000_000_000;

/// Default per-process rate once the ring buffer is half full (nominal events/s).
pub const DEFAULT_SOURCE_RATE: u32 = 1000;
/// The event size the source rate is for: an event of N bytes costs
/// N / NOMINAL_EVENT_BYTES of one (a 4 KiB path costs 16 or more).
pub const NOMINAL_EVENT_BYTES: u64 = 256;
/// A cgroup's budget, in processes' budgets: one flooding process leaves room
/// for the others of its container or service.
pub const CGROUP_SOURCE_SHARE: u64 = 2;
/// A non-root uid's budget, in processes' budgets. Root is not limited as a
/// uid: its containers and services are told apart by cgroup.
pub const UID_SOURCE_SHARE: u64 = 4;

/// `source_interval_ns` and `source_burst_ns` for `rate` anomalies per second
/// with a burst of one second's worth; rate 0 turns fairness off.
pub const fn source_limit(rate: u32) -> (u64, u64) {
    if rate == 0 {
        (0, 0)
    } else {
        let interval = 1_000_000_000 / rate as u64;
        (interval, interval * rate as u64)
    }
}

/// The `CGROUP_FILTER` map is not consulted.
pub const CGROUP_FILTER_OFF: u32 = 0;
/// Stream only tasks in a listed cgroup or below one (a listed pod slice
/// covers its containers).
pub const CGROUP_FILTER_WATCH: u32 = 1;
/// Stream no task in a listed cgroup or below one.
pub const CGROUP_FILTER_IGNORE: u32 = 2;
/// Cgroup levels the kernel checks against `CGROUP_FILTER`, from the root down
/// (kubelet's deepest container scope is at level 4 or 5).
pub const CGROUP_FILTER_MAX_DEPTH: u32 = 16;

/// Byte offsets of the kernel struct members the eBPF program reads to find the
/// directory a relative path is resolved against (aya-ebpf emits no CO-RE
/// relocations, so userspace finds them in `/sys/kernel/btf/vmlinux`). With
/// `valid == 0` the kernel does not try, and userspace resolves from /proc.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Nonzero when every offset below was found.
    pub valid: u32,
    /// `task_struct.fs` (`struct fs_struct *`).
    pub task_fs: u32,
    /// `task_struct.files` (`struct files_struct *`).
    pub task_files: u32,
    /// `fs_struct.pwd` (`struct path`).
    pub fs_pwd: u32,
    /// `files_struct.fdt` (`struct fdtable *`).
    pub files_fdt: u32,
    /// `fdtable.max_fds` (`unsigned int`).
    pub fdtable_max_fds: u32,
    /// `fdtable.fd` (`struct file **`).
    pub fdtable_fd: u32,
    /// `file.f_path` (`struct path`).
    pub file_f_path: u32,
    /// `path.mnt` (`struct vfsmount *`).
    pub path_mnt: u32,
    /// `path.dentry` (`struct dentry *`).
    pub path_dentry: u32,
    /// `dentry.d_parent` (`struct dentry *`).
    pub dentry_parent: u32,
    /// `dentry.d_name` (`struct qstr`).
    pub dentry_name: u32,
    /// `qstr.len` (`u32`).
    pub qstr_len: u32,
    /// `qstr.name` (`const unsigned char *`).
    pub qstr_name: u32,
    /// `mount.mnt_parent` (`struct mount *`).
    pub mount_parent: u32,
    /// `mount.mnt_mountpoint` (`struct dentry *`).
    pub mount_mountpoint: u32,
    /// `mount.mnt` (the `struct vfsmount` embedded in `struct mount`).
    pub mount_mnt: u32,
    /// `vfsmount.mnt_root` (`struct dentry *`).
    pub vfsmount_root: u32,
    /// `mount.mnt_ns` (`struct mnt_namespace *`; NULL once lazily unmounted).
    pub mount_ns: u32,
    pub _pad: u32,
    /// Nonzero when the three mount namespace offsets below were found (they
    /// are independent of the directory walk's `valid`).
    pub mnt_ns_valid: u32,
    /// `task_struct.nsproxy` (`struct nsproxy *`).
    pub task_nsproxy: u32,
    /// `nsproxy.mnt_ns` (`struct mnt_namespace *`).
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum` (`unsigned int`): the number `/proc/PID/ns/mnt` shows.
    pub mnt_ns_inum: u32,
}

impl KernelOffsets {
    /// No offsets: the kernel leaves relative paths to userspace.
    pub const NONE: KernelOffsets = KernelOffsets {
        valid: 0,
        task_fs: 0,
        task_files: 0,
        fs_pwd: 0,
        files_fdt: 0,
        fdtable_max_fds: 0,
        fdtable_fd: 0,
        file_f_path: 0,
        path_mnt: 0,
        path_dentry: 0,
        dentry_parent: 0,
        dentry_name: 0,
        qstr_len: 0,
        qstr_name: 0,
        mount_parent: 0,
        mount_mountpoint: 0,
        mount_mnt: 0,
        vfsmount_root: 0,
        mount_ns: 0,
        _pad: 0,
        mnt_ns_valid: 0,
        task_nsproxy: 0,
        nsproxy_mnt_ns: 0,
        mnt_ns_inum: 0,
    };
}

impl Config {
    pub const DEFAULT: Config = Config {
        slow_threshold_ns: 10_000_000,
        flags: 0,
        filter_pid: FILTER_ANY,
        filter_uid: FILTER_ANY,
        wakeup_bytes: 64 * 1024,
        fork_child_pid_offset: 0,
        _pad: 0,
        offsets: KernelOffsets::NONE,
        filter_comm: [0; TASK_COMM_LEN],
        cgroup_filter: CGROUP_FILTER_OFF,
        _pad2: 0,
        source_interval_ns: source_limit(DEFAULT_SOURCE_RATE).0,
        source_burst_ns: source_limit(DEFAULT_SOURCE_RATE).1,
        found_later_window_ns: DEFAULT_FOUND_LATER_WINDOW_NS,
        found_later_epoch_ns: DEFAULT_FOUND_LATER_WINDOW_NS,
        task: TaskOffsets::NONE,
        io_uring: IoUringOffsets::NONE,
        filename: FilenameOffsets::NONE,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

// ---------------------------------------------------------------------------
// In-flight opens: the `INFLIGHT` array, one slot per `tid & INFLIGHT_SLOT_MASK`.
//
// An array rather than a hash map keyed by tid: its lookups are inlined by the
// verifier and nothing is allocated or freed, which saves most of the cost of
// timing an open; an entry left by a thread that died mid-open is simply
// overwritten. Two threads in flight at once whose tids share a slot collide:
// the later one takes the slot and the collision is counted
// (`Loss::InflightCollision`).
// ---------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    pub start_ns: u64,
    /// User-space address of the path; read only if the open turns out anomalous.
    pub path_ptr: u64,
    pub open_flags: u64,
    pub mode: u32,
    pub dirfd: i32,
    /// The thread whose open this is; 0 when the slot is free.
    pub tid: u32,
    pub syscall: u8,
    /// `INFLIGHT_*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
}

/// The open left with a restart code and the kernel restarts it: the entry
/// stays, and the restart (the same syscall with the same arguments) goes on
/// timing it from its first entry.
pub const INFLIGHT_RESTARTING: u8 = 1 << 0;
/// `path_ptr` is a kernel address (a copy of the path the kernel made).
pub const INFLIGHT_PATH_IN_KERNEL: u8 = 1 << 1;
/// An io_uring request with `IOSQE_CQE_SKIP_SUCCESS`: if it succeeds, no
/// completion is posted.
pub const INFLIGHT_CQE_SKIP: u8 = 1 << 2;

/// Slots of the `INFLIGHT` array (a power of two): 2.5 MiB of kernel memory.
pub const INFLIGHT_SLOTS: u32 = 1 << 16;
pub const INFLIGHT_SLOT_MASK: u32 = INFLIGHT_SLOTS - 1;

// ---------------------------------------------------------------------------
// Events: a fixed header followed by `path_len` bytes of path (no NUL).
// ---------------------------------------------------------------------------

/// The open failed (`ret < 0`).
pub const EVENT_FAILED: u8 = 1 << 0;
/// The open took at least the slow threshold.
pub const EVENT_SLOW: u8 = 1 << 1;
/// The path was longer than `PATH_MAX - 1` bytes and was cut.
pub const EVENT_PATH_TRUNCATED: u8 = 1 << 2;
/// The path could not be read from user memory; `path_len` is 0.
pub const EVENT_PATH_UNREADABLE: u8 = 1 << 3;
/// The open was not timed (the untimed attach, `--no-timing`: only the exit is
/// hooked): `latency_ns` is 0 and `start_ns` is the time of the exit.
pub const EVENT_UNTIMED: u8 = 1 << 4;
/// Not an anomaly: a successful open that found earlier failures of its
/// process with the same basename (`EventHeader::name_hash`) within the
/// found-later window; streamed only with `CONFIG_FOUND_NOTICES`.
pub const EVENT_FOUND: u8 = 1 << 5;
/// A signal ended the open: with `EVENT_FAILED` the program got EINTR (a
/// handler without `SA_RESTART`); without it the task was killed while the
/// open waited, no result reached the program, and `ret` is the kernel's
/// restart code (-512 and kin).
pub const EVENT_INTERRUPTED: u8 = 1 << 6;
/// Not an anomaly: a successful open streamed because of
/// `CONFIG_STREAM_OPENS` (neither failed nor slow).
pub const EVENT_OPENED: u8 = 1 << 7;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// CLOCK_MONOTONIC ns at syscall entry.
    pub start_ns: u64,
    pub latency_ns: u64,
    pub cgroup_id: u64,
    /// Syscall return value: an fd, or -errno.
    pub ret: i64,
    pub open_flags: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub dirfd: i32,
    /// Bytes of path that follow this header.
    pub path_len: u16,
    pub syscall: u8,
    /// `EVENT_*` bits.
    pub event_flags: u8,
    /// `basename_hash` of the path, as the kernel computed it for the
    /// found-later classification; 0 where it did not (classification off,
    /// path unreadable, empty basename).
    pub name_hash: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// Bytes of directory that follow the path: the absolute directory a relative
    /// path is resolved against, as the kernel found it (`dir_status` says how).
    pub dir_len: u16,
    /// `DIR_*`: whether the kernel resolved the directory of a relative path.
    pub dir_status: u8,
    pub _reserved2: [u8; 5],
    /// Inode number of the task's mount namespace (as `/proc/PID/ns/mnt` shows
    /// it); 0 when the kernel has no offsets for it or the read failed.
    pub mnt_ns: u32,
    /// The effective uid (`current_cred()->euid`, in the initial user
    /// namespace); `EUID_UNKNOWN` without the credential offsets or when the
    /// read failed. (`uid` is the real uid: `bpf_get_current_uid_gid` returns
    /// `current_cred()->uid`.)
    pub euid: u32,
    /// The process id (tgid) of the opener's parent (`real_parent`: not a
    /// tracer's) at the time of the event; 0 when the kernel has no offsets.
    pub ppid: u32,
    pub _reserved4: u32,
}

/// `EventHeader::euid` when the kernel could not read it: `(uid_t)-1`, which
/// no process can have (setresuid takes -1 as "leave unchanged").
pub const EUID_UNKNOWN: u32 = u32::MAX;

/// The path is absolute, or the kernel has no offsets: no directory was looked up.
pub const DIR_NOT_ATTEMPTED: u8 = 0;
/// The directory follows the path (`dir_len` bytes, absolute, no trailing `/`
/// except for `/` itself).
pub const DIR_RESOLVED: u8 = 1;
/// The directory is deeper than `DIR_MAX_COMPONENTS` or longer than `DIR_MAX - 1`
/// bytes; none is sent (counted as `Loss::DirTruncated`).
pub const DIR_TRUNCATED: u8 = 2;
/// Reading a kernel struct failed (counted as `Loss::DirReadFailed`).
pub const DIR_READ_FAILED: u8 = 3;
/// The dirfd is not an open file descriptor of the process (the open fails with
/// EBADF): there is no directory to find.
pub const DIR_BAD_FD: u8 = 4;
/// The directory is not reachable from any mount namespace's root (its mount
/// was lazily unmounted, or its dentry is disconnected): it has no absolute path.
pub const DIR_UNREACHABLE: u8 = 5;

/// Most directory components the kernel walks (mount crossings count as one each).
pub const DIR_MAX_COMPONENTS: usize = 64;
/// Bytes the kernel reserves for the directory, including room for its end.
pub const DIR_MAX: usize = 4096;
/// Longest directory entry name (NAME_MAX).
pub const DIR_NAME_MAX: usize = 255;

pub const EVENT_HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// The kernel's per-CPU scratch space an event is built in before it is copied
/// into the ring buffer (header plus only the `path_len` bytes used).
#[repr(C)]
pub struct EventBuffer {
    pub header: EventHeader,
    pub path: [u8; PATH_MAX],
    /// Room for the directory, which is copied right after the path's `path_len` bytes.
    pub dir: [u8; DIR_MAX],
}

/// The kernel's per-CPU scratch space the directory is assembled in, from its
/// last component backwards; `DIR_NAME_MAX + 1` bytes of slack keep every write
/// provably inside it.
#[repr(C)]
pub struct DirBuffer {
    pub bytes: [u8; DIR_MAX + DIR_NAME_MAX + 1],
    /// Where the directory starts in `bytes` during the walk. Kept in memory, not
    /// in a register, so that the verifier sees every loop iteration alike and
    /// prunes (a precisely tracked position made it explore every path).
    pub pos: u32,
    pub _pad: u32,
}

// ---------------------------------------------------------------------------
// Found later: recent failed basenames per process, in the `FAILED_NAMES`
// array, one table per `tgid & FAILED_NAMES_SLOT_MASK`.
//
// A failure whose process opens a file of the same basename successfully
// within the window after it is a probe of a search path (the dynamic
// loader, locale lookup, sys.path), not a fault. Every failure is counted in
// `Counters::failures_by_epoch` in the bucket of its epoch; a success that
// matches counts the failures it found in `Counters::found_by_epoch`, in the
// bucket of *their* epoch. Once an epoch's window has closed, its failures
// less its finds were never found. A failure whose name could not be kept
// (path unreadable, empty basename, evicted) is simply never found.
// ---------------------------------------------------------------------------

/// One recent failed basename of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedName {
    /// CLOCK_MONOTONIC ns of the latest failure of this name in this entry.
    pub last_ns: u64,
    /// `basename_hash` of the name.
    pub hash: u32,
    /// Failures of this name (same errno, same epoch) not yet found; 0 when
    /// the entry is free or decided.
    pub count: u16,
    /// The failures' errno slot (`FOUND_ERRNO_SLOTS`).
    pub errno_slot: u8,
    /// The failures' epoch bucket (`epoch % FOUND_EPOCHS`).
    pub epoch_bucket: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedNames {
    /// The process whose table this is; 0 when unused.
    pub tgid: u32,
    /// The entry the next new name takes when none is free.
    pub next: u32,
    /// CLOCK_MONOTONIC ns of the process's latest recorded failure: a
    /// successful open looks at the names only within the window after it.
    pub last_ns: u64,
    pub names: [FailedName; FAILED_NAMES_PER_PROCESS],
}

/// Names a process's table holds; a search of one name through many
/// directories takes one entry (same name, errno and epoch).
pub const FAILED_NAMES_PER_PROCESS: usize = 8;
/// Tables in `FAILED_NAMES` (a power of two): 1.2 MiB of kernel memory.
pub const FAILED_NAMES_SLOTS: u32 = 1 << 13;
pub const FAILED_NAMES_SLOT_MASK: u32 = FAILED_NAMES_SLOTS - 1;
/// Epoch buckets of the found-later counters: an epoch's bucket is reused
/// four epochs later, so userspace has two epochs to read it once it closed.
pub const FOUND_EPOCHS: usize = 4;
/// errno slots of the found-later counters (larger errnos share the last).
pub const FOUND_ERRNO_SLOTS: usize = 128;
/// Longest basename hashed (NAME_MAX + 1 bytes: a longer one is cut).
pub const BASENAME_HASH_MAX: usize = 256;

/// The errno slot of the found-later counters for a failure's errno.
pub const fn found_errno_slot(errno: u64) -> usize {
    if errno < (FOUND_ERRNO_SLOTS - 1) as u64 {
        errno as usize
    } else {
        FOUND_ERRNO_SLOTS - 1
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// One step of the basename hash (FNV-1a).
#[inline(always)]
pub const fn basename_hash_step(hash: u32, byte: u8) -> u32 {
    (hash ^ byte as u32).wrapping_mul(FNV_PRIME)
}

/// The starting value of the basename hash.
pub const BASENAME_HASH_START: u32 = FNV_OFFSET;

/// The hash of a path's last component (after its last `/`), taken over its
/// bytes from the last to the first (so the kernel needs no forward scan),
/// at most `BASENAME_HASH_MAX` of them; `None` for an empty basename (a path
/// that is empty or ends in `/`). The kernel computes the same; this is the
/// reference userspace matches events with.
pub fn basename_hash(path: &[u8]) -> Option<u32> {
    let mut hash = BASENAME_HASH_START;
    let mut taken = 0;
    for &b in path.iter().rev() {
        if b == b'/' || taken == BASENAME_HASH_MAX {
            break;
        }
        hash = basename_hash_step(hash, b);
        taken += 1;
    }
    (taken > 0).then_some(hash)
}

// ---------------------------------------------------------------------------
// Exact per-CPU counters: one element of the `COUNTERS` per-CPU array. Every open
// is counted here whether or not it was streamed; userspace sums over CPUs.
// ---------------------------------------------------------------------------

/// errno values are counted in `errnos[syscall][errno]`; larger ones (never seen
/// from open in practice) land in the last slot. Linux's errnos end at 133
/// (EHWPOISON): 136 slots keep each its own and the per-CPU counters of ten
/// syscalls under the 32 KiB a per-CPU map value may have.
pub const ERRNO_SLOTS: usize = 136;
/// Latency bucket `i` counts opens whose latency in ns has bit length `i`:
/// bucket 0 is 0 ns, bucket i (i >= 1) is [2^(i-1), 2^i) ns.
pub const LATENCY_BUCKETS: usize = 64;

pub const RESULT_OK: usize = 0;
pub const RESULT_FAILED: usize = 1;

/// What the kernel could not do, counted per kind. Nothing is lost silently.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// An anomaly was dropped because the ring buffer was full.
    RingbufFull = 0,
    /// An open's timing was lost because another thread's open, in flight at
    /// the same time, took its `INFLIGHT` slot.
    InflightCollision = 1,
    /// An exit had no matching enter (the open began before attach, or its entry was lost).
    ExitWithoutEnter = 2,
    /// The path of an anomaly could not be read from user memory.
    PathReadFailed = 3,
    /// The path of an anomaly was longer than PATH_MAX - 1 and was cut.
    PathTruncated = 4,
    /// The directory of a relative path could not be read from kernel memory.
    DirReadFailed = 5,
    /// The directory of a relative path was too deep or too long for the kernel
    /// to send; userspace falls back to /proc.
    DirTruncated = 6,
    /// A process forked by a followed command could not be added to the
    /// tracked set (full), so its anomalies are not streamed.
    TrackedFull = 7,
    /// An anomaly was dropped because its process streamed over its fair share
    /// (`Config::source_interval_ns`) while the ring buffer was half full.
    SourceThrottled = 8,
    /// A thread exited with an open in flight whose exit was never seen (its
    /// exit program missed, e.g. a recursion miss in fentry mode): the slot was
    /// freed at thread exit and that open is neither timed nor counted.
    InflightReaped = 9,
    /// A process's table of recent failed names was taken by another process
    /// (same slot) or was full while it still held undecided failures: those
    /// can no longer be found later, so they count as never found.
    FailedNameEvicted = 10,
    /// An open's in-flight entry was still there when its thread began
    /// another open (or an io_uring request was reused): the end of the
    /// earlier one was never seen (its exit program was skipped), so it was
    /// neither timed nor counted. An io_uring open submitted with
    /// `IOSQE_CQE_SKIP_SUCCESS` that posted no completion succeeded: it is
    /// counted as a success then, untimed, and here.
    InflightStale = 11,
    /// An io_uring open could not be tracked from its submission to its
    /// completion (the tracking map was full): not seen, not counted.
    IoUringUntracked = 12,
}

/// Slots of `Counters::losses`; room for reasons yet to come.
pub const LOSS_COUNT: usize = 16;

impl Loss {
    pub const ALL: [Loss; 13] = [
        Loss::RingbufFull,
        Loss::InflightCollision,
        Loss::ExitWithoutEnter,
        Loss::PathReadFailed,
        Loss::PathTruncated,
        Loss::DirReadFailed,
        Loss::DirTruncated,
        Loss::TrackedFull,
        Loss::SourceThrottled,
        Loss::InflightReaped,
        Loss::FailedNameEvicted,
        Loss::InflightStale,
        Loss::IoUringUntracked,
    ];

    /// The `reason` label of `badfd_kernel_events_lost_total`.
    pub const fn name(self) -> &'static str {
        match self {
            Loss::RingbufFull => "ringbuf_full",
            Loss::InflightCollision => "inflight_collision",
            Loss::ExitWithoutEnter => "exit_without_enter",
            Loss::PathReadFailed => "path_read_failed",
            Loss::PathTruncated => "path_truncated",
            Loss::DirReadFailed => "dir_read_failed",
            Loss::DirTruncated => "dir_truncated",
            Loss::TrackedFull => "tracked_full",
            Loss::SourceThrottled => "source_throttled",
            Loss::InflightReaped => "inflight_reaped",
            Loss::FailedNameEvicted => "failed_name_evicted",
            Loss::InflightStale => "inflight_stale",
            Loss::IoUringUntracked => "io_uring_untracked",
        }
    }
}

/// Event-stream counters, indexes into `Counters::stream`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Anomalies written to the ring buffer.
    Submitted = 0,
    /// Anomalies not streamed because a filter (pid, uid, comm, tracked set, cgroup) excluded them.
    Filtered = 1,
    /// Slow successful opens not streamed because of `CONFIG_FAILURES_ONLY`.
    SlowNotStreamed = 2,
    /// Opens whose start was recorded (at syscall entry); with the timed exits
    /// (the latency histogram's count) and the collisions it gives the opens in
    /// flight now.
    Entered = 3,
    /// Opens a signal ended without a result: the open left with a restart
    /// code (-ERESTARTSYS and kin) and its task was being killed. Timed (in
    /// the latency histogram, slow if it took the threshold) and streamed if
    /// slow (`EVENT_INTERRUPTED`), but not in `opens`: no program saw a
    /// result. (One that returned EINTR is a failure with errno EINTR.)
    Interrupted = 4,
    /// Failed opens found later by a successful open of their process.
    FoundLater = 5,
    /// Open attempts a signal interrupted that the kernel restarts (a handler
    /// with `SA_RESTART`, or none): the restart goes on as the same open,
    /// timed from its first entry and counted once, when it ends.
    Restarted = 6,
    /// io_uring open attempts that could not finish without blocking
    /// (-EAGAIN) and that an io_uring worker runs again: the attempt that
    /// ends the request is the open (counted and timed, in fentry mode).
    Retried = 7,
}

/// The kernel-internal codes an interrupted syscall leaves with before the
/// signal is handled (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND,
/// ERESTART_RESTARTBLOCK): never returned to a program.
#[inline(always)]
pub const fn is_restart_code(ret: i64) -> bool {
    matches!(ret, -512 | -513 | -514 | -516)
}

/// Slots of `Counters::stream`; room for counters yet to come.
pub const STREAM_COUNT: usize = 12;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    /// `[syscall][RESULT_OK | RESULT_FAILED]`
    pub opens: [[u64; 2]; SYSCALL_COUNT],
    /// `[syscall][errno]`, failed opens only.
    pub errnos: [[u64; ERRNO_SLOTS]; SYSCALL_COUNT],
    /// Opens at or over the slow threshold, by syscall.
    pub slow: [u64; SYSCALL_COUNT],
    /// log2 latency histogram of every timed open, by syscall.
    pub latency: [[u64; LATENCY_BUCKETS]; SYSCALL_COUNT],
    /// Sum of latencies of every timed open in ns, by syscall.
    pub latency_sum_ns: [u64; SYSCALL_COUNT],
    /// Indexed by `Loss`.
    pub losses: [u64; LOSS_COUNT],
    /// Indexed by `Stream`.
    pub stream: [u64; STREAM_COUNT],
    /// `[epoch bucket][errno slot]`: every failed open, in the bucket of its
    /// epoch, while the found-later classification is on.
    pub failures_by_epoch: [[u64; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
    /// `[epoch bucket][errno slot]`: failures found later, in the bucket of
    /// the failure's epoch.
    pub found_by_epoch: [[u64; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
}

impl Counters {
    pub const ZERO: Counters = Counters {
        opens: [[0; 2]; SYSCALL_COUNT],
        errnos: [[0; ERRNO_SLOTS]; SYSCALL_COUNT],
        slow: [0; SYSCALL_COUNT],
        latency: [[0; LATENCY_BUCKETS]; SYSCALL_COUNT],
        latency_sum_ns: [0; SYSCALL_COUNT],
        losses: [0; LOSS_COUNT],
        stream: [0; STREAM_COUNT],
        failures_by_epoch: [[0; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
        found_by_epoch: [[0; FOUND_ERRNO_SLOTS]; FOUND_EPOCHS],
    };

    /// Opens whose start is recorded and whose end has not come yet: entered,
    /// less each way an entry ends: timed at its end (signal-ended ones too),
    /// its slot taken by another thread, its thread gone without its exit
    /// seen, found stale by its thread's next open, or an io_uring attempt
    /// handed to a worker. An exit that finds no entry of its own (counted as
    /// `exit_without_enter`, whatever its result) ends none, so it cannot
    /// move the gauge; a restarted open keeps its entry.
    pub fn inflight(&self) -> u64 {
        let timed: u64 = self.latency.iter().flatten().sum();
        self.stream[Stream::Entered as usize]
            .saturating_sub(timed)
            .saturating_sub(self.losses[Loss::InflightCollision as usize])
            .saturating_sub(self.losses[Loss::InflightReaped as usize])
            .saturating_sub(self.losses[Loss::InflightStale as usize])
            .saturating_sub(self.stream[Stream::Retried as usize])
    }

    /// Adds another CPU's counters into these.
    pub fn accumulate(&mut self, other: &Counters) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.wrapping_add(*y);
            }
        }
        for s in 0..SYSCALL_COUNT {
            add(&mut self.opens[s], &other.opens[s]);
            add(&mut self.errnos[s], &other.errnos[s]);
            add(&mut self.latency[s], &other.latency[s]);
        }
        add(&mut self.slow, &other.slow);
        add(&mut self.latency_sum_ns, &other.latency_sum_ns);
        add(&mut self.losses, &other.losses);
        add(&mut self.stream, &other.stream);
        for b in 0..FOUND_EPOCHS {
            add(&mut self.failures_by_epoch[b], &other.failures_by_epoch[b]);
            add(&mut self.found_by_epoch[b], &other.found_by_epoch[b]);
        }
    }
}

/// Latency bucket of `ns`: its bit length, capped at the last bucket.
#[inline(always)]
pub fn latency_bucket(ns: u64) -> usize {
    let bits = (64 - ns.leading_zeros()) as usize;
    if bits >= LATENCY_BUCKETS {
        LATENCY_BUCKETS - 1
    } else {
        bits
    }
}

/// Exclusive upper bound in ns of latency bucket `i` (bucket 0 holds only 0 ns).
pub const fn latency_bucket_upper_ns(i: usize) -> u64 {
    if i == 0 {
        1
    } else if i >= 64 {
        u64::MAX
    } else {
        1u64 << i
    }
}

// Map names, as the eBPF object defines them.
pub const MAP_CONFIG: &str = "CONFIG";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_INFLIGHT: &str = "INFLIGHT";
pub const MAP_TRACKED: &str = "TRACKED";
pub const MAP_DIR_SCRATCH: &str = "DIR_SCRATCH";
pub const MAP_CGROUP_FILTER: &str = "CGROUP_FILTER";
pub const MAP_SOURCES: &str = "SOURCES";
pub const MAP_FAILED_NAMES: &str = "FAILED_NAMES";
pub const MAP_URING_REQS: &str = "URING_REQS";
pub const MAP_KERNEL_PATHS: &str = "KERNEL_PATHS";

/// Capacity of `URING_REQS`: io_uring opens submitted and not yet completed
/// (tracepoint mode); one that finds it full is counted
/// (`Loss::IoUringUntracked`).
pub const URING_REQS_CAPACITY: u32 = 4096;
/// Slots of `KERNEL_PATHS` (a power of two), where the kernel's copy of an
/// open's path is kept until the open's end, for the opens whose path is read
/// after the kernel freed it: a failed open syscall in fentry mode (copied at
/// the end of the path walk, `do_filp_open`, so that a path rewritten by
/// another thread meanwhile is not what is reported), an io_uring open on
/// kernels whose `struct filename` no longer holds the user's pointer (Linux
/// 7.x; copied when the request is issued): 4 MiB. Taken round-robin, so a
/// slot is reused only after this many later copies; an open whose slot was
/// reused meanwhile has its path unread, counted (`Loss::PathReadFailed`).
/// One slot where neither applies.
pub const KERNEL_PATH_SLOTS: u32 = 1024;

/// Capacity of `SOURCES`, `SOURCE_CGROUPS` and `SOURCE_UIDS`, the fairness
/// state of processes, cgroups and uids (LRUs: the least recently streaming
/// are forgotten first, and start again with a full burst).
pub const SOURCES_CAPACITY: u32 = 8192;

/// Capacity of `TRACKED`: processes followed by `badfd trace -- command`.
pub const TRACKED_CAPACITY: u32 = 16384;
/// Capacity of `CGROUP_FILTER`: cgroups (with their subtrees) watched or ignored.
pub const CGROUP_FILTER_CAPACITY: u32 = 4096;
/// Default ring buffer size (bytes, a power of two); userspace may resize it at load.
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 * 1024 * 1024;

/// Once a batch waits in the ring buffer (`Config::wakeup_bytes`), a CPU wakes
/// the reader at most once per this many ns. A wakeup is an interrupt on the
/// producing CPU (irq_work), and without this bound every event past the
/// watermark makes one until the reader has drained: ~100 ns per failing open
/// on average in `bench/opens` here. A woken reader drains everything, so
/// events wait at most this long longer.
pub const WAKEUP_MIN_INTERVAL_NS: u64 = 100_000;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data with no pointers and no padding bytes read as
    // anything but integers.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Inflight {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::FailedNames {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_bit_lengths() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 1);
        assert_eq!(latency_bucket(2), 2);
        assert_eq!(latency_bucket(3), 2);
        assert_eq!(latency_bucket(1023), 10);
        assert_eq!(latency_bucket(1024), 11);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        for i in 1..LATENCY_BUCKETS - 1 {
            let upper = latency_bucket_upper_ns(i);
            assert_eq!(latency_bucket(upper - 1), i);
            assert_eq!(latency_bucket(upper), i + 1);
        }
    }

    #[test]
    fn each_architecture_numbers_exactly_its_own_syscalls() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
            // Every number below 1024 (past every table's end), against the list.
            let mut numbered = [false; SYSCALL_COUNT];
            for nr in 0..1024 {
                if let Some(s) = arch.syscall_from_nr(nr) {
                    assert!(!numbered[s as usize], "{} numbers {} twice", arch.name(), s.name());
                    numbered[s as usize] = true;
                }
            }
            for s in Syscall::ALL {
                assert_eq!(numbered[s as usize], arch.syscalls().contains(&s), "{} {}", arch.name(), s.name());
            }
            assert_eq!(arch.syscall_from_nr(u64::MAX), None, "NO_SYSCALL (-1) is no open");
        }
        assert_eq!(Arch::from_name("riscv64"), None);
        assert_eq!(Arch::Aarch64.syscalls(), &[Syscall::Openat, Syscall::Openat2, Syscall::Execve, Syscall::Execveat]);
    }

    #[test]
    fn config_flags_are_distinct_bits() {
        let flags =
            [CONFIG_FAILURES_ONLY, CONFIG_TRACKED_ONLY, CONFIG_FOUND_NOTICES, CONFIG_STREAM_EXECS, CONFIG_STREAM_OPENS, CONFIG_UNTIMED];
        for (i, a) in flags.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            for b in &flags[i + 1..] {
                assert_eq!(a & b, 0, "{a:#x} and {b:#x} share a bit");
            }
        }
    }

    #[test]
    fn layouts_are_stable() {
        assert_eq!(EVENT_HEADER_SIZE, 112);
        assert_eq!(EVENT_HEADER_SIZE % 8, 0);
        assert_eq!(core::mem::size_of::<Inflight>(), 40);
        assert!(INFLIGHT_SLOTS.is_power_of_two());
        assert_eq!(core::mem::size_of::<Config>(), 184 + 72 + 80 + 16);
        assert_eq!(core::mem::size_of::<TaskOffsets>(), 72);
        assert_eq!(core::mem::size_of::<IoUringOffsets>(), 80);
        assert_eq!(core::mem::size_of::<FilenameOffsets>(), 16);
        assert_eq!(core::mem::size_of::<FailedName>(), 16);
        assert_eq!(core::mem::size_of::<FailedNames>(), 16 + 16 * FAILED_NAMES_PER_PROCESS);
        assert_eq!(core::mem::size_of::<KernelOffsets>(), 96);
        assert!(Loss::ALL.len() <= LOSS_COUNT);
        for (i, loss) in Loss::ALL.iter().enumerate() {
            assert_eq!(*loss as usize, i, "Loss::ALL is in index order");
        }
        // Per-CPU scratch buffers too.
        assert!(core::mem::size_of::<EventBuffer>() <= 32 * 1024);
        // Per-CPU map values are limited to 32 KiB: twelve syscalls' rows
        // (ERRNO_SLOTS 136) leave 4.7 KiB of room.
        assert!(core::mem::size_of::<Counters>() <= 32 * 1024);
        assert_eq!(core::mem::size_of::<Counters>(), 28_000);
    }

    #[test]
    fn source_limit_is_one_second_of_burst() {
        assert_eq!(source_limit(0), (0, 0));
        assert_eq!(source_limit(1000), (1_000_000, 1_000_000_000));
        assert_eq!(source_limit(3), (333_333_333, 999_999_999));
        assert_eq!(Config::DEFAULT.source_interval_ns, 1_000_000);
    }

    #[test]
    fn basename_hash_covers_the_last_component_only() {
        let h = basename_hash(b"libfoo.so.1").unwrap();
        assert_eq!(basename_hash(b"/usr/lib/x86_64-linux-gnu/libfoo.so.1"), Some(h));
        assert_eq!(basename_hash(b"glibc-hwcaps/x86-64-v3/libfoo.so.1"), Some(h));
        assert_ne!(basename_hash(b"/usr/lib/libfoo.so.2"), Some(h));
        assert_eq!(basename_hash(b""), None);
        assert_eq!(basename_hash(b"/etc/"), None);
        // FNV-1a of "a" (one byte, so the direction does not matter).
        assert_eq!(basename_hash(b"/x/a"), Some(0xe40c_292c));
        // Only the last 256 bytes of an overlong name count.
        let long = [b'x'; 300];
        assert_eq!(basename_hash(&long), basename_hash(&long[..256]));
        assert_eq!(found_errno_slot(2), 2);
        assert_eq!(found_errno_slot(4000), FOUND_ERRNO_SLOTS - 1);
    }

    #[test]
    fn the_inflight_gauge_counts_every_way_an_entry_ends_and_nothing_else() {
        let mut c = Counters::ZERO;
        c.stream[Stream::Entered as usize] = 10;
        c.latency[Syscall::Openat as usize][5] = 2;
        c.latency[Syscall::IoUringOpenat as usize][30] = 1;
        c.losses[Loss::InflightCollision as usize] = 1;
        c.losses[Loss::InflightReaped as usize] = 1;
        c.losses[Loss::InflightStale as usize] = 1;
        c.stream[Stream::Retried as usize] = 1;
        assert_eq!(c.inflight(), 3);
        // Exits that found no entry of their own end none, whatever ended them.
        c.stream[Stream::Interrupted as usize] = 5;
        c.stream[Stream::Restarted as usize] = 5;
        c.losses[Loss::ExitWithoutEnter as usize] = 5;
        assert_eq!(c.inflight(), 3);
    }

    #[test]
    fn syscall_numbers_round_trip() {
        for (i, s) in Syscall::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i, "Syscall::ALL is in index order");
            assert_eq!(Syscall::from_u8(s as u8), Some(s));
        }
        assert_eq!(Syscall::from_u8(SYSCALL_COUNT as u8), None);
        for a in Syscall::ALL {
            for b in Syscall::ALL {
                assert!(a == b || a.name() != b.name(), "every syscall label is its own");
            }
        }
        assert_eq!(Syscall::from_x86_64_nr(257), Some(Syscall::Openat));
        assert_eq!(Syscall::from_x86_64_nr(39), None);
    }
}

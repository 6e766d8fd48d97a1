//! Loading and attaching the kernel program, and the handles userspace keeps on
//! it: the live config, the exact counters, the event ring buffer, the set of
//! followed processes.

use std::{
    fmt,
    os::fd::{AsFd, AsRawFd},
    path::Path,
    time::Duration,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use exporter_common::{
    Config, Counters, Syscall, CGROUP_FILTER_IGNORE, CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH,
    MAP_CGROUP_FILTER, MAP_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_INFLIGHT, MAP_TRACKED,
};
use tokio::io::unix::AsyncFd;

use crate::preflight;

/// The compiled eBPF object, built by build.rs from `exporter-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/badfd-ebpf"));

/// The kernel function every open syscall reaches, for fentry/fexit.
pub const COMMON_OPEN_FUNCTION: &str = "do_sys_openat2";

/// How the programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// fentry/fexit on `do_sys_openat2`: no cost on other syscalls.
    Fentry,
    /// `syscalls/sys_{enter,exit}_*` tracepoints: every kernel, but every syscall
    /// of every process takes the slow path while attached.
    Tracepoint,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Fentry => "fentry",
            AttachMode::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which attach mode to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachPreference {
    /// fentry/fexit where the kernel allows it, else tracepoints.
    #[default]
    Auto,
    Fentry,
    Tracepoint,
}

/// How the kernel applies the cgroup filter map (`Probe::add_cgroup`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupFilterMode {
    /// The map is not consulted: every cgroup is streamed.
    #[default]
    Off,
    /// Only tasks in a listed cgroup or below one are streamed.
    Watch,
    /// Tasks in a listed cgroup or below one are not streamed.
    Ignore,
}

impl CgroupFilterMode {
    pub fn to_kernel(self) -> u32 {
        match self {
            CgroupFilterMode::Off => CGROUP_FILTER_OFF,
            CgroupFilterMode::Watch => CGROUP_FILTER_WATCH,
            CgroupFilterMode::Ignore => CGROUP_FILTER_IGNORE,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub attach: AttachPreference,
    /// Ring buffer size in bytes; rounded up to a power of two of at least a page.
    pub ringbuf_bytes: u32,
    /// Attach the fork/exit tracepoints that fill the tracked-process set.
    pub follow_forks: bool,
    /// Time every open (entry and exit hooked). `false` (`--no-timing`): only
    /// the exit is hooked; failures are counted and streamed, nothing is timed
    /// (no latency histogram, no slow opens), and each open costs about half.
    pub timing: bool,
    pub config: Config,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            attach: AttachPreference::Auto,
            ringbuf_bytes: exporter_common::DEFAULT_RINGBUF_BYTES,
            follow_forks: false,
            timing: true,
            config: Config::DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("program {program} failed to load or attach: {reason}")]
    Program { program: &'static str, reason: String },
    #[error("fentry/fexit on {COMMON_OPEN_FUNCTION} is not available on this kernel ({0}); use --attach auto or tracepoint")]
    FentryUnavailable(String),
    #[error("tracepoint syscalls/{0} does not exist on this kernel; is CONFIG_FTRACE_SYSCALLS on?")]
    TracepointMissing(&'static str),
    #[error("map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
    #[error("map {0} is missing from the eBPF object")]
    MapMissing(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The kernel program, loaded and attached. Dropping it detaches everything.
pub struct Probe {
    ebpf: Ebpf,
    mode: AttachMode,
    /// Why fentry was not used, when the preference was `auto` and it failed.
    fallback_reason: Option<String>,
    /// Why `mode` was chosen, for the startup line.
    mode_reason: String,
    /// Syscalls whose tracepoints the kernel lacks (openat2 before 5.6).
    missing_syscalls: Vec<Syscall>,
    /// Why the kernel cannot resolve relative paths' directories (no BTF offsets).
    kernel_dir_unavailable: Option<String>,
    /// The offsets found at load (`KernelOffsets::NONE` if none were).
    kernel_offsets: exporter_common::KernelOffsets,
    config: Config,
    /// Whether opens are timed (entry programs attached).
    timed: bool,
    /// Why opens are timed although `--no-timing` asked otherwise.
    untimed_refused: Option<String>,
}

/// The exit-only programs of `--no-timing`, in place of the enter/exit pairs.
const UNTIMED_TRACEPOINT_PROGRAMS: [(&str, &str, Syscall); 4] = [
    ("sys_exit_open_untimed", "sys_exit_open", Syscall::Open),
    ("sys_exit_openat_untimed", "sys_exit_openat", Syscall::Openat),
    ("sys_exit_openat2_untimed", "sys_exit_openat2", Syscall::Openat2),
    ("sys_exit_creat_untimed", "sys_exit_creat", Syscall::Creat),
];
const UNTIMED_FEXIT_PROGRAM: &str = "fexit_do_sys_openat2_untimed";

const TRACEPOINT_PROGRAMS: [(&str, Syscall, bool); 8] = [
    ("sys_enter_open", Syscall::Open, true),
    ("sys_exit_open", Syscall::Open, false),
    ("sys_enter_openat", Syscall::Openat, true),
    ("sys_exit_openat", Syscall::Openat, false),
    ("sys_enter_openat2", Syscall::Openat2, true),
    ("sys_exit_openat2", Syscall::Openat2, false),
    ("sys_enter_creat", Syscall::Creat, true),
    ("sys_exit_creat", Syscall::Creat, false),
];

impl Probe {
    /// Checks the host, loads the object, attaches in the best mode allowed and
    /// writes the initial config.
    pub fn load(options: &ProbeOptions) -> Result<Probe, ProbeError> {
        let tracefs = preflight::check()?;
        raise_memlock_limit();

        let ringbuf_bytes = ringbuf_size(options.ringbuf_bytes);
        let cgroup_ancestors = ancestor_cgroup_helper_available();
        if !cgroup_ancestors {
            tracing::info!("this kernel does not let tracing programs see a task's ancestor cgroups: the cgroup filter matches each task's own cgroup only");
        }
        // The parsed kernel BTF (~9 MiB here) is needed only while loading and
        // attaching: a local, freed before the exporter settles to its idle size.
        let kernel_btf = Btf::from_sys_fs().ok();
        let ebpf = EbpfLoader::new()
            .btf(kernel_btf.as_ref())
            .map_max_entries(MAP_EVENTS, ringbuf_bytes)
            .override_global("CGROUP_ANCESTORS", &(cgroup_ancestors as u8), true)
            .override_global("RINGBUF_BYTES", &ringbuf_bytes, true)
            .load(EBPF_OBJECT)
            .map_err(ProbeError::Load)?;

        let mut config = options.config;
        // Offsets for resolving relative paths' directories in the kernel;
        // without them the kernel leaves it to /proc, said once here.
        let kernel_dir_unavailable = match crate::btf_offsets::running_kernel_offsets() {
            Ok(offsets) => {
                config.offsets = offsets;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "relative paths will be resolved from /proc, not in the kernel");
                // The mount namespace number needs only three of them.
                config.offsets = crate::btf_offsets::running_mnt_ns_offsets()
                    .unwrap_or(exporter_common::KernelOffsets::NONE);
                Some(e.to_string())
            }
        };
        if options.follow_forks {
            config.fork_child_pid_offset = preflight::fork_child_pid_offset(&tracefs)?;
        }
        let mut probe = Probe {
            ebpf,
            mode: AttachMode::Tracepoint,
            fallback_reason: None,
            mode_reason: String::new(),
            missing_syscalls: Vec::new(),
            kernel_dir_unavailable,
            kernel_offsets: config.offsets,
            config,
            timed: true,
            untimed_refused: None,
        };
        // The config must be in place before the first event runs.
        probe.set_config(config)?;

        let untimed = !options.timing;
        match options.attach {
            AttachPreference::Fentry => {
                if !(untimed && probe.attach_fentry_untimed(kernel_btf.as_ref())) {
                    probe.attach_fentry(kernel_btf.as_ref()).map_err(ProbeError::FentryUnavailable)?;
                }
                probe.mode = AttachMode::Fentry;
                probe.mode_reason = "requested with --attach".into();
            }
            AttachPreference::Tracepoint => {
                if !(untimed && probe.attach_tracepoints_untimed(&tracefs)?) {
                    probe.attach_tracepoints(&tracefs)?;
                }
                probe.mode_reason = "requested with --attach".into();
            }
            AttachPreference::Auto => {
                let fentry = if untimed && probe.attach_fentry_untimed(kernel_btf.as_ref()) {
                    Ok(())
                } else {
                    probe.attach_fentry(kernel_btf.as_ref())
                };
                match fentry {
                    Ok(()) => {
                        probe.mode = AttachMode::Fentry;
                        probe.mode_reason = format!("fentry/fexit on {COMMON_OPEN_FUNCTION} allowed");
                    }
                    Err(reason) => {
                        tracing::info!(%reason, "fentry/fexit unavailable, using syscall tracepoints");
                        if !(untimed && probe.attach_tracepoints_untimed(&tracefs)?) {
                            probe.attach_tracepoints(&tracefs)?;
                        }
                        probe.mode_reason = format!("fentry refused: {reason}");
                        probe.fallback_reason = Some(reason);
                    }
                }
            }
        }
        if untimed && probe.timed {
            let reason = probe.untimed_refused.clone().unwrap_or_default();
            tracing::warn!(%reason, "--no-timing is not possible on this kernel (the exit-only programs need bpf_task_pt_regs, Linux 5.15): timing every open as usual");
        }
        // Thread exits always: they free the in-flight slot of a thread that
        // died with an open whose exit was never seen (and untrack followed ids).
        attach_tracepoint(&mut probe.ebpf, "sched_process_exit", "sched", "sched_process_exit")?;
        if options.follow_forks {
            attach_tracepoint(&mut probe.ebpf, "sched_process_fork", "sched", "sched_process_fork")?;
        }
        Ok(probe)
    }

    /// Tries fentry/fexit; on failure unloads what loaded and says why.
    fn attach_fentry(&mut self, btf: Option<&Btf>) -> Result<(), String> {
        let btf = btf.ok_or_else(|| "no kernel BTF at /sys/kernel/btf/vmlinux".to_string())?;
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            let fentry: &mut FEntry = program(&mut self.ebpf, "fentry_do_sys_openat2")?;
            fentry.load(COMMON_OPEN_FUNCTION, btf)?;
            let fexit: &mut FExit = program(&mut self.ebpf, "fexit_do_sys_openat2")?;
            fexit.load(COMMON_OPEN_FUNCTION, btf)?;
            // Attach exit first so no entry is left without its exit.
            fexit.attach()?;
            let fentry: &mut FEntry = program(&mut self.ebpf, "fentry_do_sys_openat2")?;
            fentry.attach()?;
            Ok(())
        })();
        if let Err(error) = result {
            for name in ["fentry_do_sys_openat2", "fexit_do_sys_openat2"] {
                if let Some(p) = self.ebpf.program_mut(name) {
                    let _ = match p {
                        aya::programs::Program::FEntry(p) => p.unload(),
                        aya::programs::Program::FExit(p) => p.unload(),
                        _ => Ok(()),
                    };
                }
            }
            return Err(describe_program_error(&error));
        }
        Ok(())
    }

    /// `--no-timing` with fentry: fexit alone. `false` (with the reason kept)
    /// where it does not load; the caller then attaches the timed pair.
    fn attach_fentry_untimed(&mut self, btf: Option<&Btf>) -> bool {
        let Some(btf) = btf else {
            self.untimed_refused = Some("no kernel BTF at /sys/kernel/btf/vmlinux".into());
            return false;
        };
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            let fexit: &mut FExit = program(&mut self.ebpf, UNTIMED_FEXIT_PROGRAM)?;
            fexit.load(COMMON_OPEN_FUNCTION, btf)?;
            fexit.attach()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.timed = false;
                self.untimed_refused = None;
                true
            }
            Err(error) => {
                if let Ok(p) = program::<FExit>(&mut self.ebpf, UNTIMED_FEXIT_PROGRAM) {
                    let _ = p.unload();
                }
                self.untimed_refused = Some(describe_program_error(&error));
                false
            }
        }
    }

    /// `--no-timing` with tracepoints: the exit-only programs, no entry
    /// programs. `Ok(false)` (with the reason kept) where they do not load; the
    /// caller then attaches the timed pairs. All load before any attaches.
    fn attach_tracepoints_untimed(&mut self, tracefs: &Path) -> Result<bool, ProbeError> {
        let present = |tp: &str| tracefs.join("events/syscalls").join(tp).exists();
        for (program_name, tp, syscall) in UNTIMED_TRACEPOINT_PROGRAMS {
            if !present(tp) && syscall != Syscall::Openat2 {
                return Err(ProbeError::TracepointMissing(tp));
            }
            if !present(tp) {
                continue;
            }
            let loaded = program::<TracePoint>(&mut self.ebpf, program_name).and_then(|p| p.load());
            if let Err(error) = loaded {
                for (name, _, _) in UNTIMED_TRACEPOINT_PROGRAMS {
                    if let Ok(p) = program::<TracePoint>(&mut self.ebpf, name) {
                        let _ = p.unload();
                    }
                }
                self.untimed_refused = Some(describe_program_error(&error));
                return Ok(false);
            }
        }
        for (program_name, tp, syscall) in UNTIMED_TRACEPOINT_PROGRAMS {
            if !present(tp) {
                tracing::warn!("this kernel has no openat2 (added in 5.6); watching open, openat and creat only");
                self.missing_syscalls.push(syscall);
                continue;
            }
            let wrap = |source: aya::programs::ProgramError| ProbeError::Program { program: program_name, reason: describe_program_error(&source) };
            let p: &mut TracePoint = program(&mut self.ebpf, program_name).map_err(wrap)?;
            p.attach("syscalls", tp).map_err(wrap)?;
        }
        self.mode = AttachMode::Tracepoint;
        self.timed = false;
        self.untimed_refused = None;
        Ok(true)
    }

    /// Whether opens are timed: `false` with `--no-timing` where the kernel
    /// allows it (then there is no latency, no slow open, no in-flight entry).
    pub fn timed(&self) -> bool {
        self.timed
    }

    /// Why `--no-timing` was not possible, if it was asked for and refused.
    pub fn untimed_refused(&self) -> Option<&str> {
        self.untimed_refused.as_deref()
    }

    fn attach_tracepoints(&mut self, tracefs: &Path) -> Result<(), ProbeError> {
        // Exits before enters, so no entry is left without its exit.
        for enter in [false, true] {
            for (name, syscall, is_enter) in TRACEPOINT_PROGRAMS {
                if is_enter != enter || self.missing_syscalls.contains(&syscall) {
                    continue;
                }
                if !tracefs.join("events/syscalls").join(name).exists() {
                    if syscall == Syscall::Openat2 {
                        tracing::warn!("this kernel has no openat2 (added in 5.6); watching open, openat and creat only");
                        self.missing_syscalls.push(syscall);
                        continue;
                    }
                    return Err(ProbeError::TracepointMissing(name));
                }
                attach_tracepoint(&mut self.ebpf, name, "syscalls", name)?;
            }
        }
        self.mode = AttachMode::Tracepoint;
        Ok(())
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// One line for the startup log: the attach mode, the kernel and why this
    /// mode, e.g. `mode=tracepoint kernel=6.18.44 reason="fentry refused: ..."`.
    pub fn describe(&self) -> String {
        let mut line = format!("mode={} kernel={} reason={:?}", self.mode, kernel_release(), self.mode_reason);
        if !self.timed {
            line.push_str(" timing=off");
        } else if let Some(why) = &self.untimed_refused {
            line.push_str(&format!(" timing=on untimed_refused={why:?}"));
        }
        if !self.missing_syscalls.is_empty() {
            let names: Vec<&str> = self.missing_syscalls.iter().map(|s| s.name()).collect();
            line.push_str(&format!(" missing_syscalls={}", names.join(",")));
        }
        line
    }

    /// How many times the kernel skipped one of badfd's programs because that
    /// program was already running on the CPU (`recursion_misses`, Linux 5.12+;
    /// 0 before). fentry programs run preemptible: while one is preempted, the
    /// same program does not run for other tasks on that CPU, so their opens are
    /// neither counted nor streamed; this is how many.
    pub fn missed_runs(&self) -> u64 {
        self.ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok())
            .map(|fd| recursion_misses(fd.as_fd()))
            .sum()
    }

    /// Why fentry was not used (auto mode only).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    pub fn missing_syscalls(&self) -> &[Syscall] {
        &self.missing_syscalls
    }

    /// Whether the kernel sends the directory of relative paths (`Resolution::Kernel`).
    pub fn kernel_dir_resolution(&self) -> bool {
        self.config.offsets.valid != 0
    }

    /// Turns the kernel's directory walk off (relative paths are then resolved
    /// from /proc, while the process lives) or back on, without reattaching.
    /// Turning it on does nothing where the offsets were not found at load.
    pub fn set_kernel_dir_resolution(&mut self, on: bool) -> Result<(), ProbeError> {
        let mut config = self.config;
        // Only `valid` changes: the kernel may read the config while it is
        // written, and must never see a valid flag with offsets half replaced.
        config.offsets = self.kernel_offsets;
        if !on {
            config.offsets.valid = 0;
        }
        let map = self.ebpf.map_mut(MAP_CONFIG).ok_or(ProbeError::MapMissing(MAP_CONFIG))?;
        let mut array: Array<_, Config> = Array::try_from(map).map_err(|e| ProbeError::Map(MAP_CONFIG, e))?;
        array.set(0, config, 0).map_err(|e| ProbeError::Map(MAP_CONFIG, e))?;
        self.config = config;
        Ok(())
    }

    /// Why the kernel does not resolve relative paths' directories, if it does not.
    pub fn kernel_dir_unavailable_reason(&self) -> Option<&str> {
        self.kernel_dir_unavailable.as_deref()
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Replaces the live config; the kernel uses it from its next exit on.
    /// The per-process fairness limit is kept as loaded (`set_source_rate`
    /// changes it), so a reload of other settings does not reset a flag.
    pub fn set_config(&mut self, mut config: Config) -> Result<(), ProbeError> {
        // The fork offset and kernel struct offsets belong to the load, not to callers.
        config.fork_child_pid_offset = self.config.fork_child_pid_offset;
        config.offsets = self.config.offsets;
        config.source_interval_ns = self.config.source_interval_ns;
        config.source_burst_ns = self.config.source_burst_ns;
        self.write_config(config)
    }

    /// Per-process fairness from now on: once the ring buffer is half full,
    /// each process streams at most `rate` anomalies per second (after a burst
    /// of one second's worth); the rest are counted as `source_throttled`.
    /// 0 turns the limit off.
    pub fn set_source_rate(&mut self, rate: u32) -> Result<(), ProbeError> {
        let mut config = self.config;
        (config.source_interval_ns, config.source_burst_ns) = exporter_common::source_limit(rate);
        self.write_config(config)
    }

    fn write_config(&mut self, config: Config) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(MAP_CONFIG).ok_or(ProbeError::MapMissing(MAP_CONFIG))?;
        let mut array: Array<_, Config> = Array::try_from(map).map_err(|e| ProbeError::Map(MAP_CONFIG, e))?;
        array.set(0, config, 0).map_err(|e| ProbeError::Map(MAP_CONFIG, e))?;
        self.config = config;
        Ok(())
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, ProbeError> {
        let map = self.ebpf.map(MAP_COUNTERS).ok_or(ProbeError::MapMissing(MAP_COUNTERS))?;
        let array: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(map).map_err(|e| ProbeError::Map(MAP_COUNTERS, e))?;
        let per_cpu = array.get(&0, 0).map_err(|e| ProbeError::Map(MAP_COUNTERS, e))?;
        let mut total = Counters::ZERO;
        for cpu in per_cpu.iter() {
            total.accumulate(cpu);
        }
        Ok(total)
    }

    /// Opens in progress right now (see `Counters::inflight`).
    pub fn inflight_len(&self) -> Result<usize, ProbeError> {
        Ok(self.counters()?.inflight() as usize)
    }

    /// Follows `pid` and, through the fork tracepoint, every process it starts.
    pub fn track_pid(&mut self, pid: u32) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(MAP_TRACKED).ok_or(ProbeError::MapMissing(MAP_TRACKED))?;
        let mut hash: HashMap<_, u32, u8> = HashMap::try_from(map).map_err(|e| ProbeError::Map(MAP_TRACKED, e))?;
        hash.insert(pid, 1, 0).map_err(|e| ProbeError::Map(MAP_TRACKED, e))
    }

    /// How the kernel uses the cgroup filter map, from its next exit on: off,
    /// stream only listed cgroups (and below), or none of them.
    pub fn set_cgroup_filter_mode(&mut self, mode: CgroupFilterMode) -> Result<(), ProbeError> {
        let mut config = self.config;
        config.cgroup_filter = mode.to_kernel();
        self.set_config(config)
    }

    /// Adds a cgroup (v2 id, the inode number of its directory) and its subtree
    /// to the cgroup filter.
    pub fn add_cgroup(&mut self, cgroup_id: u64) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(MAP_CGROUP_FILTER).ok_or(ProbeError::MapMissing(MAP_CGROUP_FILTER))?;
        let mut hash: HashMap<_, u64, u8> =
            HashMap::try_from(map).map_err(|e| ProbeError::Map(MAP_CGROUP_FILTER, e))?;
        hash.insert(cgroup_id, 1, 0).map_err(|e| ProbeError::Map(MAP_CGROUP_FILTER, e))
    }

    /// Adds the cgroup v2 directory `dir` (e.g. `/sys/fs/cgroup/system.slice/docker-<id>.scope`);
    /// returns its id.
    pub fn add_cgroup_path(&mut self, dir: &Path) -> Result<u64, ProbeError> {
        let id = crate::containers::cgroup_id_of_dir(dir)?;
        self.add_cgroup(id)?;
        Ok(id)
    }

    /// Removes a cgroup from the filter; `false` if it was not in it.
    pub fn remove_cgroup(&mut self, cgroup_id: u64) -> Result<bool, ProbeError> {
        let map = self.ebpf.map_mut(MAP_CGROUP_FILTER).ok_or(ProbeError::MapMissing(MAP_CGROUP_FILTER))?;
        let mut hash: HashMap<_, u64, u8> =
            HashMap::try_from(map).map_err(|e| ProbeError::Map(MAP_CGROUP_FILTER, e))?;
        match hash.remove(&cgroup_id) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            // aya reports a delete of a missing key as the syscall's ENOENT.
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(ProbeError::Map(MAP_CGROUP_FILTER, e)),
        }
    }

    /// Removes the cgroup v2 directory `dir` from the filter; `false` if it was not in it.
    pub fn remove_cgroup_path(&mut self, dir: &Path) -> Result<bool, ProbeError> {
        let id = crate::containers::cgroup_id_of_dir(dir)?;
        self.remove_cgroup(id)
    }

    /// The cgroup ids in the filter.
    pub fn cgroups(&self) -> Result<Vec<u64>, ProbeError> {
        let map = self.ebpf.map(MAP_CGROUP_FILTER).ok_or(ProbeError::MapMissing(MAP_CGROUP_FILTER))?;
        let hash: HashMap<_, u64, u8> = HashMap::try_from(map).map_err(|e| ProbeError::Map(MAP_CGROUP_FILTER, e))?;
        hash.keys().map(|k| k.map_err(|e| ProbeError::Map(MAP_CGROUP_FILTER, e))).collect()
    }

    /// Tests only: writes an in-flight entry for `tid` as its syscall entry
    /// would, as if its exit were then missed (the kernel cannot be made to
    /// miss one on demand), to check that the thread's exit reaps it.
    #[doc(hidden)]
    pub fn plant_inflight_entry(&mut self, tid: u32, start_ns: u64) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(MAP_INFLIGHT).ok_or(ProbeError::MapMissing(MAP_INFLIGHT))?;
        let mut array: Array<_, exporter_common::Inflight> =
            Array::try_from(map).map_err(|e| ProbeError::Map(MAP_INFLIGHT, e))?;
        let entry = exporter_common::Inflight {
            start_ns,
            path_ptr: 0,
            open_flags: 0,
            mode: 0,
            dirfd: exporter_common::AT_FDCWD,
            tid,
            syscall: Syscall::Openat as u8,
            _pad: [0; 3],
        };
        array.set(tid & exporter_common::INFLIGHT_SLOT_MASK, entry, 0).map_err(|e| ProbeError::Map(MAP_INFLIGHT, e))
    }

    /// Whether `tid` has an entry in flight now.
    pub fn has_inflight_entry(&self, tid: u32) -> Result<bool, ProbeError> {
        let map = self.ebpf.map(MAP_INFLIGHT).ok_or(ProbeError::MapMissing(MAP_INFLIGHT))?;
        let array: Array<_, exporter_common::Inflight> =
            Array::try_from(map).map_err(|e| ProbeError::Map(MAP_INFLIGHT, e))?;
        let entry = array.get(&(tid & exporter_common::INFLIGHT_SLOT_MASK), 0).map_err(|e| ProbeError::Map(MAP_INFLIGHT, e))?;
        Ok(entry.tid == tid)
    }

    /// Takes the event ring buffer; call once.
    pub fn take_events(&mut self) -> Result<EventReader, ProbeError> {
        let map = self.ebpf.take_map(MAP_EVENTS).ok_or(ProbeError::MapMissing(MAP_EVENTS))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Map(MAP_EVENTS, e))?;
        Ok(EventReader { ring })
    }
}

/// Whether this kernel lets a tracepoint program call
/// `bpf_get_current_ancestor_cgroup_id` (older kernels allow it only to other
/// program types): loads a four-instruction program that calls it.
pub fn ancestor_cgroup_helper_available() -> bool {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
    const BPF_FUNC_GET_CURRENT_ANCESTOR_CGROUP_ID: i32 = 123;
    // struct bpf_insn: code, dst_reg:4 | src_reg:4, off, imm.
    #[repr(C)]
    struct Insn(u8, u8, i16, i32);
    let insns = [
        Insn(0xb7, 1, 0, 0),                                       // r1 = 0 (the root's level)
        Insn(0x85, 0, 0, BPF_FUNC_GET_CURRENT_ANCESTOR_CGROUP_ID), // call
        Insn(0xb7, 0, 0, 0),                                       // r0 = 0
        Insn(0x95, 0, 0, 0),                                       // exit
    ];
    // The first fields of union bpf_attr for BPF_PROG_LOAD; the rest zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        _rest: [u64; 12],
    }
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACEPOINT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        _rest: [0; 12],
    };
    // SAFETY: a valid bpf_attr prefix of the size given; the kernel copies it.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: our own new descriptor.
    unsafe { libc::close(fd as i32) };
    true
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, aya::programs::ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| aya::programs::ProgramError::UnexpectedProgramType)?;
    p.try_into()
}

fn attach_tracepoint(ebpf: &mut Ebpf, program_name: &'static str, category: &str, name: &str) -> Result<(), ProbeError> {
    let wrap = |source: aya::programs::ProgramError| ProbeError::Program {
        program: program_name,
        reason: describe_program_error(&source),
    };
    let tp: &mut TracePoint = program(ebpf, program_name).map_err(wrap)?;
    tp.load().map_err(wrap)?;
    tp.attach(category, name).map_err(wrap)?;
    Ok(())
}

/// `recursion_misses` of a loaded program, from BPF_OBJ_GET_INFO_BY_FD; 0
/// where the kernel does not report it.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // Offset of `recursion_misses` in the UAPI `struct bpf_prog_info`.
    const RECURSION_MISSES_OFFSET: usize = 208;
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = [0u8; RECURSION_MISSES_OFFSET + 8];
    let attr = InfoByFd { bpf_fd: fd.as_raw_fd() as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
    // SAFETY: attr and the info buffer are valid for the sizes given.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr as *const InfoByFd, std::mem::size_of::<InfoByFd>())
    };
    if rc != 0 {
        return 0;
    }
    u64::from_ne_bytes(info[RECURSION_MISSES_OFFSET..].try_into().unwrap())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct; release is NUL-terminated.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

/// A short description of a program error: the errno, and the last lines of
/// the verifier's log (the full log is at debug level).
fn describe_program_error(error: &aya::programs::ProgramError) -> String {
    match error {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            tracing::debug!(verifier_log = %log, "BPF_PROG_LOAD failed");
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
            let tail = if tail.is_empty() { tail } else { format!(": {tail}") };
            // "invalid func" when the helper's id is past the kernel's last one.
            if let Some(unknown) = lines.iter().find(|l| l.contains("unknown func") || l.contains("invalid func")) {
                // e.g. bpf_task_pt_regs, which fentry mode needs, came in 5.15.
                format!("BPF_PROG_LOAD failed: the kernel lacks a BPF helper ({}); fentry mode needs Linux 5.15+", unknown.trim())
            } else if io_error.raw_os_error() == Some(libc::EPERM) {
                format!("BPF_PROG_LOAD refused with EPERM (kernel lockdown, or missing CAP_BPF/CAP_PERFMON){tail}")
            } else {
                format!("BPF_PROG_LOAD failed: {io_error}{tail}")
            }
        }
        other => other.to_string(),
    }
}

/// Ring buffer sizes must be a power-of-two multiple of the page size.
pub fn ringbuf_size(requested: u32) -> u32 {
    let page = page_size();
    requested.max(page).checked_next_power_of_two().unwrap_or(1 << 31)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u32 } else { 4096 }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones to the
/// memory cgroup, where failing to raise it is harmless.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11, which account BPF memory to the cgroup"
        );
    }
}

/// Reads anomaly events from the ring buffer without a wakeup per event.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

/// How long the reader sleeps at most when the kernel does not wake it: events
/// below the kernel's wakeup watermark wait at most this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl EventReader {
    /// Calls `f` with every event now in the ring buffer; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Turns the reader into one that tokio can wait on.
    pub fn into_async(self) -> std::io::Result<AsyncEventReader> {
        // SAFETY: the ring buffer's fd is owned by `self`, which the AsyncFd owns
        // and never closes or replaces while registered.
        let fd = unsafe { AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(AsyncEventReader { fd })
    }
}

impl AsRawFd for EventReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

pub struct AsyncEventReader {
    fd: AsyncFd<EventReader>,
}

impl AsyncEventReader {
    /// Waits until the kernel wakes us or `POLL_INTERVAL` passes, then drains.
    pub async fn next_batch(&mut self, f: impl FnMut(&[u8])) -> usize {
        if let Ok(Ok(mut guard)) = tokio::time::timeout(POLL_INTERVAL, self.fd.readable_mut()).await {
            guard.clear_ready();
        }
        self.fd.get_mut().drain(f)
    }

    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        self.fd.get_mut().drain(f)
    }
}

/// Run count and in-kernel run time of one program, from bpf_stats.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time: Duration,
}

impl Probe {
    /// bpf_stats of every loaded program; counts move only while stats are
    /// enabled (`aya::sys::enable_stats`, or sysctl kernel.bpf_stats_enabled=1).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramStats { name: name.to_string(), run_count: info.run_count(), run_time: info.run_time() })
            })
            .collect()
    }
}

/// Benchmarks only: attaches an empty program to the syscall tracepoints badfd
/// uses, to measure the floor cost of the tracepoint attach mode. Dropping the
/// returned object detaches it.
pub fn attach_floor() -> Result<Ebpf, ProbeError> {
    attach_floor_on(false)
}

/// Benchmarks only: the floor of `--no-timing` with tracepoints, an empty
/// program on the syscall-exit tracepoints alone.
pub fn attach_floor_exits() -> Result<Ebpf, ProbeError> {
    attach_floor_on(true)
}

fn attach_floor_on(exits_only: bool) -> Result<Ebpf, ProbeError> {
    let tracefs = preflight::check()?;
    raise_memlock_limit();
    let mut ebpf = Ebpf::load(EBPF_OBJECT).map_err(ProbeError::Load)?;
    let wrap = |source: aya::programs::ProgramError| ProbeError::Program {
        program: "floor_empty",
        reason: describe_program_error(&source),
    };
    let tp: &mut TracePoint = program(&mut ebpf, "floor_empty").map_err(wrap)?;
    tp.load().map_err(wrap)?;
    for (name, _, is_enter) in TRACEPOINT_PROGRAMS {
        if !(exits_only && is_enter) && tracefs.join("events/syscalls").join(name).exists() {
            tp.attach("syscalls", name).map_err(wrap)?;
        }
    }
    Ok(ebpf)
}

/// The bench-only kernel program that emits synthetic failing opens.
const BENCH_EMIT_PROGRAM: &str = "bench_emit";

/// Most synthetic events one test run of `bench_emit` makes (`bpf_loop`'s limit).
#[doc(hidden)]
pub const TRANSPORT_BENCH_MAX_RUN: u32 = 1 << 23;

impl Probe {
    /// Benchmarks and tests only: loads `bench_emit` (never attached) into
    /// this probe's object, so it shares its maps: config, counters and the
    /// event ring buffer. Needs `bpf_loop` (Linux 5.17+).
    #[doc(hidden)]
    pub fn load_transport_bench(&mut self) -> Result<(), ProbeError> {
        let wrap = |source: aya::programs::ProgramError| ProbeError::Program {
            program: BENCH_EMIT_PROGRAM,
            reason: describe_program_error(&source),
        };
        let p: &mut RawTracePoint = program(&mut self.ebpf, BENCH_EMIT_PROGRAM).map_err(wrap)?;
        if p.fd().is_err() {
            p.load().map_err(wrap)?;
        }
        Ok(())
    }

    /// Benchmarks and tests only: the loaded `bench_emit` program
    /// (`load_transport_bench` first).
    #[doc(hidden)]
    pub fn transport_bench(&self) -> Result<TransportBench<'_>, ProbeError> {
        let not_loaded = || ProbeError::Program { program: BENCH_EMIT_PROGRAM, reason: "not loaded".into() };
        let program: &RawTracePoint =
            self.ebpf.program(BENCH_EMIT_PROGRAM).ok_or_else(not_loaded)?.try_into().map_err(|_| not_loaded())?;
        program.fd().map_err(|_| not_loaded())?;
        Ok(TransportBench { program, wakeup: BenchWakeup::AsBadfd })
    }
}

/// Benchmarks and tests only: makes the kernel emit synthetic failing opens
/// through the real event path (`emit`: the path read from this process's
/// memory, comm, cgroup, the real ring buffer and loss counters), without a
/// syscall per event, to measure the transport (ring buffer, reader,
/// pipeline) alone. Each event is counted by the kernel exactly once: as
/// submitted, `ringbuf_full` or `source_throttled`.
#[doc(hidden)]
pub struct TransportBench<'a> {
    program: &'a RawTracePoint,
    wakeup: BenchWakeup,
}

/// How `bench_emit` lets `emit` wake the reader.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWakeup {
    /// As badfd does: every event forces a wakeup while `wakeup_bytes` or
    /// more are waiting.
    AsBadfd,
    /// An experiment: one forced wakeup each time the bytes waiting cross a
    /// multiple of `wakeup_bytes`, none for the events in between.
    OnCrossing,
}

/// Paths for `TransportBench::run_paths`: NUL-terminated, at a fixed stride, a
/// power-of-two number of them (event `i` of a run uses path `i % len`).
#[doc(hidden)]
pub struct BenchPaths {
    bytes: Vec<u8>,
    stride: usize,
    len: usize,
}

impl BenchPaths {
    pub fn new<P: AsRef<[u8]>>(paths: &[P]) -> Result<BenchPaths, ProbeError> {
        let invalid = |what: &str| ProbeError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()));
        if !paths.len().is_power_of_two() {
            return Err(invalid("the number of bench paths must be a power of two"));
        }
        if paths.iter().any(|p| p.as_ref().contains(&0)) {
            return Err(invalid("a bench path contains a NUL byte"));
        }
        let stride = paths.iter().map(|p| p.as_ref().len() + 1).max().unwrap_or(1).next_multiple_of(8);
        let mut bytes = vec![0u8; stride * paths.len()];
        for (i, p) in paths.iter().enumerate() {
            bytes[i * stride..i * stride + p.as_ref().len()].copy_from_slice(p.as_ref());
        }
        Ok(BenchPaths { bytes, stride, len: paths.len() })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TransportBench<'_> {
    /// The wakeup policy of the next runs.
    pub fn with_wakeup(self, wakeup: BenchWakeup) -> Self {
        TransportBench { wakeup, ..self }
    }

    /// One test run on the calling thread (its pid, tid, comm and cgroup):
    /// `count` events, every one with `path`.
    pub fn run(&self, path: &std::ffi::CStr, count: u32) -> Result<(), ProbeError> {
        self.run_raw(path.as_ptr() as u64, 0, 0, count)
    }

    /// One test run: `count` events, event `i` with path `i % paths.len()`.
    pub fn run_paths(&self, paths: &BenchPaths, count: u32) -> Result<(), ProbeError> {
        self.run_raw(paths.bytes.as_ptr() as u64, paths.stride as u64, paths.len as u64 - 1, count)
    }

    fn run_raw(&self, paths: u64, stride: u64, mask: u64, count: u32) -> Result<(), ProbeError> {
        use aya::programs::{RawTracePointRunOptions, TestRun};
        if count > TRANSPORT_BENCH_MAX_RUN {
            return Err(ProbeError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("at most {TRANSPORT_BENCH_MAX_RUN} events per run"),
            )));
        }
        let mut options = RawTracePointRunOptions::new();
        let crossing = (self.wakeup == BenchWakeup::OnCrossing) as u64;
        options.args[..5].copy_from_slice(&[paths, count as u64, stride, mask, crossing]);
        self.program.test_run(options).map_err(|e| ProbeError::Program {
            program: BENCH_EMIT_PROGRAM,
            reason: format!("BPF_PROG_TEST_RUN failed: {e}"),
        })?;
        Ok(())
    }
}

/// Benchmarks only: attaches an empty fentry/fexit pair on
/// [`COMMON_OPEN_FUNCTION`], to measure the floor cost of the fentry attach
/// mode (the counterpart of [`attach_floor`]). Fails, saying why, where the
/// kernel refuses fentry. Dropping the returned object detaches it.
pub fn attach_floor_fentry() -> Result<Ebpf, ProbeError> {
    preflight::check()?;
    raise_memlock_limit();
    let btf = Btf::from_sys_fs().map_err(|e| ProbeError::FentryUnavailable(format!("no kernel BTF: {e}")))?;
    let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(EBPF_OBJECT).map_err(ProbeError::Load)?;
    let unavailable = |source: aya::programs::ProgramError| ProbeError::FentryUnavailable(describe_program_error(&source));
    // Exit first, as badfd attaches its own pair.
    let fexit: &mut FExit = program(&mut ebpf, "floor_fexit_empty").map_err(unavailable)?;
    fexit.load(COMMON_OPEN_FUNCTION, &btf).map_err(unavailable)?;
    fexit.attach().map_err(unavailable)?;
    let fentry: &mut FEntry = program(&mut ebpf, "floor_fentry_empty").map_err(unavailable)?;
    fentry.load(COMMON_OPEN_FUNCTION, &btf).map_err(unavailable)?;
    fentry.attach().map_err(unavailable)?;
    Ok(ebpf)
}

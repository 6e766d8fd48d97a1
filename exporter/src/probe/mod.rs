//! Loading and attaching the kernel program, and the handles userspace keeps on
//! it: the live config, the exact counters, the event ring buffer, the set of
//! followed processes.

mod btf_offsets;
pub mod cgroup_filter;
mod fentry;
mod found_later;
mod io_uring;
mod kernel;
mod maps;
pub mod preflight;
mod program;
mod reader;
mod tracepoint;

use std::{fmt, os::fd::AsFd, time::Duration};

use aya::{Btf, Ebpf, EbpfLoader};
use exporter_common::{
    Arch, Config, Syscall, CGROUP_FILTER_IGNORE, CGROUP_FILTER_OFF, CGROUP_FILTER_WATCH, CONFIG_UNTIMED, FIELD_ABSENT,
    MAP_EVENTS, MAP_KERNEL_PATHS, KERNEL_PATH_SLOTS,
};

pub use btf_offsets::{running_filename_offsets, running_kernel_offsets, running_mnt_ns_offsets};
pub use fentry::COMMON_OPEN_FUNCTION;
pub use found_later::{FoundLaterTally, FoundLaterTotals};
pub use kernel::{
    ancestor_cgroup_helper_available, kernel_release, raise_memlock_limit, ringbuf_size, task_pt_regs_helper_available,
};
use kernel::recursion_misses;
pub use program::{describe_program_error, program};
pub use reader::{AsyncEventReader, EventReader, POLL_INTERVAL};
use tracepoint::attach_tracepoint;

/// Why tracepoint mode does not see 32-bit processes' opens (measured in
/// bench/opens: see bench/RESULTS.md).
const IA32_TRACEPOINT_BLIND_SPOT: &str = "x86_64's syscall tracepoints do not fire for 32-bit syscalls, and a hook on every syscall's exit would cost every other syscall more than 5 ns";

/// The compiled eBPF object, built by build.rs from `exporter-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/badfd-ebpf"));

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
    /// The architecture: which open syscalls there are to attach to.
    arch: Arch,
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
    /// Why io_uring opens are not seen (no hook on this kernel in this mode).
    io_uring_unseen: Option<String>,
    /// Why 32-bit processes' opens are not seen.
    ia32_unseen: Option<String>,
    /// Slots of `KERNEL_PATHS` as loaded (1: the kernel's copies of failed
    /// opens' paths are not taken).
    kernel_path_slots: u32,
    /// Why a failed open's path is read from the process's memory, not
    /// from the kernel's copy (`None` where the kernel's copy is taken).
    kernel_paths_unused: Option<String>,
}

impl Probe {
    /// Checks the host, loads the object, attaches in the best mode allowed and
    /// writes the initial config.
    pub fn load(options: &ProbeOptions) -> Result<Probe, ProbeError> {
        Probe::load_object(options, EBPF_OBJECT)
    }

    /// As `load`, from another build of the kernel object: the tests' own,
    /// which adds test-only programs to the same maps and programs.
    #[doc(hidden)]
    pub fn load_object(options: &ProbeOptions, object: &[u8]) -> Result<Probe, ProbeError> {
        let tracefs = preflight::check()?;
        let arch = preflight::architecture()?;
        raise_memlock_limit();

        let ringbuf_bytes = ringbuf_size(options.ringbuf_bytes);
        let cgroup_ancestors = ancestor_cgroup_helper_available();
        if !cgroup_ancestors {
            tracing::info!("this kernel does not let tracing programs see a task's ancestor cgroups: the cgroup filter matches each task's own cgroup only");
        }
        let mut config = options.config;
        config.flags &= !CONFIG_UNTIMED;
        config.task = btf_offsets::running_task_offsets();
        // io_uring: the request's layout (BTF) and the tracepoints' records
        // (tracefs), or why they cannot be hooked.
        let io_uring_offsets = btf_offsets::running_io_uring_offsets().map_err(|e| e.to_string()).and_then(|mut offsets| {
            let submit = io_uring::record_offsets(&tracefs, &mut offsets)?;
            config.io_uring = offsets;
            Ok(submit)
        });
        config.filename = btf_offsets::running_filename_offsets();
        // Kernel copies of paths (`KERNEL_PATH_SLOTS`): for failed opens in
        // fentry mode, where it may be used (timed: the copy goes to the
        // open's entry; not under lockdown, which refuses fentry), and for
        // io_uring opens where the kernel keeps no user pointer (7.x).
        let fentry_possible =
            options.attach != AttachPreference::Tracepoint && options.timing && preflight::locked_down() != Some(true);
        let io_uring_copies = io_uring_offsets.is_ok() && config.filename.uptr == FIELD_ABSENT;
        let kernel_path_slots =
            if config.filename.valid != 0 && (fentry_possible || io_uring_copies) { KERNEL_PATH_SLOTS } else { 1 };

        // The parsed kernel BTF (~9 MiB here) is needed only while loading and
        // attaching: a local, freed before the exporter settles to its idle size.
        let kernel_btf = Btf::from_sys_fs().ok();
        let ebpf = EbpfLoader::new()
            .btf(kernel_btf.as_ref())
            .map_max_entries(MAP_EVENTS, ringbuf_bytes)
            .map_max_entries(MAP_KERNEL_PATHS, kernel_path_slots)
            .override_global("CGROUP_ANCESTORS", &(cgroup_ancestors as u8), true)
            .override_global("RINGBUF_BYTES", &ringbuf_bytes, true)
            .override_global("TASK_PT_REGS", &(task_pt_regs_helper_available() as u8), true)
            .override_global("KERNEL_PATH_SLOTS_LOADED", &kernel_path_slots, true)
            .load(object)
            .map_err(ProbeError::Load)?;

        // Offsets for resolving relative paths' directories in the kernel;
        // without them the kernel leaves it to /proc, said once here.
        let kernel_dir_unavailable = match btf_offsets::running_kernel_offsets() {
            Ok(offsets) => {
                config.offsets = offsets;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "relative paths will be resolved from /proc, not in the kernel");
                // The mount namespace number needs only three of them.
                config.offsets = btf_offsets::running_mnt_ns_offsets()
                    .unwrap_or(exporter_common::KernelOffsets::NONE);
                Some(e.to_string())
            }
        };
        if options.follow_forks {
            config.fork_child_pid_offset = preflight::fork_child_pid_offset(&tracefs)?;
        }
        let mut probe = Probe {
            ebpf,
            arch,
            mode: AttachMode::Tracepoint,
            fallback_reason: None,
            mode_reason: String::new(),
            missing_syscalls: Vec::new(),
            kernel_dir_unavailable,
            kernel_offsets: config.offsets,
            config,
            timed: true,
            untimed_refused: None,
            io_uring_unseen: None,
            ia32_unseen: None,
            kernel_path_slots,
            kernel_paths_unused: None,
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
        if probe.mode == AttachMode::Fentry {
            if let Some(btf) = kernel_btf.as_ref() {
                probe.attach_exec_fentry(btf);
                if probe.timed {
                    probe.attach_kernel_paths(btf);
                }
            }
        }
        if untimed && probe.timed {
            let reason = probe.untimed_refused.clone().unwrap_or_default();
            tracing::warn!(%reason, "--no-timing is not possible on this kernel (the exit-only programs need bpf_task_pt_regs, Linux 5.15): timing every open as usual");
        }
        if !probe.timed {
            // The io_uring programs serve both timing modes and read this.
            let mut config = probe.config;
            config.flags |= CONFIG_UNTIMED;
            probe.write_config(config)?;
        }
        probe.attach_io_uring(kernel_btf.as_ref(), io_uring_offsets);
        probe.ia32_unseen = probe.ia32_blind_spot();
        if let Some(reason) = &probe.ia32_unseen {
            tracing::warn!(%reason, "32-bit processes' opens are not seen in {} mode: neither counted nor streamed", probe.mode);
        }
        // Thread exits always: they free the in-flight slot of a thread that
        // died with an open whose exit was never seen (and untrack followed ids).
        attach_tracepoint(&mut probe.ebpf, "sched_process_exit", "sched", "sched_process_exit")?;
        if options.follow_forks {
            attach_tracepoint(&mut probe.ebpf, "sched_process_fork", "sched", "sched_process_fork")?;
        }
        Ok(probe)
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
        if let Some(why) = &self.io_uring_unseen {
            line.push_str(&format!(" io_uring_unseen={why:?}"));
        }
        if let Some(why) = &self.ia32_unseen {
            line.push_str(&format!(" ia32_unseen={why:?}"));
        }
        if let Some(why) = &self.kernel_paths_unused {
            line.push_str(&format!(" kernel_paths_unused={why:?}"));
        }
        line
    }

    /// Why 32-bit (ia32) processes' opens (`ia32_open`, `ia32_openat`,
    /// `ia32_openat2`, `ia32_creat`) are not seen in this attach mode (neither
    /// counted nor streamed); `None` where they are.
    pub fn ia32_unseen(&self) -> Option<&str> {
        self.ia32_unseen.as_deref()
    }

    /// What keeps 32-bit opens from being seen in the attach mode chosen.
    fn ia32_blind_spot(&self) -> Option<String> {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        match self.mode {
            // The fentry/fexit on do_sys_openat2 sees them; only openat2, whose
            // number both ABIs share, needs the task's TS_COMPAT to be told apart.
            AttachMode::Fentry if self.config.task.compat_valid == 0 => Some(
                "thread_info.status is not in the kernel's BTF: a 32-bit openat2 cannot be told from a 64-bit one".into(),
            ),
            AttachMode::Fentry => None,
            AttachMode::Tracepoint => Some(IA32_TRACEPOINT_BLIND_SPOT.into()),
        }
    }

    /// How many times the kernel skipped one of badfd's programs because that
    /// program was already running on the CPU (`recursion_misses`, Linux 5.12+;
    /// 0 before). fentry programs run preemptible: while one is preempted, the
    /// same program does not run for other tasks on that CPU, so their opens are
    /// neither counted nor streamed; this is how many.
    pub fn missed_runs(&self) -> u64 {
        self.missed_runs_by_program().iter().map(|(_, n)| n).sum()
    }

    /// `missed_runs` per loaded program, by program name (sorted): which
    /// hook's opens went unseen.
    pub fn missed_runs_by_program(&self) -> Vec<(String, u64)> {
        let mut runs: Vec<(String, u64)> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| Some((name.to_string(), recursion_misses(program.fd().ok()?.as_fd()))))
            .collect();
        runs.sort();
        runs
    }

    /// Why fentry was not used (auto mode only).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    pub fn missing_syscalls(&self) -> &[Syscall] {
        &self.missing_syscalls
    }

    /// The architecture badfd runs on; its open syscalls are `arch().syscalls()`.
    pub fn arch(&self) -> Arch {
        self.arch
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
    /// The loaded object, for tests that load programs of their own into it.
    #[doc(hidden)]
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    #[doc(hidden)]
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The instructions the verifier processed to accept each loaded program
    /// (`verified_insns` of `bpf_prog_info`, Linux 5.16+: `None` before), by
    /// program name: how far each is from the verifier's limit of 1,000,000.
    pub fn verified_instructions(&self) -> Vec<(String, Option<u32>)> {
        let mut counts: Vec<(String, Option<u32>)> = self
            .ebpf
            .programs()
            .filter_map(|(name, p)| Some((name.to_string(), p.info().ok()?.verified_instruction_count())))
            .collect();
        counts.sort();
        counts
    }

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

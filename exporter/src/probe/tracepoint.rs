//! Attach mode tracepoint: the `syscalls/sys_{enter,exit}_*` tracepoints of
//! each open syscall the architecture has (every kernel; every syscall of
//! every process takes the slow path while attached).

use std::path::Path;

use aya::{programs::TracePoint, Ebpf};
use exporter_common::{Arch, Syscall};

use super::{describe_program_error, program, AttachMode, Probe, ProbeError};

/// The exit-only programs of `--no-timing`, in place of the enter/exit pairs;
/// those of syscalls the architecture lacks are not in its object.
const UNTIMED_TRACEPOINT_PROGRAMS: [(&str, &str, Syscall); 6] = [
    ("sys_exit_open_untimed", "sys_exit_open", Syscall::Open),
    ("sys_exit_openat_untimed", "sys_exit_openat", Syscall::Openat),
    ("sys_exit_openat2_untimed", "sys_exit_openat2", Syscall::Openat2),
    ("sys_exit_creat_untimed", "sys_exit_creat", Syscall::Creat),
    ("sys_exit_execve_untimed", "sys_exit_execve", Syscall::Execve),
    ("sys_exit_execveat_untimed", "sys_exit_execveat", Syscall::Execveat),
];
const TRACEPOINT_PROGRAMS: [(&str, Syscall, bool); 12] = [
    ("sys_enter_open", Syscall::Open, true),
    ("sys_exit_open", Syscall::Open, false),
    ("sys_enter_openat", Syscall::Openat, true),
    ("sys_exit_openat", Syscall::Openat, false),
    ("sys_enter_openat2", Syscall::Openat2, true),
    ("sys_exit_openat2", Syscall::Openat2, false),
    ("sys_enter_creat", Syscall::Creat, true),
    ("sys_exit_creat", Syscall::Creat, false),
    ("sys_enter_execve", Syscall::Execve, true),
    ("sys_exit_execve", Syscall::Execve, false),
    ("sys_enter_execveat", Syscall::Execveat, true),
    ("sys_exit_execveat", Syscall::Execveat, false),
];

impl Probe {
    /// `--no-timing` with tracepoints: the exit-only programs, no entry
    /// programs. `Ok(false)` (with the reason kept) where they do not load; the
    /// caller then attaches the timed pairs. All load before any attaches.
    pub(super) fn attach_tracepoints_untimed(&mut self, tracefs: &Path) -> Result<bool, ProbeError> {
        let present = |tp: &str| tracefs.join("events/syscalls").join(tp).exists();
        let arch = self.arch;
        let programs: Vec<_> = UNTIMED_TRACEPOINT_PROGRAMS.into_iter().filter(|(_, _, s)| arch.syscalls().contains(s)).collect();
        for &(program_name, tp, syscall) in &programs {
            if !present(tp) && !optional(syscall) {
                return Err(ProbeError::TracepointMissing(tp));
            }
            if !present(tp) {
                continue;
            }
            let loaded = program::<TracePoint>(&mut self.ebpf, program_name).and_then(|p| p.load());
            if let Err(error) = loaded {
                for &(name, _, _) in &programs {
                    if let Ok(p) = program::<TracePoint>(&mut self.ebpf, name) {
                        let _ = p.unload();
                    }
                }
                self.untimed_refused = Some(describe_program_error(&error));
                return Ok(false);
            }
        }
        for &(program_name, tp, syscall) in &programs {
            if !present(tp) {
                self.tracepoint_missing(syscall);
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

    pub(super) fn attach_tracepoints(&mut self, tracefs: &Path) -> Result<(), ProbeError> {
        // Exits before enters, so no entry is left without its exit.
        for enter in [false, true] {
            for (name, syscall, is_enter) in TRACEPOINT_PROGRAMS {
                if is_enter != enter || !self.arch.syscalls().contains(&syscall) || self.missing_syscalls.contains(&syscall) {
                    continue;
                }
                if !tracefs.join("events/syscalls").join(name).exists() {
                    if optional(syscall) {
                        self.tracepoint_missing(syscall);
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

    /// A syscall whose tracepoints this kernel lacks: said once, and listed.
    fn tracepoint_missing(&mut self, syscall: Syscall) {
        if self.missing_syscalls.contains(&syscall) {
            return;
        }
        if syscall == Syscall::Openat2 {
            warn_no_openat2(self.arch);
        } else {
            tracing::warn!("this kernel has no tracepoints for {}: its failures are not seen", syscall.name());
        }
        self.missing_syscalls.push(syscall);
    }
}

/// Syscalls badfd watches without requiring them: openat2 (Linux 5.6+) and the
/// execs (badfd is about opens first).
fn optional(syscall: Syscall) -> bool {
    syscall == Syscall::Openat2 || syscall.is_exec()
}

/// Said once where the kernel predates openat2: which opens are watched
/// instead ("open, openat and creat" on x86_64).
fn warn_no_openat2(arch: Arch) {
    let others: Vec<&str> = arch.syscalls().iter().filter(|s| **s != Syscall::Openat2 && !s.is_exec()).map(|s| s.name()).collect();
    let watched = match others.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    tracing::warn!("this kernel has no openat2 (added in 5.6); watching {watched} only");
}

pub(super) fn attach_tracepoint(ebpf: &mut Ebpf, program_name: &'static str, category: &str, name: &str) -> Result<(), ProbeError> {
    let wrap = |source: aya::programs::ProgramError| ProbeError::Program {
        program: program_name,
        reason: describe_program_error(&source),
    };
    let tp: &mut TracePoint = program(ebpf, program_name).map_err(wrap)?;
    tp.load().map_err(wrap)?;
    tp.attach(category, name).map_err(wrap)?;
    Ok(())
}


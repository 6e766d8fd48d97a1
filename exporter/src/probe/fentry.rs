//! Attach mode fentry: fentry/fexit on the kernel's common open function
//! (every open syscall reaches it; other syscalls pay nothing).

use aya::{
    programs::{FEntry, FExit},
    Btf,
};

use exporter_common::Syscall;

use super::{describe_program_error, program, Probe};

/// The kernel function every open syscall reaches, for fentry/fexit.
pub const COMMON_OPEN_FUNCTION: &str = "do_sys_openat2";

const UNTIMED_FEXIT_PROGRAM: &str = "fexit_do_sys_openat2_untimed";

/// The path walk of every open (syscalls', io_uring's), inside the syscall:
/// where a failure's path is copied from the kernel's own copy. The same
/// function under its two names: `do_file_open` in Linux 7.x.
pub const PATH_WALK_FUNCTIONS: [&str; 2] = ["do_filp_open", "do_file_open"];
const PATH_WALK_PROGRAM: &str = "fexit_do_filp_open";

/// The execs' syscall functions on this architecture, with their programs:
/// (syscall, function, fentry, fexit, untimed fexit).
#[cfg(target_arch = "x86_64")]
const EXEC_HOOKS: [(Syscall, &str, &str, &str, &str); 2] = [
    (Syscall::Execve, "__x64_sys_execve", "fentry_execve", "fexit_execve", "fexit_execve_untimed"),
    (Syscall::Execveat, "__x64_sys_execveat", "fentry_execveat", "fexit_execveat", "fexit_execveat_untimed"),
];
#[cfg(target_arch = "aarch64")]
const EXEC_HOOKS: [(Syscall, &str, &str, &str, &str); 2] = [
    (Syscall::Execve, "__arm64_sys_execve", "fentry_execve", "fexit_execve", "fexit_execve_untimed"),
    (Syscall::Execveat, "__arm64_sys_execveat", "fentry_execveat", "fexit_execveat", "fexit_execveat_untimed"),
];

impl Probe {
    /// Tries fentry/fexit; on failure unloads what loaded and says why.
    pub(super) fn attach_fentry(&mut self, btf: Option<&Btf>) -> Result<(), String> {
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
    pub(super) fn attach_fentry_untimed(&mut self, btf: Option<&Btf>) -> bool {
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

    /// The execs in fentry mode: fentry/fexit (fexit alone untimed) on the
    /// syscall functions. Where the kernel refuses them, failed execs are not
    /// seen: said once, and listed with the missing syscalls.
    pub(super) fn attach_exec_fentry(&mut self, btf: &Btf) {
        for (syscall, function, entry, exit, untimed_exit) in EXEC_HOOKS {
            let timed = self.timed;
            let result = (|| -> Result<(), aya::programs::ProgramError> {
                let exit_program = if timed { exit } else { untimed_exit };
                let fexit: &mut FExit = program(&mut self.ebpf, exit_program)?;
                fexit.load(function, btf)?;
                // Exit first, so no entry is left without its exit.
                fexit.attach()?;
                if timed {
                    let fentry: &mut FEntry = program(&mut self.ebpf, entry)?;
                    fentry.load(function, btf)?;
                    fentry.attach()?;
                }
                Ok(())
            })();
            if let Err(error) = result {
                for name in [entry, exit, untimed_exit] {
                    match self.ebpf.program_mut(name) {
                        Some(aya::programs::Program::FEntry(p)) => drop(p.unload()),
                        Some(aya::programs::Program::FExit(p)) => drop(p.unload()),
                        _ => {}
                    }
                }
                let reason = describe_program_error(&error);
                tracing::warn!(%reason, "fentry/fexit on {function} refused: failed {} calls are not seen", syscall.name());
                self.missing_syscalls.push(syscall);
            }
        }
    }

    /// Timed fentry mode: failed opens' paths from the kernel's own copy
    /// (fexit on the path walk). Where that is refused, or no room for the
    /// copies was made at load, they are read from the process's memory at
    /// the open's end, as in tracepoint mode: said once.
    pub(super) fn attach_kernel_paths(&mut self, btf: &Btf) {
        if self.kernel_path_slots <= 1 {
            self.kernel_paths_unused = Some("no room for the copies was made at load (the kernel reported lockdown)".into());
        } else {
            let mut refusals = Vec::new();
            for function in PATH_WALK_FUNCTIONS {
                let result = (|| -> Result<(), aya::programs::ProgramError> {
                    let fexit: &mut FExit = program(&mut self.ebpf, PATH_WALK_PROGRAM)?;
                    fexit.load(function, btf)?;
                    fexit.attach()?;
                    Ok(())
                })();
                match result {
                    Ok(()) => break,
                    Err(error) => {
                        if let Ok(p) = program::<FExit>(&mut self.ebpf, PATH_WALK_PROGRAM) {
                            let _ = p.unload();
                        }
                        refusals.push(format!("fexit on {function} refused: {}", describe_program_error(&error)));
                    }
                }
            }
            if refusals.len() == PATH_WALK_FUNCTIONS.len() {
                self.kernel_paths_unused = Some(refusals.join("; "));
            }
        }
        if let Some(reason) = &self.kernel_paths_unused {
            tracing::warn!(%reason, "failed opens' paths are read from the process's memory at their end, not from the kernel's copy");
        }
    }

    /// Why failed opens' paths are not the kernel's own copy in fentry mode
    /// (`None` where they are, and in tracepoint mode, which never has it).
    pub fn kernel_paths_unused(&self) -> Option<&str> {
        self.kernel_paths_unused.as_deref()
    }
}

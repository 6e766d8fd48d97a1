//! Attach mode fentry: fentry/fexit on the kernel's common open function
//! (every open syscall reaches it; other syscalls pay nothing).

use aya::{
    programs::{FEntry, FExit},
    Btf,
};

use super::{describe_program_error, program, Probe};

/// The kernel function every open syscall reaches, for fentry/fexit.
pub const COMMON_OPEN_FUNCTION: &str = "do_sys_openat2";

const UNTIMED_FEXIT_PROGRAM: &str = "fexit_do_sys_openat2_untimed";

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

}

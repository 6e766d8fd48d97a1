//! Programs of the loaded object: finding one by name, and saying why the
//! kernel refused one.

use aya::Ebpf;

/// A program of `ebpf` by name, as its kind.
pub fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, aya::programs::ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| aya::programs::ProgramError::UnexpectedProgramType)?;
    p.try_into()
}


/// A short description of a program error: the errno, and the last lines of
/// the verifier's log (the full log is at debug level).
pub fn describe_program_error(error: &aya::programs::ProgramError) -> String {
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


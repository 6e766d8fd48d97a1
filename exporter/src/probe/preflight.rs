//! Checks made before loading, so that a host that cannot run badfd gets one
//! line naming what is missing and how to fix it, not a verifier dump.

use std::path::{Path, PathBuf};

use exporter_common::Arch;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("badfd does not run on {0}: its kernel programs know the syscall registers and numbers of x86_64 and aarch64 only")]
    UnsupportedArchitecture(&'static str),
    #[error("badfd needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN on kernels before 5.8): run it as root, or grant them, e.g. `setcap cap_bpf,cap_perfmon+ep badfd`")]
    MissingCapabilities,
    #[error("no kernel BTF at /sys/kernel/btf/vmlinux: badfd needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution since 2020 ships one)")]
    NoBtf,
    #[error("tracefs is not mounted: mount it with `mount -t tracefs nodev /sys/kernel/tracing` (in a container, bind-mount the host's /sys/kernel/tracing)")]
    NoTracefs,
    #[error("tracefs at {0} is there but badfd may not read it (permission denied): run badfd as root, or let its user read tracefs, e.g. `mount -o remount,mode=755 {0}` (or grant CAP_DAC_READ_SEARCH)")]
    TracefsUnreadable(PathBuf),
    #[error("cannot read the sched_process_fork tracepoint format at {0}: {1}")]
    ForkFormat(PathBuf, String),
}

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS_CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

// Capability numbers from linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Runs every check; returns where tracefs is mounted.
pub fn check() -> Result<PathBuf, PreflightError> {
    architecture()?;
    if !has_bpf_capabilities() {
        return Err(PreflightError::MissingCapabilities);
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(PreflightError::NoBtf);
    }
    tracefs_checked()
}

/// The architecture badfd runs on: the one it is built for, as its kernel
/// programs are (aya-build builds them for the same target architecture; a
/// 64-bit binary runs only on a kernel of its own architecture). Any other
/// than those whose syscall ABI the kernel programs know is refused: their
/// programs would read the wrong registers.
pub fn architecture() -> Result<Arch, PreflightError> {
    supported_architecture(std::env::consts::ARCH)
}

fn supported_architecture(name: &'static str) -> Result<Arch, PreflightError> {
    Arch::from_name(name).ok_or(PreflightError::UnsupportedArchitecture(name))
}

/// The tracefs mount point, if tracefs is mounted and readable.
pub fn tracefs() -> Option<PathBuf> {
    tracefs_checked().ok()
}

/// The tracefs mount point; a mount badfd may not look into (a user with
/// CAP_BPF and CAP_PERFMON but not root: tracefs is mode 700) is told apart
/// from no mount at all, because the fixes differ.
fn tracefs_checked() -> Result<PathBuf, PreflightError> {
    let mut unreadable = None;
    for candidate in TRACEFS_CANDIDATES.iter().map(PathBuf::from) {
        match std::fs::metadata(candidate.join("events")) {
            Ok(m) if m.is_dir() => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                unreadable.get_or_insert(candidate);
            }
            _ => {}
        }
    }
    Err(unreadable.map_or(PreflightError::NoTracefs, PreflightError::TracefsUnreadable))
}

fn has_bpf_capabilities() -> bool {
    let Some(effective) = effective_capabilities() else { return false };
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Whether the kernel is locked down (integrity or confidentiality), which
/// refuses fentry/fexit; `None` where securityfs does not say. The loader
/// asks only to size what fentry mode alone would use; the attach itself
/// still decides the mode.
pub fn locked_down() -> Option<bool> {
    std::fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .map(|s| s.contains("[integrity]") || s.contains("[confidentiality]"))
}

/// The effective capability set of this process, from /proc/self/status.
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Offset of `child_pid` in the sched_process_fork record (it moved when the
/// comm fields became `__data_loc` strings).
pub fn fork_child_pid_offset(tracefs: &Path) -> Result<u32, PreflightError> {
    let path = tracefs.join("events/sched/sched_process_fork/format");
    let format = std::fs::read_to_string(&path).map_err(|e| PreflightError::ForkFormat(path.clone(), e.to_string()))?;
    field_offset(&format, "child_pid")
        .ok_or_else(|| PreflightError::ForkFormat(path, "no child_pid field".into()))
}

/// Finds `offset:N` of the named field in a tracefs `format` file.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        let name = decl.rsplit([' ', '*']).next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let offset = line.split(';').find_map(|p| p.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_architectures_with_known_syscall_registers_start() {
        assert_eq!(supported_architecture("x86_64").unwrap(), Arch::X86_64);
        assert_eq!(supported_architecture("aarch64").unwrap(), Arch::Aarch64);
        assert_eq!(architecture().unwrap().name(), std::env::consts::ARCH, "the architecture of this build");
        // Rust's names of other Linux architectures badfd could be built for.
        for other in ["x86", "arm", "riscv64", "s390x", "powerpc64", "loongarch64", "mips64"] {
            let refusal = supported_architecture(other).unwrap_err().to_string();
            assert!(!refusal.contains('\n'), "one line: {refusal}");
            assert!(refusal.starts_with(&format!("badfd does not run on {other}: ")), "{refusal}");
            assert!(refusal.contains("x86_64 and aarch64 only"), "{refusal}");
        }
    }

    #[test]
    fn finds_fork_child_pid_in_both_layouts() {
        let new = "\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
                   \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
                   \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
                   \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(new, "child_pid"), Some(20));
        let old = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;\n\
                   \tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
                   \tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;\n\
                   \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(old, "child_pid"), Some(44));
        assert_eq!(field_offset(old, "child_comm"), Some(28));
        assert_eq!(field_offset(old, "nope"), None);
    }
}

//! io_uring open requests (`IORING_OP_OPENAT`, `IORING_OP_OPENAT2`): the kernel
//! opens them for the ring without an open syscall, so badfd hooks them on
//! their own, in each attach mode (exporter-ebpf/src/io_uring.rs): the issue
//! functions in fentry mode, the io_uring tracepoints in tracepoint mode. A
//! kernel or mode that gives no hook for them is named, with why, in the
//! startup line and by `Probe::io_uring_unseen`.

use std::path::Path;

use aya::{
    programs::{FEntry, FExit, TracePoint},
    Btf,
};
use exporter_common::IoUringOffsets;

use super::{describe_program_error, preflight::field_offset, program, AttachMode, Probe};

/// The submission tracepoint, by its names old and new (renamed in 6.2).
const SUBMIT_TRACEPOINTS: [&str; 2] = ["io_uring_submit_req", "io_uring_submit_sqe"];

/// fentry mode: (program, kernel function), exits first.
const ISSUE_PROGRAMS: [(&str, &str); 4] = [
    ("fexit_io_openat", "io_openat"),
    ("fexit_io_openat2", "io_openat2"),
    ("fentry_io_openat", "io_openat"),
    ("fentry_io_openat2", "io_openat2"),
];

/// The `io_uring` tracepoint records' field offsets, from their tracefs
/// formats, into `offsets`; `Err` says what is missing. The completion must
/// name its request (5.10's does not).
pub(super) fn record_offsets(tracefs: &Path, offsets: &mut IoUringOffsets) -> Result<&'static str, String> {
    let format = |name: &str| std::fs::read_to_string(tracefs.join("events/io_uring").join(name).join("format"));
    let submit = SUBMIT_TRACEPOINTS
        .into_iter()
        .find_map(|name| format(name).ok().map(|f| (name, f)))
        .ok_or_else(|| "this kernel has no io_uring tracepoints (no io_uring, or tracefs without them)".to_string())?;
    let complete = format("io_uring_complete").map_err(|e| format!("io_uring_complete: {e}"))?;
    let failed = format("io_uring_req_failed").map_err(|e| format!("io_uring_req_failed: {e}"))?;
    let field = |tracepoint: &str, format: &str, name: &str| {
        field_offset(format, name).ok_or_else(|| format!("the {tracepoint} tracepoint has no `{name}` field on this kernel"))
    };
    let (submit_name, submit) = submit;
    offsets.submit_req = field(submit_name, &submit, "req")?;
    offsets.submit_opcode = field(submit_name, &submit, "opcode")?;
    offsets.submit_flags = field(submit_name, &submit, "flags")?;
    offsets.complete_req = field("io_uring_complete", &complete, "req")?;
    offsets.complete_res = field("io_uring_complete", &complete, "res")?;
    offsets.failed_req = field("io_uring_req_failed", &failed, "req")?;
    offsets.failed_opcode = field("io_uring_req_failed", &failed, "opcode")?;
    offsets.failed_addr = field("io_uring_req_failed", &failed, "addr")?;
    offsets.failed_off = field("io_uring_req_failed", &failed, "off")?;
    offsets.failed_len = field("io_uring_req_failed", &failed, "len")?;
    offsets.failed_op_flags = field("io_uring_req_failed", &failed, "op_flags")?;
    offsets.failed_error = field("io_uring_req_failed", &failed, "error")?;
    offsets.records_valid = 1;
    Ok(submit_name)
}

impl Probe {
    /// Hooks io_uring opens in the attach mode chosen; where they cannot be,
    /// keeps why (`io_uring_unseen`). `offsets` is the kernel's name of the
    /// submission tracepoint where every offset was found (`Config::io_uring`
    /// holds them), else why not.
    pub(super) fn attach_io_uring(&mut self, btf: Option<&Btf>, offsets: Result<&'static str, String>) {
        let result = match self.mode {
            AttachMode::Fentry => offsets.and_then(|_| self.attach_io_uring_issue(btf)),
            AttachMode::Tracepoint => offsets.and_then(|submit| self.attach_io_uring_tracepoints(submit)),
        };
        match result {
            Ok(()) => self.io_uring_unseen = None,
            Err(reason) => {
                tracing::warn!(%reason, "io_uring opens are not seen on this kernel in {} mode: neither counted nor streamed", self.mode);
                self.io_uring_unseen = Some(reason);
            }
        }
    }

    /// fentry mode: fentry/fexit on the issue functions, and the tracepoint
    /// of requests that fail before they run. All or nothing.
    fn attach_io_uring_issue(&mut self, btf: Option<&Btf>) -> Result<(), String> {
        let btf = btf.ok_or_else(|| "no kernel BTF at /sys/kernel/btf/vmlinux".to_string())?;
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            for (name, function) in ISSUE_PROGRAMS {
                if name.starts_with("fexit") {
                    program::<FExit>(&mut self.ebpf, name)?.load(function, btf)?;
                } else {
                    program::<FEntry>(&mut self.ebpf, name)?.load(function, btf)?;
                }
            }
            self.load_and_attach_failed_requests()?;
            for (name, _) in ISSUE_PROGRAMS {
                if name.starts_with("fexit") {
                    program::<FExit>(&mut self.ebpf, name)?.attach()?;
                } else {
                    program::<FEntry>(&mut self.ebpf, name)?.attach()?;
                }
            }
            Ok(())
        })();
        result.map_err(|error| {
            self.unload_io_uring();
            format!("hooking io_openat/io_openat2 failed: {}", describe_program_error(&error))
        })
    }

    /// tracepoint mode: the failure, completion and submission tracepoints
    /// (ends before starts, so no request is left without its end).
    fn attach_io_uring_tracepoints(&mut self, submit_tracepoint: &str) -> Result<(), String> {
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            self.load_and_attach_failed_requests()?;
            let complete: &mut TracePoint = program(&mut self.ebpf, "io_uring_complete")?;
            complete.load()?;
            complete.attach("io_uring", "io_uring_complete")?;
            let submit: &mut TracePoint = program(&mut self.ebpf, "io_uring_submit_req")?;
            submit.load()?;
            submit.attach("io_uring", submit_tracepoint)?;
            Ok(())
        })();
        result.map_err(|error| {
            self.unload_io_uring();
            format!("attaching the io_uring tracepoints failed: {}", describe_program_error(&error))
        })
    }

    fn load_and_attach_failed_requests(&mut self) -> Result<(), aya::programs::ProgramError> {
        let failed: &mut TracePoint = program(&mut self.ebpf, "io_uring_req_failed")?;
        failed.load()?;
        failed.attach("io_uring", "io_uring_req_failed")?;
        Ok(())
    }

    /// Unloads (and so detaches) whatever io_uring program loaded.
    fn unload_io_uring(&mut self) {
        for name in ISSUE_PROGRAMS.map(|(name, _)| name).into_iter().chain(["io_uring_req_failed", "io_uring_complete", "io_uring_submit_req"]) {
            let _ = match self.ebpf.program_mut(name) {
                Some(aya::programs::Program::FEntry(p)) => p.unload(),
                Some(aya::programs::Program::FExit(p)) => p.unload(),
                Some(aya::programs::Program::TracePoint(p)) => p.unload(),
                _ => Ok(()),
            };
        }
    }

    /// Why io_uring opens (`io_uring_openat`, `io_uring_openat2`) are not seen
    /// on this kernel in this attach mode (neither counted nor streamed);
    /// `None` where they are.
    pub fn io_uring_unseen(&self) -> Option<&str> {
        self.io_uring_unseen.as_deref()
    }
}

//! The one harness of badfd's tests and benchmarks (the bench crate depends
//! on this one): the binaries and how to find them, `badfd serve` as a
//! process, the workload and its manifest, the probe loaded in a kernel test,
//! parsed scrapes, scratch directories.
//!
//! Every kernel test loads the real eBPF program into this machine's kernel. A
//! test that cannot load it panics with the reason: it never skips.

pub mod kernel_bench;
pub mod otlp_receiver;

mod binaries;
mod kernel;
mod names;
mod scrape;
mod serve;
mod tempdir;
mod workload;

pub use binaries::{badfd_path, dropcaps_path, workload_path};
pub use kernel::{
    bpf_ids_held_by, cgroup_id_of, kernel_has_fentry_helpers, kernel_version, load_probe, load_probe_with, monotonic_ns,
    test_attach_mode, without_missed_runs, Collector,
};
/// Whether the kernel's lockdown forbids fentry/fexit (as on the CI hosts);
/// None where securityfs does not say: the exporter's own check.
pub use badfd::preflight::locked_down as kernel_locked_down;
pub use names::{hold_slow_fifo_opens, letters, TestCgroup};
pub use scrape::{Sample, Scrape};
pub use serve::{free_port, Serve};
pub use tempdir::TempDir;
pub use workload::{failures_as, proc_largest_mappings, proc_status_kib, run_workload, workload_run, OpenRecord, UidWorkload, WorkloadRun, FAIRNESS_UID};

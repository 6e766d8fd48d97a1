//! badfd's kernel side: time every open, count every open in per-CPU counters,
//! and stream only anomalies (failed or slow opens) to userspace.
//!
//! Two attach modes share one body (`open`, `stream`): syscall tracepoints
//! (`tracepoints`) and fentry/fexit on `do_sys_openat2` (`fentry`), the function
//! every open syscall reaches. Userspace loads whichever the kernel allows.
//!
//! | module | concern |
//! |---|---|
//! | `maps` | every map and load-time constant |
//! | `counters` | the exact per-CPU counters |
//! | `args`, `arch` | an open's arguments; the saved user registers |
//! | `open` | enter and exit: counting, timing, the anomaly decision |
//! | `signal_end` | how a signal ends an interrupted open: restarted, EINTR, killed |
//! | `found_later` | failures a later open of the same name found (search-path probes) |
//! | `stream` | filters, the event into the ring buffer |
//! | `fairness` | per-source budgets (process, cgroup, uid) past half the ring |
//! | `dir_walk` | the directory of a relative path |
//! | `kernel_path` | the kernel's own copy of a path, where the process's may change or is gone |
//! | `tracepoints`, `fentry` | the programs of each attach mode |
//! | `exec` | execve/execveat, both modes: failed execs are failures too |
//! | `io_uring` | io_uring open requests, in both attach modes |
//! | `tracking` | forks and exits: followed commands, in-flight reaping |
//! | `test_programs` | tests and benchmarks only (feature `test-programs`) |
#![no_std]
#![no_main]

mod arch;
mod args;
mod counters;
mod dir_walk;
mod exec;
mod fairness;
mod fentry;
mod found_later;
mod io_uring;
mod kernel_path;
mod maps;
mod open;
mod signal_end;
mod stream;
#[cfg(feature = "test-programs")]
mod test_programs;
mod tracepoints;
mod tracking;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

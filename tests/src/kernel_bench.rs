//! The tests' and benchmarks' own kernel programs, which badfd never ships:
//! the object built with `exporter-ebpf`'s `test-programs` feature (the shipped
//! programs plus `bench_emit` and the `floor_*` programs), and the handles on
//! them.

use aya::{
    programs::{FEntry, FExit, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use badfd::probe::{describe_program_error, program, raise_memlock_limit, ProbeError, COMMON_OPEN_FUNCTION};
use badfd::{Probe, ProbeOptions};

/// The tests' eBPF object (tests/build.rs).
pub static TEST_EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/badfd-ebpf"));

/// Loads the probe from the tests' object (badfd's programs, as shipped, with
/// the test-only ones beside them, unattached).
pub fn load_test_object(options: &ProbeOptions) -> Result<Probe, ProbeError> {
    Probe::load_object(options, TEST_EBPF_OBJECT)
}

/// The syscall tracepoints badfd attaches to: (name, is an entry).
const OPEN_TRACEPOINTS: [(&str, bool); 8] = [
    ("sys_enter_open", true),
    ("sys_exit_open", false),
    ("sys_enter_openat", true),
    ("sys_exit_openat", false),
    ("sys_enter_openat2", true),
    ("sys_exit_openat2", false),
    ("sys_enter_creat", true),
    ("sys_exit_creat", false),
];

/// Attaches an empty program to the syscall tracepoints badfd uses, to
/// measure the floor cost of the tracepoint attach mode. Dropping the
/// returned object detaches it.
pub fn attach_floor() -> Result<Ebpf, ProbeError> {
    attach_floor_on(false)
}

/// The floor of `--no-timing` with tracepoints: an empty program on the
/// syscall-exit tracepoints alone.
pub fn attach_floor_exits() -> Result<Ebpf, ProbeError> {
    attach_floor_on(true)
}

fn attach_floor_on(exits_only: bool) -> Result<Ebpf, ProbeError> {
    let tracefs = badfd::preflight::check()?;
    raise_memlock_limit();
    let mut ebpf = Ebpf::load(TEST_EBPF_OBJECT).map_err(ProbeError::Load)?;
    let wrap = |source: aya::programs::ProgramError| ProbeError::Program { program: "floor_empty", reason: describe_program_error(&source) };
    let tp: &mut TracePoint = program(&mut ebpf, "floor_empty").map_err(wrap)?;
    tp.load().map_err(wrap)?;
    for (name, is_enter) in OPEN_TRACEPOINTS {
        if !(exits_only && is_enter) && tracefs.join("events/syscalls").join(name).exists() {
            tp.attach("syscalls", name).map_err(wrap)?;
        }
    }
    Ok(ebpf)
}

/// An empty fentry/fexit pair on [`COMMON_OPEN_FUNCTION`], the floor cost of
/// the fentry attach mode (the counterpart of [`attach_floor`]). Fails, saying
/// why, where the kernel refuses fentry. Dropping the returned object detaches it.
pub fn attach_floor_fentry() -> Result<Ebpf, ProbeError> {
    badfd::preflight::check()?;
    raise_memlock_limit();
    let btf = Btf::from_sys_fs().map_err(|e| ProbeError::FentryUnavailable(format!("no kernel BTF: {e}")))?;
    let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(TEST_EBPF_OBJECT).map_err(ProbeError::Load)?;
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

/// The test-only kernel program that emits synthetic failing opens.
const BENCH_EMIT_PROGRAM: &str = "bench_emit";

/// Most synthetic events one test run of `bench_emit` makes (`bpf_loop`'s limit).
pub const TRANSPORT_BENCH_MAX_RUN: u32 = 1 << 23;

/// `bench_emit` in a probe loaded from the tests' object ([`load_test_object`]).
pub trait TransportBenchExt {
    /// Loads `bench_emit` (never attached) into the probe's object, so it
    /// shares its maps: config, counters and the event ring buffer. Needs
    /// `bpf_loop` (Linux 5.17+).
    fn load_transport_bench(&mut self) -> Result<(), ProbeError>;
    /// The loaded `bench_emit` program (`load_transport_bench` first).
    fn transport_bench(&self) -> Result<TransportBench<'_>, ProbeError>;
}

impl TransportBenchExt for Probe {
    fn load_transport_bench(&mut self) -> Result<(), ProbeError> {
        let wrap = |source: aya::programs::ProgramError| ProbeError::Program { program: BENCH_EMIT_PROGRAM, reason: describe_program_error(&source) };
        let p: &mut RawTracePoint = program(self.ebpf_mut(), BENCH_EMIT_PROGRAM).map_err(wrap)?;
        if p.fd().is_err() {
            p.load().map_err(wrap)?;
        }
        Ok(())
    }

    fn transport_bench(&self) -> Result<TransportBench<'_>, ProbeError> {
        let not_loaded = || ProbeError::Program { program: BENCH_EMIT_PROGRAM, reason: "not loaded".into() };
        let program: &RawTracePoint =
            self.ebpf().program(BENCH_EMIT_PROGRAM).ok_or_else(not_loaded)?.try_into().map_err(|_| not_loaded())?;
        program.fd().map_err(|_| not_loaded())?;
        Ok(TransportBench { program, wakeup: BenchWakeup::AsBadfd })
    }
}

/// Makes the kernel emit synthetic failing opens through the real event path
/// (`emit`: the path read from this process's memory, comm, cgroup, the real
/// ring buffer and loss counters), without a syscall per event, to measure the
/// transport (ring buffer, reader, pipeline) alone. Each event is counted by
/// the kernel exactly once: as submitted, `ringbuf_full` or `source_throttled`.
pub struct TransportBench<'a> {
    program: &'a RawTracePoint,
    wakeup: BenchWakeup,
}

/// How `bench_emit` lets `emit` wake the reader.
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
        self.program
            .test_run(options)
            .map_err(|e| ProbeError::Program { program: BENCH_EMIT_PROGRAM, reason: format!("BPF_PROG_TEST_RUN failed: {e}") })?;
        Ok(())
    }
}

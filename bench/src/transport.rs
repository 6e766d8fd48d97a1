//! Part 4 of `events`: the transport alone (ring buffer, reader, pipeline),
//! with a synthetic producer in the kernel instead of opens.
//!
//! This machine cannot make 1M failing opens/s (the syscall and its tracepoints
//! cost far more than the transport), so the kernel program `bench_emit` is run
//! with BPF_PROG_TEST_RUN by one thread pinned to CPU 0: each run makes
//! `per_run` events through the real `emit` (fairness check, path read from
//! this process's memory, comm, cgroup, the real ring buffer and loss
//! counters), paced to a target rate. On CPU 1 the library's `EventLoop`
//! (`badfd serve`'s: drain, flush, housekeeping, poll with the kernel's
//! batched wakeups) runs the `Pipeline` into the metrics sink. Every event
//! made is counted by the kernel as submitted, lost to a full ring buffer or
//! throttled, so `made == received + lost` is checked exactly.

use std::{
    ffi::CString,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use badfd::{
    pipeline::{event_loop::EventLoop, PipelineStats},
    probe::EventReader,
    Probe, ProbeOptions,
};
use badfd_tests::kernel_bench::{load_test_object, BenchPaths, BenchWakeup, TransportBench, TransportBenchExt};
use exporter_common::{Config, Counters, Loss, Stream};

use crate::common::pin_to;

pub struct Options {
    pub rates: Vec<u64>,
    pub step_seconds: u64,
    pub hold_rate: u64,
    pub hold_seconds: u64,
    pub per_run: u32,
    pub ringbuf_bytes: u32,
    /// `Config::wakeup_bytes` (None: badfd's default).
    pub wakeup_bytes: Option<u32>,
    /// Also step through the rates (and hold) with one forced wakeup each time
    /// the bytes waiting cross a multiple of `wakeup_bytes` instead of one per
    /// event above it (an experiment).
    pub wakeup_experiment: bool,
    /// Nice value of the producer and reader threads (0: as every process).
    pub nice: i32,
    /// Printed before anything of this part is loaded.
    pub machine: String,
}

/// Sets the calling thread's nice value (Linux: per thread).
fn renice(nice: i32) {
    if nice != 0 {
        // SAFETY: plain syscalls; a tid as `who` is that thread alone.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    }
}

/// A pid no process can have (above PID_MAX_LIMIT, 2^22): as the probe's
/// filter it keeps every real open of the (shared) host out of the ring
/// buffer, so only `bench_emit`, which does not consult the filters, streams.
const NO_REAL_PROCESS: u32 = u32::MAX - 1;

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The reader on CPU 1: `badfd serve`'s event loop with the metrics sink.
struct Reader {
    stop: Arc<AtomicBool>,
    cpu_ns: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    stats: PipelineStats,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(reader: EventReader, nice: i32) -> Reader {
        let (pipeline, stats, _aggregates, exposition) = crate::metrics_pipeline();
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, cpu_ns, bytes) = (stop.clone(), cpu_ns.clone(), bytes.clone());
            std::thread::Builder::new()
                .name("bench-reader".into())
                .spawn(move || {
                    pin_to(1);
                    renice(nice);
                    // `EventLoop::run`, turn by turn, to read the thread's CPU time and bytes.
                    let mut events = EventLoop::new(reader, pipeline);
                    let mut total_bytes = 0u64;
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        total_bytes += events.turn().bytes;
                        bytes.store(total_bytes, Ordering::Relaxed);
                        cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
                        if stopping {
                            break;
                        }
                        events.wait();
                    }
                    drop(exposition);
                })
                .expect("spawn the reader")
        };
        Reader { stop, cpu_ns, bytes, stats, thread: Some(thread) }
    }

    fn received(&self) -> u64 {
        self.stats.events_received.get()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (submitted, lost to a full ring buffer, throttled by the fairness limit)
fn accounted(c: &Counters) -> [u64; 3] {
    [c.stream[Stream::Submitted as usize], c.losses[Loss::RingbufFull as usize], c.losses[Loss::SourceThrottled as usize]]
}

fn bench_emit_run_time(probe: &Probe) -> Duration {
    probe.program_stats().into_iter().find(|s| s.name == "bench_emit").map_or(Duration::ZERO, |s| s.run_time)
}

struct Step {
    offered: u64,
    seconds: f64,
    made: u64,
    submitted: u64,
    ringbuf_full: u64,
    throttled: u64,
    received: u64,
    reader_cpu_ns: u64,
    bytes: u64,
    producer_cpu_ns: u64,
    kernel_ns: u64,
}

impl Step {
    fn lost(&self) -> u64 {
        self.ringbuf_full + self.throttled
    }

    fn exact(&self) -> bool {
        self.made == self.submitted + self.lost() && self.received == self.submitted
    }

    fn rate(&self) -> f64 {
        self.made as f64 / self.seconds
    }
}

/// Makes events on the calling thread (pinned to CPU 0) at `rate`/s (0 =
/// unpaced) for `seconds`, then waits for the reader to take all that was
/// submitted.
fn step(probe: &Probe, bench: &TransportBench<'_>, paths: &BenchPaths, reader: &Reader, rate: u64, per_run: u32, seconds: u64) -> anyhow::Result<Step> {
    let c0 = accounted(&probe.counters()?);
    let (r0, rc0, b0, k0) = (reader.received(), reader.cpu_ns.load(Ordering::Relaxed), reader.bytes.load(Ordering::Relaxed), bench_emit_run_time(probe));
    let p0 = thread_cpu_ns();
    let duration = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut made = 0u64;
    loop {
        bench.run_paths(paths, per_run)?;
        made += per_run as u64;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(made as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let producer_cpu_ns = thread_cpu_ns() - p0;
    let c1 = accounted(&probe.counters()?);
    let submitted = c1[0] - c0[0];
    // The reader polls at least every 50 ms; give it time to take the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    while reader.received() - r0 < submitted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    Ok(Step {
        offered: rate,
        seconds,
        made,
        submitted,
        ringbuf_full: c1[1] - c0[1],
        throttled: c1[2] - c0[2],
        received: reader.received() - r0,
        reader_cpu_ns: reader.cpu_ns.load(Ordering::Relaxed) - rc0,
        bytes: reader.bytes.load(Ordering::Relaxed) - b0,
        producer_cpu_ns,
        kernel_ns: (bench_emit_run_time(probe) - k0).as_nanos() as u64,
    })
}

const HEADER: &str = "| producer rate/s | seconds | made | made/s | received | lost: ring full | lost: throttled | made = received + lost | reader CPU | reader ns/event | producer in-kernel ns/event | producer CPU ns/event | producer CPU |\n|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|";

fn print_step(s: &Step) {
    let offered = if s.offered == 0 { "unpaced".to_string() } else { s.offered.to_string() };
    println!(
        "| {offered} | {:.1} | {} | {:.0} | {} | {} | {} | {} | {:.0}% | {:.0} | {:.0} | {:.0} | {:.0}% |",
        s.seconds,
        s.made,
        s.rate(),
        s.received,
        s.ringbuf_full,
        s.throttled,
        if s.exact() { "yes" } else { "**NO**" },
        100.0 * s.reader_cpu_ns as f64 / 1e9 / s.seconds,
        s.reader_cpu_ns as f64 / s.received.max(1) as f64,
        s.kernel_ns as f64 / s.made.max(1) as f64,
        s.producer_cpu_ns as f64 / s.made.max(1) as f64,
        100.0 * s.producer_cpu_ns as f64 / 1e9 / s.seconds,
    );
}

/// `hold_rate` for `hold_seconds`, and whether it was made and delivered
/// without loss.
fn hold(probe: &Probe, bench: &TransportBench<'_>, paths: &BenchPaths, reader: &Reader, options: &Options) -> anyhow::Result<()> {
    if options.hold_seconds == 0 || options.hold_rate == 0 {
        return Ok(());
    }
    println!();
    println!("held for {} s at {}/s:", options.hold_seconds, options.hold_rate);
    println!();
    println!("{HEADER}");
    let s = step(probe, bench, paths, reader, options.hold_rate, options.per_run, options.hold_seconds)?;
    print_step(&s);
    println!();
    println!("load average after: {}", crate::common::loadavg());
    // Paced: the producer can be behind its schedule, never ahead of it.
    let reached = s.rate() >= 0.99 * options.hold_rate as f64;
    println!(
        "{}/s for {} s with zero loss: {}",
        options.hold_rate,
        options.hold_seconds,
        match (reached, s.lost() == 0 && s.exact()) {
            (true, true) => "held".to_string(),
            (true, false) => format!("NOT held: {} lost", s.lost()),
            (false, lossless) => format!(
                "NOT reached: the producer made {:.0}/s ({:.0} ns/event in the kernel, {:.0}% of CPU 0); {} lost",
                s.rate(),
                s.kernel_ns as f64 / s.made.max(1) as f64,
                100.0 * s.producer_cpu_ns as f64 / 1e9 / s.seconds,
                if lossless { "none".to_string() } else { s.lost().to_string() }
            ),
        }
    );
    Ok(())
}

/// Steps through the rates and prints a table and what it shows.
fn steps(probe: &Probe, bench: &TransportBench<'_>, paths: &BenchPaths, reader: &Reader, options: &Options) -> anyhow::Result<()> {
    println!("{HEADER}");
    let mut best: Option<Step> = None;
    let mut unpaced: Option<Step> = None;
    let mut record_size = 0.0;
    for &rate in &options.rates {
        let s = step(probe, bench, paths, reader, rate, options.per_run, options.step_seconds)?;
        print_step(&s);
        record_size = s.bytes as f64 / s.received.max(1) as f64;
        if rate == 0 {
            unpaced = Some(s);
        } else if s.lost() == 0 && s.exact() && best.as_ref().is_none_or(|b| s.rate() > b.rate()) {
            best = Some(s);
        }
    }
    println!();
    println!("record size: {record_size:.0} bytes (+ 8 bytes of ring buffer header)");
    match &best {
        Some(b) => println!("highest paced step with zero loss: {:.0} events/s", b.rate()),
        None => println!("no paced step was free of loss"),
    }
    if let Some(u) = &unpaced {
        println!("unpaced (the producer as fast as it goes): {:.0} events/s made, {} lost", u.rate(), u.lost());
    }
    Ok(())
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.per_run > 0, "--transport-per-run must be at least 1");
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable bpf_stats")?;
    let probe_options = ProbeOptions {
        ringbuf_bytes: options.ringbuf_bytes,
        config: Config {
            filter_pid: NO_REAL_PROCESS,
            wakeup_bytes: options.wakeup_bytes.unwrap_or(Config::DEFAULT.wakeup_bytes),
            ..Config::DEFAULT
        },
        ..ProbeOptions::default()
    };
    let mut probe = load_test_object(&probe_options)?;
    probe.load_transport_bench()?;
    let reader = Reader::start(probe.take_events()?, options.nice);
    let bench = probe.transport_bench()?;
    // The same 64 paths as the generators of part 3 (8 directories).
    let paths: Vec<String> = (0..64).map(|i| format!("/nonexistent-badfd-bench/t0/dir{}/file{i}.conf", i % 8)).collect();
    let paths = BenchPaths::new(&paths)?;

    pin_to(0);
    renice(options.nice);
    let name = CString::new("bench-emit").unwrap();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string; PR_SET_TIMERSLACK
    // takes a number (ns): pacing sleeps are tens of microseconds.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }

    println!("4. the transport alone: a synthetic producer in the kernel, not opens ({})", options.machine);
    println!();
    println!(
        "`bench_emit` run with BPF_PROG_TEST_RUN by one thread on CPU 0, {} events per run (one bpf_loop), \
         each the real `emit` of a failing openat (64 paths of {}-{} bytes); ring buffer {} MiB, wakeup at {} KiB waiting; \
         reader + pipeline into the metrics sink in `badfd serve`'s event loop on CPU 1; every real open of the host filtered out; \
         {} s per step; producer and reader at nice {}",
        options.per_run,
        "/nonexistent-badfd-bench/t0/dir0/file0.conf".len(),
        "/nonexistent-badfd-bench/t0/dir7/file63.conf".len(),
        badfd::probe::ringbuf_size(options.ringbuf_bytes) as f64 / (1 << 20) as f64,
        probe.config().wakeup_bytes / 1024,
        options.step_seconds,
        options.nice
    );
    println!();
    steps(&probe, &bench, &paths, &reader, options)?;
    hold(&probe, &bench, &paths, &reader, options)?;
    if options.wakeup_experiment {
        println!();
        println!(
            "experiment: the same steps with one forced wakeup each time the bytes waiting cross a multiple of {} KiB (emit() is \
             given the bytes waiting only within 512 bytes above a multiple, else 0), instead of one per event while they are above it:",
            probe.config().wakeup_bytes / 1024
        );
        println!();
        let bench = bench.with_wakeup(BenchWakeup::OnCrossing);
        steps(&probe, &bench, &paths, &reader, options)?;
        hold(&probe, &bench, &paths, &reader, options)?;
    }
    let c = accounted(&probe.counters()?);
    println!();
    println!(
        "totals (idle): submitted {}, received {}, lost to a full ring {}, throttled {}, undecodable {}",
        c[0],
        reader.received(),
        c[1],
        c[2],
        reader.stats.events_undecodable.get()
    );
    Ok(())
}

//! Anomaly events from the kernel to userspace, with real failing opens
//! through the real ring buffer:
//!
//! 1. how many failing opens/s this machine can make at all (nothing attached),
//!    with one and with two generator threads;
//! 2. how fast the library's reader and pipeline (the code `badfd serve` runs)
//!    drain a backlog of real kernel events on one core: its capacity, whatever
//!    the generators can offer;
//! 3. the real `badfd serve`: offered rate stepped up, losses counted by the
//!    kernel (`badfd_kernel_events_lost_total{reason="ringbuf_full"}`), CPU per
//!    event from /proc; then the best zero-loss rate held for 60 s.
//! 4. the transport alone ("transport"): a synthetic producer in the kernel
//!    (`bench_emit`, run with BPF_PROG_TEST_RUN: the real `emit`, ring buffer
//!    and loss counters, no syscall per event) paced on CPU 0, the library's
//!    reader and pipeline in `badfd serve`'s event loop on CPU 1; rates
//!    stepped up, then 1M/s held for 60 s. Not opens: what the transport
//!    carries when something makes anomalies this fast.

#[path = "common.rs"]
mod common;
#[path = "transport.rs"]
mod transport;

use std::{
    sync::{atomic::AtomicUsize, Arc, Mutex},
    time::{Duration, Instant},
};

use badfd::{
    pipeline::{Pipeline, PipelineStats},
    sinks::metrics::{Aggregates, Exposition, MetricsSink},
    Probe, ProbeOptions,
};
use clap::Parser;
use badfd_tests::{proc_status_kib, Scrape, Serve};
use common::{cpu_seconds, pin_to, start_serve, Generator};
use exporter_common::{Loss, Stream};

#[derive(Parser)]
#[command(about = "anomaly events/s kernel -> userspace, zero loss")]
struct Args {
    /// Offered rates to step through, events/s in total (0 = as fast as the generators go).
    #[arg(long, value_delimiter = ',', default_values_t = [50_000u64, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 0])]
    rates: Vec<u64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    step_seconds: u64,
    /// Seconds at the best zero-loss rate.
    #[arg(long, default_value_t = 60)]
    hold_seconds: u64,
    /// Ring buffer for the backlog drain (bytes).
    #[arg(long, default_value_t = 256 << 20)]
    backlog_ringbuf_bytes: u32,
    /// Port for `badfd serve`.
    #[arg(long, default_value_t = 19535)]
    port: u16,
    /// Skip parts (1, 2, 3, 4).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<u8>,
    /// Part 4: producer rates to step through, events/s (0 = unpaced).
    #[arg(long, value_delimiter = ',', default_values_t = [250_000u64, 500_000, 750_000, 1_000_000, 1_250_000, 1_500_000, 2_000_000, 0])]
    transport_rates: Vec<u64>,
    /// Part 4: seconds per step.
    #[arg(long, default_value_t = 10)]
    transport_step_seconds: u64,
    /// Part 4: the rate held for `--transport-hold-seconds` (0 = no hold).
    #[arg(long, default_value_t = 1_000_000)]
    transport_hold_rate: u64,
    /// Part 4: seconds at `--transport-hold-rate`.
    #[arg(long, default_value_t = 60)]
    transport_hold_seconds: u64,
    /// Part 4: synthetic events per BPF_PROG_TEST_RUN (one bpf_loop).
    #[arg(long, default_value_t = 64)]
    transport_per_run: u32,
    /// Part 4: ring buffer size (bytes); the default is badfd's.
    #[arg(long, default_value_t = exporter_common::DEFAULT_RINGBUF_BYTES)]
    transport_ringbuf_bytes: u32,
    /// Part 4: bytes waiting in the ring buffer from which each event wakes the
    /// reader (`Config::wakeup_bytes`); badfd's default if not given.
    #[arg(long)]
    transport_wakeup_bytes: Option<u32>,
    /// Part 4: skip the experiment (the steps and hold again with one wakeup
    /// per multiple of the wakeup threshold crossed).
    #[arg(long)]
    no_wakeup_experiment: bool,
    /// Part 4: nice value of the producer and reader threads; below 0 they
    /// take their CPU back from other tenants of a shared machine.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    transport_nice: i32,
}

fn bare_generation(cpus: &[usize]) -> f64 {
    let g = Generator::start(cpus, 0, false);
    std::thread::sleep(Duration::from_millis(500));
    let (m0, t0) = (g.made(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let rate = (g.made() - m0) as f64 / t0.elapsed().as_secs_f64();
    g.stop();
    rate
}

/// Fills a big ring buffer with real events while nobody reads, then times the
/// reader and pipeline (into the metrics sink) draining it on CPU 1.
fn backlog_drain(args: &Args) -> anyhow::Result<()> {
    let mut probe = Probe::load(&ProbeOptions { ringbuf_bytes: args.backlog_ringbuf_bytes, ..ProbeOptions::default() })?;
    let mut reader = probe.take_events()?;
    let lost = |p: &Probe| -> anyhow::Result<u64> { Ok(p.counters()?.losses[Loss::RingbufFull as usize]) };
    let submitted = |p: &Probe| -> anyhow::Result<u64> { Ok(p.counters()?.stream[Stream::Submitted as usize]) };
    // Fill until the kernel reports the first loss (ring full) or 90 s.
    let g = Generator::start(&[0, 1], 0, true);
    let deadline = Instant::now() + Duration::from_secs(90);
    while lost(&probe)? == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    g.stop();
    let in_ring = submitted(&probe)?;

    pin_to(1);
    let (mut pipeline, stats, _aggregates, _exposition) = metrics_pipeline();
    let start = Instant::now();
    let mut drained = 0;
    loop {
        let n = reader.drain(|bytes| pipeline.push_bytes(bytes));
        pipeline.flush();
        drained += n;
        if n == 0 {
            break;
        }
    }
    let elapsed = start.elapsed();
    // The same records again without the pipeline: the ring buffer's own limit.
    let raw = {
        let g = Generator::start(&[0], 0, true);
        let deadline = Instant::now() + Duration::from_secs(90);
        let before = lost(&probe)?;
        pin_to(0);
        while lost(&probe)? == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        g.stop();
        pin_to(1);
        let start = Instant::now();
        let mut bytes = 0u64;
        let mut n = 0;
        loop {
            let k = reader.drain(|b| bytes += b.len() as u64);
            n += k;
            if k == 0 {
                break;
            }
        }
        (n, start.elapsed(), bytes)
    };
    println!("2. backlog drained on one core (CPU 1), ring buffer {} MiB, filled with real failing opens (varied paths) until the kernel counted a loss:", args.backlog_ringbuf_bytes >> 20);
    println!();
    println!("| reader | events | seconds | events/s | ns/event |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| EventReader::drain + Pipeline (decode, resolve, label, metrics sink) | {drained} | {:.3} | {:.0} | {:.0} |",
        elapsed.as_secs_f64(),
        drained as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / drained.max(1) as f64
    );
    println!(
        "| EventReader::drain alone (ring buffer read, {:.0} bytes/event) | {} | {:.3} | {:.0} | {:.0} |",
        raw.2 as f64 / raw.0.max(1) as f64,
        raw.0,
        raw.1.as_secs_f64(),
        raw.0 as f64 / raw.1.as_secs_f64(),
        raw.1.as_nanos() as f64 / raw.0.max(1) as f64
    );
    println!();
    println!(
        "events in the ring at the first loss: {in_ring}; pipeline counted {} received, {} undecodable",
        stats.events_received.get(),
        stats.events_undecodable.get()
    );
    Ok(())
}

fn submitted(m: &Scrape) -> u64 {
    m.sum("badfd_kernel_events_total", &[("outcome", "submitted")]) as u64
}

fn received(m: &Scrape) -> u64 {
    m.sum("badfd_events_received_total", &[]) as u64
}

struct Step {
    offered: u64,
    seconds: f64,
    made: u64,
    submitted: u64,
    lost: u64,
    received: u64,
    cpu: f64,
}

fn step(serve: &Serve, rate: u64, seconds: u64) -> anyhow::Result<Step> {
    let scrape = |s: &Serve| -> (u64, u64, u64) {
        let m = s.scrape();
        (submitted(&m), m.sum("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]) as u64, received(&m))
    };
    let (s0, l0, r0) = scrape(serve);
    let c0 = cpu_seconds(serve.pid());
    let start = Instant::now();
    let g = Generator::start(&[0, 1], rate, false);
    std::thread::sleep(Duration::from_secs(seconds));
    let made = g.stop();
    let elapsed = start.elapsed().as_secs_f64();
    // Let the reader catch up (it polls every 50 ms).
    std::thread::sleep(Duration::from_millis(500));
    let (s1, l1, r1) = scrape(serve);
    let c1 = cpu_seconds(serve.pid());
    Ok(Step { offered: rate, seconds: elapsed, made, submitted: s1 - s0, lost: l1 - l0, received: r1 - r0, cpu: c1 - c0 })
}

fn print_step(s: &Step) {
    let offered = if s.offered == 0 { "max".to_string() } else { s.offered.to_string() };
    println!(
        "| {offered} | {:.0} | {:.0} | {} | {} | {} | {:.0}% | {:.0} |",
        s.seconds,
        s.submitted as f64 / s.seconds,
        s.submitted,
        s.lost,
        s.received,
        100.0 * s.cpu / s.seconds,
        s.cpu * 1e9 / s.received.max(1) as f64
    );
    let _ = s.made;
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("badfd bench/events: {}", common::machine_line());
    println!();
    if !args.skip.contains(&1) {
        let one = bare_generation(&[0]);
        let two = bare_generation(&[0, 1]);
        println!(
            "1. failing opens/s this machine makes with nothing of this bench attached (openat ENOENT, raw syscalls); syscall tracepoint programs of others loaded: {}",
            common::open_tracepoint_programs().map_or("unknown".to_string(), |n| n.to_string())
        );
        println!();
        println!("| generator threads | failing opens/s |");
        println!("|---:|---:|");
        println!("| 1 (CPU 0) | {one:.0} |");
        println!("| 2 (CPU 0, 1) | {two:.0} |");
        println!();
    }
    if !args.skip.contains(&2) {
        backlog_drain(&args)?;
        println!();
    }
    if !args.skip.contains(&3) {
        let serve = start_serve(args.port, &["--failures-only"]);
        println!(
            "3. the real `badfd serve` ({}), 2 generator threads (CPU 0 and 1, shared with badfd), {} s per step; load average before: {}",
            badfd_tests::badfd_path().display(),
            args.step_seconds,
            common::loadavg()
        );
        println!();
        let header = "| offered/s | seconds | streamed/s | streamed | lost (ring full) | received | badfd CPU | badfd CPU ns/event |\n|---:|---:|---:|---:|---:|---:|---:|---:|";
        println!("{header}");
        let mut best: Option<u64> = None;
        for &rate in &args.rates {
            let s = step(&serve, rate, args.step_seconds)?;
            print_step(&s);
            // (received lags submitted by the events in flight at the scrape)
            if s.lost == 0 {
                let achieved = (s.submitted as f64 / s.seconds) as u64;
                // "max" is held at the rate it reached.
                let r = if rate == 0 { achieved } else { rate };
                if best.is_none_or(|b| r > b) {
                    best = Some(r);
                }
            }
        }
        println!();
        match best {
            _ if args.hold_seconds == 0 => {}
            Some(rate) => {
                println!("held for {} s at the best zero-loss offered rate, {rate}/s:", args.hold_seconds);
                println!();
                println!("{header}");
                let s = step(&serve, rate, args.hold_seconds)?;
                print_step(&s);
                let vm_hwm = proc_status_kib(serve.pid(), "VmHWM").unwrap_or(0);
                println!();
                println!("badfd serve peak RSS (VmHWM) so far: {:.1} MiB", vm_hwm as f64 / 1024.0);
            }
            None => println!("no step was free of loss"),
        }
        // Idle now: every event the kernel streamed must have been received.
        std::thread::sleep(Duration::from_secs(1));
        let m = serve.scrape();
        println!();
        println!(
            "totals since start (idle): streamed {}, received {}, lost (ring full) {}, undecodable {}",
            submitted(&m),
            received(&m),
            m.sum("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]),
            m.sum("badfd_events_undecodable_total", &[]),
        );
        drop(serve);
        println!();
    }
    if !args.skip.contains(&4) {
        transport::run(&transport::Options {
            rates: args.transport_rates.clone(),
            step_seconds: args.transport_step_seconds,
            hold_rate: args.transport_hold_rate,
            hold_seconds: args.transport_hold_seconds,
            per_run: args.transport_per_run,
            ringbuf_bytes: args.transport_ringbuf_bytes,
            wakeup_bytes: args.transport_wakeup_bytes,
            wakeup_experiment: !args.no_wakeup_experiment,
            nice: args.transport_nice,
            machine: common::machine_line(),
        })?;
    }
    Ok(())
}

/// The per-event work of `badfd serve` into the metrics sink only (path
/// prefixes 3 deep, 2000 label sets): the pipeline, its counters, the
/// aggregates it feeds and the registry its counters live in.
pub(crate) fn metrics_pipeline() -> (Pipeline, PipelineStats, Arc<Mutex<Aggregates>>, Exposition) {
    let aggregates = Arc::new(Mutex::new(Aggregates::new(2000, Duration::from_secs(300))));
    let mut exposition = Exposition::new();
    let stats = PipelineStats::register(&mut exposition.registry);
    let pipeline = Pipeline::new(
        Arc::new(AtomicUsize::new(3)),
        vec![Box::new(MetricsSink { aggregates: aggregates.clone() })],
        stats.clone(),
    );
    (pipeline, stats, aggregates, exposition)
}

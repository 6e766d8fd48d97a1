//! `/metrics` encode time and response size with the anomaly metrics filled to
//! 1k, 10k and 100k label sets, in OpenMetrics and the classic text format,
//! through the registry `badfd serve` builds (with the real probe's kernel
//! counters unless --no-probe), with and without OpenMetrics exemplars (the
//! trace ids OTLP adds).

#[path = "common.rs"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use badfd::{
    pipeline::PipelineStats,
    sinks::metrics::{Aggregates, AggregatesCollector, Exposition, Format, KernelCollector, SharedProbe},
    Probe, ProbeOptions,
};
use clap::Parser;
use common::{median, pin_to};

#[derive(Parser)]
#[command(about = "/metrics encode time at 1k, 10k, 100k label sets")]
struct Args {
    /// Renders per figure (the median is printed; one warm-up render first).
    #[arg(long, default_value_t = 7)]
    renders: usize,
    /// Label-set counts to fill.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
    series: Vec<usize>,
    /// Leave the kernel counters out (no BPF needed).
    #[arg(long)]
    no_probe: bool,
    /// CPU to pin to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

/// `n` label sets: 90% failure counters (errno x comm x path_prefix), 10% slow
/// opens (a counter, and a 16-bucket histogram per comm for the first 200).
fn fill(n: usize, exemplars: bool) -> Aggregates {
    let mut a = Aggregates::new(n + 64, Duration::from_secs(3600));
    let errnos = [2, 13, 1, 20, 40, 30, 6];
    let comm = |i: usize| -> Arc<str> { Arc::from(format!("worker-{}", i % 500)) };
    let prefix = |i: usize| -> Arc<str> { Arc::from(format!("/srv/app{}/data/shard{}", i / 500, i % 97)) };
    let record = exemplars.then_some([0xab; 16]);
    let slow = n / 10;
    for i in 0..n - slow {
        let f = a.failures.get_mut(&(errnos[i % errnos.len()], i % 5 == 0, comm(i), prefix(i), None), 0);
        f.count = 1 + i as u64;
        f.last_record = record;
    }
    for i in 0..slow {
        let s = a.slow.get_mut(&(comm(i), prefix(i), None), 0);
        s.count = 1 + i as u64;
        s.last_record = record;
        s.latency_us.saturating_record(20_000 + i as u64);
        if i < 200 {
            a.slow_duration.get_mut(&(comm(i), None), 0).observe_ns(20_000_000 + i as u64);
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pin_to(args.cpu);
    let probe: SharedProbe = Arc::new(Mutex::new(None));
    if !args.no_probe {
        *probe.lock().unwrap() = Some(Probe::load(&ProbeOptions::default())?);
    }
    println!(
        "badfd bench/encode: {}; pinned to CPU {}; median of {} renders after one warm-up; kernel counters {}",
        common::machine_line(),
        args.cpu,
        args.renders,
        if args.no_probe { "left out" } else { "from the loaded probe" }
    );
    println!();
    println!("| label sets | exemplars | format | encode ms | response bytes | lines |");
    println!("|---:|---|---|---:|---:|---:|");
    for &n in &args.series {
        for exemplars in [false, true] {
            let aggregates = Arc::new(Mutex::new(fill(n, exemplars)));
            let mut exposition = Exposition::new();
            PipelineStats::register(&mut exposition.registry);
            exposition.registry.register_collector(Box::new(KernelCollector { probe: probe.clone(), found_later: Default::default() }));
            exposition.registry.register_collector(Box::new(AggregatesCollector { aggregates: aggregates.clone() }));
            for format in [Format::OpenMetrics, Format::Classic] {
                let body = exposition.render(format);
                let mut times = Vec::new();
                for _ in 0..args.renders {
                    let start = Instant::now();
                    let body = exposition.render(format);
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                    std::hint::black_box(body);
                }
                println!(
                    "| {n} | {} | {:?} | {:.2} | {} | {} |",
                    if exemplars { "yes" } else { "no" },
                    format,
                    median(times),
                    body.len(),
                    body.lines().count()
                );
            }
        }
    }
    Ok(())
}

//! Anomalies aggregated into the Prometheus metrics on one core: synthetic
//! ring-buffer records with realistic label variety (40 comms x 7 errnos x 30
//! directories, pids/uuids the prefix templating folds, relative paths the
//! kernel resolved, 5% slow, a share of new directories that the label-set
//! budget folds) through the real pipeline (decode, resolve, path_prefix,
//! interning) into the real metrics sink. Prints events/s and ns/event per
//! stage; the pipeline runs pinned to one CPU.

#[path = "common.rs"]
mod common;

use std::{
    sync::{atomic::AtomicUsize, Arc, Mutex},
    time::{Duration, Instant},
};

use badfd::{
    pipeline::{Anomaly, Pipeline, PipelineStats, Sink},
    sinks::metrics::{Aggregates, Exposition, MetricsSink},
    OpenEvent,
};
use clap::Parser;
use common::{median, pin_to, Corpus};

#[derive(Parser)]
#[command(about = "events/s aggregated into the metrics on one core")]
struct Args {
    /// Rounds per stage (the median is printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Events per round.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// One record in this many is in a new directory (a new label set).
    #[arg(long, default_value_t = 1000)]
    unique_every: usize,
    /// CPU to pin to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Label-set budget per metric (badfd's default).
    #[arg(long, default_value_t = 2000)]
    max_label_sets: usize,
}

/// Keeps a copy of every anomaly (to feed the sink alone).
struct Capture(Arc<Mutex<Vec<Anomaly>>>);

impl Sink for Capture {
    fn accept(&mut self, batch: &[Anomaly]) {
        self.0.lock().unwrap().extend(batch.iter().cloned());
    }
}

fn new_pipeline(sinks: Vec<Box<dyn Sink>>) -> Pipeline {
    let mut exposition = Exposition::new();
    let stats = PipelineStats::register(&mut exposition.registry);
    Pipeline::new(Arc::new(AtomicUsize::new(3)), sinks, stats)
}

fn aggregates(args: &Args) -> Arc<Mutex<Aggregates>> {
    Arc::new(Mutex::new(Aggregates::new(args.max_label_sets, Duration::from_secs(300))))
}

/// Runs `events` records through `f`, renaming the unique directories on each
/// pass over the corpus; returns ns per event.
fn run(corpus: &mut Corpus, events: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let n = corpus.records.len();
    let start = Instant::now();
    let mut done = 0;
    let mut pass = 0;
    while done < events {
        // Renaming is ~unique/n of the work and keeps new label sets coming.
        corpus.rename_unique(pass);
        pass += 1;
        for r in corpus.records.iter().take(events - done) {
            f(r);
        }
        done += n.min(events - done);
    }
    start.elapsed().as_nanos() as f64 / events as f64
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pin_to(args.cpu);
    let mut corpus = Corpus::new(65_536, args.unique_every);
    let mut rows: Vec<(&str, f64)> = Vec::new();

    let mut decode = Vec::new();
    for _ in 0..args.rounds {
        let mut sum = 0u64;
        decode.push(run(&mut corpus, args.events, |r| sum += OpenEvent::decode(r).map(|e| e.path.len() as u64).unwrap_or(0)));
        std::hint::black_box(sum);
    }
    rows.push(("decode only", median(decode)));

    let mut no_sink = Vec::new();
    for _ in 0..args.rounds {
        let mut p = new_pipeline(Vec::new());
        no_sink.push(run(&mut corpus, args.events, |r| p.push_bytes(r)));
        p.flush();
    }
    rows.push(("pipeline without sinks (decode, resolve, path_prefix, intern)", median(no_sink)));

    // The sink alone, fed batches of anomalies the pipeline made (one pass's worth).
    let captured = Arc::new(Mutex::new(Vec::new()));
    {
        let mut p = new_pipeline(vec![Box::new(Capture(captured.clone()))]);
        for pass in 0..4 {
            corpus.rename_unique(1000 + pass);
            for r in &corpus.records {
                p.push_bytes(r);
            }
        }
        p.flush();
    }
    let mut anomalies = std::mem::take(&mut *captured.lock().unwrap());
    let mut sink_only = Vec::new();
    for _ in 0..args.rounds {
        let mut sink = MetricsSink { aggregates: aggregates(&args) };
        let start = Instant::now();
        let mut done = 0;
        while done < args.events {
            for chunk in anomalies.chunks_mut(badfd::pipeline::BATCH) {
                sink.accept(chunk);
            }
            done += anomalies.len();
        }
        sink_only.push(start.elapsed().as_nanos() as f64 / done as f64);
    }
    rows.push(("metrics sink alone (Aggregates::record under one lock per batch)", median(sink_only)));

    let mut full = Vec::new();
    let mut series = 0;
    let mut folded = 0;
    for _ in 0..args.rounds {
        let agg = aggregates(&args);
        let mut p = new_pipeline(vec![Box::new(MetricsSink { aggregates: agg.clone() })]);
        full.push(run(&mut corpus, args.events, |r| p.push_bytes(r)));
        p.flush();
        let a = agg.lock().unwrap();
        series = a.failures.len() + a.slow.len() + a.slow_duration.len();
        folded = a.failures.folded + a.slow.folded + a.slow_duration.folded;
    }
    rows.push(("whole pipeline into the metrics sink", median(full)));

    println!(
        "badfd bench/aggregate: {}; pinned to CPU {}; {} rounds x {} events (median), corpus 65536 records, 1 in {} in a new directory, budget {} label sets per metric",
        common::machine_line(), args.cpu, args.rounds, args.events, args.unique_every, args.max_label_sets
    );
    println!("last round of the whole pipeline: {series} label sets held, {folded} folded into other");
    println!();
    println!("| stage | ns/event | events/s |");
    println!("|---|---:|---:|");
    for (name, ns) in rows {
        println!("| {name} | {ns:.0} | {:.0} |", 1e9 / ns);
    }
    Ok(())
}

//! Memory of the real `badfd serve`: RSS idle (30 s after it is ready), then
//! under a flood of failing opens whose paths keep making new label sets (so
//! the label-set budget fills and folds), peak RSS (VmHWM); and where it goes
//! (the largest mappings from /proc/PID/smaps).

#[path = "common.rs"]
mod common;

use std::time::Duration;

use clap::Parser;
use badfd_tests::{proc_largest_mappings, proc_status_kib as status_kib};
use common::{start_serve, Generator};

#[derive(Parser)]
#[command(about = "RSS of badfd serve, idle and under load")]
struct Args {
    /// Seconds idle before the idle figure.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Seconds of flood.
    #[arg(long, default_value_t = 30)]
    load_seconds: u64,
    /// Port for `badfd serve`.
    #[arg(long, default_value_t = 19536)]
    port: u16,
    /// More `badfd serve` flags (e.g. --ringbuf-bytes 1048576).
    #[arg(last = true)]
    serve_args: Vec<String>,
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
}

fn row(what: &str, pid: u32) {
    println!(
        "| {what} | {} | {} | {} | {} | {} |",
        mib(status_kib(pid, "VmRSS")),
        mib(status_kib(pid, "VmHWM")),
        mib(status_kib(pid, "RssAnon")),
        mib(status_kib(pid, "RssFile")),
        status_kib(pid, "Threads").map_or("?".into(), |t| t.to_string()),
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let extra: Vec<&str> = args.serve_args.iter().map(String::as_str).collect();
    let serve = start_serve(args.port, &extra);
    let pid = serve.pid();
    println!("badfd bench/rss: {}; badfd serve {}", common::machine_line(), extra.join(" "));
    println!();
    println!("| when | VmRSS MiB | VmHWM MiB | RssAnon MiB | RssFile MiB | threads |");
    println!("|---|---:|---:|---:|---:|---:|");
    row("ready", pid);
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    // One scrape, as Prometheus would have done by now.
    serve.scrape();
    row(&format!("idle {} s (after one scrape)", args.idle_seconds), pid);
    let idle_maps = proc_largest_mappings(pid, 6);

    let g = Generator::start(&[0, 1], 0, true);
    for _ in 0..args.load_seconds {
        std::thread::sleep(Duration::from_secs(1));
        if args.load_seconds >= 10 {
            // A scrape now and then, as under Prometheus.
            let _ = serve.scrape();
        }
    }
    let made = g.stop();
    std::thread::sleep(Duration::from_millis(500));
    let metrics = serve.scrape();
    row(&format!("after {} s of flood", args.load_seconds), pid);
    let load_maps = proc_largest_mappings(pid, 6);
    println!();
    println!(
        "flood: {made} failing opens made, {} streamed, {} lost (ring full), {} received; label sets folded: {}",
        metrics.sum("badfd_kernel_events_total", &[("outcome", "submitted")]),
        metrics.sum("badfd_kernel_events_lost_total", &[("reason", "ringbuf_full")]),
        metrics.sum("badfd_events_received_total", &[]),
        metrics.sum("badfd_label_sets_folded_total", &[("metric", "badfd_anomaly_failures_total")]),
    );
    println!();
    println!("largest resident mappings (KiB): idle | after the flood");
    for i in 0..idle_maps.len().max(load_maps.len()) {
        let f = |m: Option<&(u64, String)>| m.map(|(k, n)| format!("{k} {n}")).unwrap_or_default();
        println!("- {} | {}", f(idle_maps.get(i)), f(load_maps.get(i)));
    }
    drop(serve);
    Ok(())
}

//! `badfd trace`: anomalies printed as they happen, for a person at a shell.

use std::time::Duration;

use badfd::{errno, probe::ringbuf_size, OpenEvent, Probe, ProbeOptions};
use clap::Args;
use exporter_common::{Config, Loss, Syscall, CONFIG_FAILURES_ONLY, FILTER_ANY, SLOW_DISABLED};

use super::ProbeArgs;

#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    /// Failed opens only.
    #[arg(long = "err")]
    failures_only: bool,
    /// Slow threshold in milliseconds (0 turns slow reporting off).
    #[arg(long, default_value_t = 10)]
    ms: u64,
    /// Only this process id.
    #[arg(long)]
    pid: Option<u32>,
    /// Only this user id.
    #[arg(long)]
    uid: Option<u32>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let mut config = Config::DEFAULT;
    config.slow_threshold_ns = if args.ms == 0 { SLOW_DISABLED } else { args.ms * 1_000_000 };
    if args.failures_only {
        config.flags |= CONFIG_FAILURES_ONLY;
    }
    config.filter_pid = args.pid.unwrap_or(FILTER_ANY);
    config.filter_uid = args.uid.unwrap_or(FILTER_ANY);
    let options = ProbeOptions {
        attach: args.probe.attach,
        ringbuf_bytes: ringbuf_size(args.probe.ringbuf_bytes),
        follow_forks: false,
        config,
    };
    let mut probe = Probe::load(&options)?;
    tracing::info!("attached {}", probe.describe());
    let mut events = probe.take_events()?.into_async()?;
    let deadline = args.duration.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut stdout = std::io::stdout().lock();
    loop {
        let stop = tokio::select! {
            _ = tokio::signal::ctrl_c() => true,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => true,
            _ = events.next_batch(|bytes| print_event(&mut stdout, bytes)) => false,
        };
        if stop {
            break;
        }
    }
    events.drain(|bytes| print_event(&mut stdout, bytes));
    let counters = probe.counters()?;
    for syscall in Syscall::ALL {
        let [ok, failed] = counters.opens[syscall as usize];
        eprintln!("{:8} ok={ok} failed={failed} slow={}", syscall.name(), counters.slow[syscall as usize]);
    }
    for loss in Loss::ALL {
        eprintln!("lost {}: {}", loss.name(), counters.losses[loss as usize]);
    }
    Ok(())
}

fn print_event(out: &mut impl std::io::Write, bytes: &[u8]) {
    match OpenEvent::decode(bytes) {
        Ok(e) => {
            let line = serde_json::json!({
                "pid": e.pid, "tid": e.tid, "comm": e.comm_lossy(), "syscall": e.syscall.name(),
                "ret": e.ret, "errno": e.errno().map(errno::name), "latency_ns": e.latency_ns,
                "path": String::from_utf8_lossy(&e.path), "dirfd": e.dirfd, "flags": e.open_flags,
            });
            let _ = writeln!(out, "{line}");
        }
        Err(error) => tracing::warn!(%error, "undecodable event"),
    }
}

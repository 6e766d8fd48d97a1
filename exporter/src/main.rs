use std::time::Duration;

use anyhow::Context as _;
use badfd::{errno, probe::ringbuf_size, AttachPreference, OpenEvent, Probe, ProbeOptions};
use clap::{Args, Parser, Subcommand};
use exporter_common::{Config, Loss, Syscall, CONFIG_FAILURES_ONLY, FILTER_ANY, SLOW_DISABLED};

#[derive(Parser)]
#[command(name = "badfd", version, about = "Failing and slow file opens, from eBPF")]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `badfd=debug`.
    #[arg(long, env = "BADFD_LOG", default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print anomalies as they happen (one JSON object per line).
    Trace(TraceArgs),
}

#[derive(Args)]
struct ProbeArgs {
    /// fentry/fexit where the kernel allows it, else syscall tracepoints.
    #[arg(long, value_enum, default_value_t = AttachPreference::Auto, env = "BADFD_ATTACH")]
    attach: AttachPreference,
    /// Size of the kernel-to-user ring buffer in bytes (rounded up to a power of two).
    #[arg(long, default_value_t = exporter_common::DEFAULT_RINGBUF_BYTES, env = "BADFD_RINGBUF_BYTES")]
    ringbuf_bytes: u32,
}

#[derive(Args)]
struct TraceArgs {
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_level).context("--log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(trace(args)),
    }
}

async fn trace(args: TraceArgs) -> anyhow::Result<()> {
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
    tracing::info!(mode = %probe.attach_mode(), "attached");
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

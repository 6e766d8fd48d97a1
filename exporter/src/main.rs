use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cmd;

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
    /// Print anomalies as they happen.
    Trace(cmd::trace::TraceArgs),
    /// Serve Prometheus metrics of failing and slow opens.
    Serve(cmd::serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_level).context("--log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(cmd::trace::run(args)),
        Command::Serve(args) => runtime.block_on(cmd::serve::run(args)),
    }
}

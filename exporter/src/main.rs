use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "badfd", version, about = "Failing and slow file opens, from eBPF")]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `badfd=debug`.
    /// Default: `warn` for trace (its output is the table), `info` otherwise.
    #[arg(long, env = "BADFD_LOG", global = true)]
    log_level: Option<String>,
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

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            // One line, the whole cause chain: what failed and how to fix it.
            eprintln!("badfd: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let default_level = match cli.command {
        Command::Trace(_) => "warn",
        #[allow(unreachable_patterns)]
        _ => "info",
    };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(level).context("--log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(cmd::trace::run(args))?,
        Command::Serve(args) => runtime.block_on(cmd::serve::run(args))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

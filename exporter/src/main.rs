use anyhow::Context as _;
use badfd::config::{Cli, Command};
use clap::Parser;

mod cmd;

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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(cli.log_level()).context("--log-level")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(cmd::trace::run(args))?,
        Command::Serve(args) => runtime.block_on(cmd::serve::run(args))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

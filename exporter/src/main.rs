use anyhow::Context as _;
use badfd::{
    config::{Cli, Command},
    logging::LogFormat,
};
use clap::Parser;

mod cmd;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    match run(cli) {
        Ok(code) => code,
        // With --log.format json every line of the log is a JSON object, the
        // fatal one too (once the log is set up).
        Err(error) if format == LogFormat::Json && badfd::logging::installed() => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            // One line, the whole cause chain: what failed and how to fix it.
            eprintln!("badfd: {}", badfd::logging::escape_controls(&format!("{error:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    badfd::logging::init(cli.log_level(), cli.log_format).context("--log-level")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(cmd::trace::run(args))?,
        Command::Serve(args) => runtime.block_on(cmd::serve::run(args))?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

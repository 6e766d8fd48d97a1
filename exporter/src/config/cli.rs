//! The `badfd` command line: the global flags and one subcommand.

use clap::{Parser, Subcommand};

use super::{serve::ServeArgs, trace::TraceArgs};

#[derive(Parser)]
#[command(name = "badfd", version, about = "Failing and slow file opens, from eBPF")]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `badfd=debug`.
    /// Default: `warn` for trace (its output is the table), `info` otherwise.
    #[arg(long, env = "BADFD_LOG", global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print anomalies as they happen.
    Trace(TraceArgs),
    /// Serve Prometheus metrics of failing and slow opens.
    Serve(ServeArgs),
}

impl Cli {
    /// The log filter: the flag, else the command's default.
    pub fn log_level(&self) -> &str {
        let default = match self.command {
            Command::Trace(_) => "warn",
            Command::Serve(_) => "info",
        };
        self.log_level.as_deref().unwrap_or(default)
    }
}

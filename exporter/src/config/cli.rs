//! The `badfd` command line: the global flags and one subcommand.

use clap::{Parser, Subcommand};

use super::{serve::ServeArgs, trace::TraceArgs};
use crate::logging::{LogFormat, LogLevel};

#[derive(Parser)]
#[command(name = "badfd", version, about = "Failing and slow file opens, from eBPF")]
pub struct Cli {
    /// Log only records of this level or above. [default: warn for trace (its output is the table), info for serve]
    #[arg(long = "log.level", env = "BADFD_LOG_LEVEL", global = true, value_enum, value_name = "LEVEL")]
    pub log_level_name: Option<LogLevel>,
    /// Log filter in tracing's directive syntax, e.g. `info` or `badfd=debug,aya=warn`:
    /// a finer --log.level, which it overrides when both are given.
    #[arg(long, env = "BADFD_LOG", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Format of badfd's own log on stderr (never with terminal colours).
    #[arg(long = "log.format", env = "BADFD_LOG_FORMAT", global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
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
    /// The log filter: `--log-level`, else `--log.level`, else the command's default.
    pub fn log_level(&self) -> &str {
        let default = match self.command {
            Command::Trace(_) => "warn",
            Command::Serve(_) => "info",
        };
        self.log_level.as_deref().or(self.log_level_name.map(LogLevel::as_str)).unwrap_or(default)
    }
}

//! The flags of `badfd serve`.

use std::path::PathBuf;

use clap::Args;

use super::{
    otlp::OtlpArgs,
    privileges::PrivilegeArgs,
    probe::ProbeArgs,
    settings::{Settings, SettingsArgs, SettingsError},
};

#[derive(Args)]
// `--ringbuf-bytes -1` is a bad value of that flag, not an unknown flag `-1`.
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub privileges: PrivilegeArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// TOML file with the same settings (snake_case keys); re-read on SIGHUP. Flags and env win over it.
    #[arg(long = "config.file", env = "BADFD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Validate the flags and config file, print the result, and exit.
    #[arg(long = "config.check")]
    pub config_check: bool,
}

impl ServeArgs {
    /// The settings from the flags and the config file as it is now (at
    /// start, and again on every SIGHUP).
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        Settings::resolve(&self.settings, self.probe.source_rate, self.config_file.as_deref())
    }
}

//! Configuration: every flag (clap), the TOML file of `serve`, the settings
//! they resolve to after validation, and the one builder of the kernel's
//! config. Everything outside this module takes the plain structs made here
//! and knows nothing of where a value came from.
//!
//! | file | what |
//! |---|---|
//! | `cli.rs` | the command line: global flags, `serve` or `trace` |
//! | `serve.rs`, `trace.rs` | each subcommand's flags |
//! | `probe.rs` | the flags of loading the probe, shared by both |
//! | `redact.rs`, `otlp.rs`, `privileges.rs` | the flags of one concern each, resolved to its plain settings |
//! | `settings.rs`, `file.rs` | `serve`'s settings: flags over the TOML file over defaults, validated; what a reload changes |
//! | `kernel.rs` | [`KernelSettings`]: what the kernel decides, turned into its `Config` in one place |
//! | `values.rs` | durations and listen addresses as people write them |

pub mod cli;
pub mod file;
pub mod kernel;
pub mod otlp;
pub mod privileges;
pub mod probe;
pub mod redact;
pub mod serve;
pub mod settings;
pub mod trace;
pub mod values;

pub use cli::{Cli, Command};
pub use kernel::KernelSettings;
pub use otlp::{OtlpArgs, OtlpConfigError};
pub use privileges::PrivilegeArgs;
pub use probe::ProbeArgs;
pub use redact::RedactArgs;
pub use serve::ServeArgs;
pub use settings::{Settings, SettingsArgs, SettingsError};
pub use trace::TraceArgs;

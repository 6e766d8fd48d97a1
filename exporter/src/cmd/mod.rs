//! The `badfd` subcommands, one module each: each wires the configuration,
//! the probe, the pipeline and its sinks together.

pub mod serve;
pub mod trace;

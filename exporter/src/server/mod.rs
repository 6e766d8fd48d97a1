//! The HTTP side of `serve`: `/metrics`, the landing page and the health
//! checks ([`http`]), behind the exporter-toolkit web config: TLS and basic
//! auth ([`web_config`]), on every `--web.listen-address` ([`listen`]).

pub mod http;
pub mod listen;
pub mod web_config;

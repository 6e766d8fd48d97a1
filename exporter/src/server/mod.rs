//! The HTTP side of `serve`: `/metrics`, the landing page and the health
//! checks ([`http`]), behind the exporter-toolkit web config: TLS and basic
//! auth ([`web_config`]).

pub mod http;
pub mod web_config;

//! What the OTLP sink needs to start: where to send, how, and what the
//! records say about their source (resolved from flags and the OpenTelemetry
//! variables by `config::otlp`).

use std::{path::PathBuf, time::Duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// Everything resolved: where, how, and what the records say about their source.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    /// The full URL: for http/protobuf it ends in the logs path.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    /// The files of an https:// endpoint (unused for http://).
    pub tls: TlsFiles,
    pub service_name: String,
    /// From OTEL_RESOURCE_ATTRIBUTES or the flag, in order, `service.name` removed
    /// (it is `service_name`).
    pub resource_attributes: Vec<(String, String)>,
    pub queue_size: usize,
    pub max_batch: usize,
    pub batch_delay: Duration,
    /// 0: no rate limit.
    pub rate_limit: u32,
    pub rate_burst: u32,
}


/// A PEM file and the flag or variable that named it (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    pub source_name: String,
    pub path: PathBuf,
}

/// The PEM files of an https:// endpoint. No `ca`: the host's trust store.
/// The client certificate and key come together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<TlsFile>,
    pub client: Option<(TlsFile, TlsFile)>,
}

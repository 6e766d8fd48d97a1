//! OTLP settings the OpenTelemetry way: `OTEL_EXPORTER_OTLP_*` variables (the
//! `_LOGS_` variant of each wins over the generic one), `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, the batch log record processor's `OTEL_BLRP_*`,
//! and `--otlp-*` flags (or their `BADFD_OTLP_*` variables) that override them
//! all; badfd's defaults come last. No endpoint anywhere means OTLP is off, and
//! so do `OTEL_SDK_DISABLED=true` and `OTEL_LOGS_EXPORTER=none`, whatever else
//! is set (they are off switches, not values a flag could give otherwise).

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::sinks::otlp::{Compression, OtlpConfig, Protocol, TlsError, TlsFile, TlsFiles};

/// OTLP flags of `badfd serve` (flattened into its arguments).
///
/// Every flag left out falls back to the OpenTelemetry variable named in its
/// help, the logs-specific variable first.
#[derive(Args, Clone, Debug, Default)]
pub struct OtlpArgs {
    /// OTLP collector to send one log record per anomaly to, e.g.
    /// http://127.0.0.1:4318 (http/protobuf; `/v1/logs` is appended when the URL has no path) or
    /// http://127.0.0.1:4317 (grpc). Else OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, then
    /// OTEL_EXPORTER_OTLP_ENDPOINT. None of them set: OTLP is off.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// grpc or http/protobuf. Else OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, then
    /// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf (the OpenTelemetry default).
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Extra request headers, `key=value,key2=value2` (values percent-encoded).
    /// Else OTEL_EXPORTER_OTLP_LOGS_HEADERS, then OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long, value_name = "K=V,..")]
    pub otlp_headers: Option<String>,
    /// Time limit of one export request, in milliseconds. Else
    /// OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, then OTEL_EXPORTER_OTLP_TIMEOUT, then
    /// OTEL_BLRP_EXPORT_TIMEOUT (one request is one export), else 10000.
    #[arg(long, value_name = "MS")]
    pub otlp_timeout_ms: Option<u64>,
    /// gzip or none. Else OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, then
    /// OTEL_EXPORTER_OTLP_COMPRESSION, else none.
    #[arg(long, value_name = "COMPRESSION")]
    pub otlp_compression: Option<String>,
    /// PEM file of the CA(s) that signed the collector's certificate (https://
    /// endpoints); it replaces the system trust store. Else
    /// OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE, then OTEL_EXPORTER_OTLP_CERTIFICATE,
    /// else the system trust store.
    #[arg(long, value_name = "PEM")]
    pub otlp_certificate: Option<PathBuf>,
    /// PEM file of badfd's client certificate, for a collector that requires
    /// mutual TLS. Else OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE, then
    /// OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE.
    #[arg(long, value_name = "PEM")]
    pub otlp_client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key. Else
    /// OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY, then OTEL_EXPORTER_OTLP_CLIENT_KEY.
    #[arg(long, value_name = "PEM")]
    pub otlp_client_key: Option<PathBuf>,
    /// gRPC endpoint without a scheme (`collector:4317`): true means plain
    /// gRPC (http://), false TLS (https://). An http:// or https:// endpoint
    /// says it itself. Else OTEL_EXPORTER_OTLP_LOGS_INSECURE, then
    /// OTEL_EXPORTER_OTLP_INSECURE, else false.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub otlp_insecure: Option<bool>,
    /// The `service.name` resource attribute. Else OTEL_SERVICE_NAME, then
    /// `service.name` in the resource attributes, else "badfd".
    #[arg(long, value_name = "NAME")]
    pub otlp_service_name: Option<String>,
    /// Resource attributes, `key=value,..` (values percent-encoded). Else
    /// OTEL_RESOURCE_ATTRIBUTES.
    #[arg(long, value_name = "K=V,..")]
    pub otlp_resource_attributes: Option<String>,
    /// Records waiting for export at most; an anomaly arriving when the queue is
    /// full is dropped and counted (badfd_otlp_records_total{outcome="dropped_queue_full"}).
    /// Else OTEL_BLRP_MAX_QUEUE_SIZE, else 16384.
    #[arg(long, value_name = "RECORDS", env = "BADFD_OTLP_QUEUE_SIZE")]
    pub otlp_queue_size: Option<usize>,
    /// Records per export request at most. Else OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, else 512.
    #[arg(long, value_name = "RECORDS", env = "BADFD_OTLP_MAX_BATCH")]
    pub otlp_max_batch: Option<usize>,
    /// How long a record may wait for its batch to fill before it is sent, in
    /// milliseconds. Else OTEL_BLRP_SCHEDULE_DELAY, else 1000.
    #[arg(long, value_name = "MS", env = "BADFD_OTLP_BATCH_DELAY_MS")]
    pub otlp_batch_delay_ms: Option<u64>,
    /// Records per second per (user, cgroup, errno) sent on average; past that (and the
    /// burst), records are suppressed and one summary record says how many. 0: no limit.
    #[arg(long, value_name = "PER_SECOND", default_value_t = DEFAULT_RATE_LIMIT, env = "BADFD_OTLP_RATE_LIMIT")]
    pub otlp_rate_limit: u32,
    /// Records per (user, cgroup, errno) that may pass at once before the rate limit applies.
    #[arg(long, value_name = "RECORDS", default_value_t = DEFAULT_RATE_BURST, env = "BADFD_OTLP_RATE_BURST")]
    pub otlp_rate_burst: u32,
}

pub const DEFAULT_QUEUE_SIZE: usize = 16384;
pub const DEFAULT_MAX_BATCH: usize = 512;
pub const DEFAULT_BATCH_DELAY_MS: u64 = 1000;
pub const DEFAULT_RATE_LIMIT: u32 = 100;
pub const DEFAULT_RATE_BURST: u32 = 1000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SERVICE_NAME: &str = "badfd";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtlpConfigError {
    #[error("{source_name}={value:?}: expected grpc or http/protobuf")]
    Protocol { source_name: String, value: String },
    #[error("{source_name}={value:?}: expected gzip or none")]
    Compression { source_name: String, value: String },
    #[error("{source_name}={value:?}: expected a whole number of milliseconds")]
    Timeout { source_name: String, value: String },
    #[error("{source_name}={value:?}: expected a whole number of records")]
    Records { source_name: String, value: String },
    #[error("{source_name}={value:?}: expected true or false")]
    Bool { source_name: String, value: String },
    #[error("{source_name}={value:?}: badfd sends its log records over OTLP only; expected otlp or none")]
    LogsExporter { source_name: String, value: String },
    #[error("{source_name}={value:?}: expected an http:// or https:// URL (or host:port for grpc)")]
    Endpoint { source_name: String, value: String },
    #[error("{given} is set but no client {missing} ({sources}): mutual TLS needs both")]
    HalfClientIdentity { given: String, missing: &'static str, sources: &'static str },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{source_name}: {problem} in {entry:?} (expected key=value,key2=value2 with percent-encoded values)")]
    KeyValues { source_name: String, entry: String, problem: &'static str },
    #[error("{source_name} must be at least 1")]
    Zero { source_name: String },
    #[error("{source_name}: the service name must not be empty")]
    EmptyServiceName { source_name: &'static str },
}

/// The logs path the OTLP/HTTP specification appends to a base endpoint.
pub const HTTP_LOGS_PATH: &str = "/v1/logs";

/// Why OTLP is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtlpOff {
    /// No endpoint in any flag or variable: the ordinary way to run without OTLP.
    NoEndpoint,
    /// `OTEL_SDK_DISABLED=true` or `OTEL_LOGS_EXPORTER=none`; the endpoint it
    /// turned off, if one was set (`source=value`).
    Switch { setting: String, endpoint: Option<String> },
}

impl std::fmt::Display for OtlpOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OtlpOff::NoEndpoint => write!(f, "no endpoint set"),
            OtlpOff::Switch { setting, endpoint: None } => write!(f, "{setting}"),
            OtlpOff::Switch { setting, endpoint: Some(e) } => write!(f, "{setting} (the endpoint {e} is not used)"),
        }
    }
}

impl OtlpArgs {
    /// Resolves flags and the process environment; `Ok(None)` when OTLP is
    /// off (logged, unless simply no endpoint is set). The TLS files of an
    /// https:// endpoint are read and checked here, so that `--config.check`
    /// and start-up stop on a bad one.
    pub fn resolve(&self) -> Result<Option<OtlpConfig>, OtlpConfigError> {
        match self.resolve_explained(|name| std::env::var(name).ok())? {
            Ok(config) => {
                if config.endpoint.starts_with("https://") {
                    crate::sinks::otlp::check_tls(&config.tls)?;
                } else if config.tls != TlsFiles::default() {
                    let names: Vec<&str> = config
                        .tls
                        .ca
                        .iter()
                        .chain(config.tls.client.iter().flat_map(|(c, k)| [c, k]))
                        .map(|f| f.source_name.as_str())
                        .collect();
                    tracing::warn!(
                        "{} set, but the OTLP endpoint {} is plain http: no TLS, records travel in cleartext",
                        names.join(" and "),
                        config.endpoint
                    );
                }
                Ok(Some(config))
            }
            Err(OtlpOff::NoEndpoint) => Ok(None),
            Err(off) => {
                tracing::info!("OTLP is off: {off}");
                Ok(None)
            }
        }
    }

    /// As `resolve` (without reading the TLS files or logging), with the
    /// environment given by `env` (for tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, OtlpConfigError> {
        Ok(self.resolve_explained(env)?.ok())
    }

    /// The configuration, or why OTLP is off.
    ///
    /// Precedence, for every setting: an explicit badfd flag (or its
    /// `BADFD_OTLP_*` variable), then `OTEL_EXPORTER_OTLP_LOGS_*`, then
    /// `OTEL_EXPORTER_OTLP_*` (then `OTEL_BLRP_*` where one maps), then badfd's
    /// default.
    pub fn resolve_explained(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Result<OtlpConfig, OtlpOff>, OtlpConfigError> {
        // An empty variable counts as unset, as the specification asks.
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        // flag, then OTEL_EXPORTER_OTLP_LOGS_<X>, then OTEL_EXPORTER_OTLP_<X>
        let pick = |flag: &Option<String>, flag_name: &str, suffix: &str| -> Option<(String, String)> {
            if let Some(v) = flag {
                return Some((flag_name.to_string(), v.clone()));
            }
            for name in [format!("OTEL_EXPORTER_OTLP_LOGS_{suffix}"), format!("OTEL_EXPORTER_OTLP_{suffix}")] {
                if let Some(v) = env(&name) {
                    return Some((name, v));
                }
            }
            None
        };
        let parse_bool = |source_name: String, value: String| match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(OtlpConfigError::Bool { source_name, value }),
        };

        // The off switches, checked (and their values validated) first.
        let sdk_disabled = match env("OTEL_SDK_DISABLED") {
            Some(v) => parse_bool("OTEL_SDK_DISABLED".into(), v)?,
            None => false,
        };
        let logs_exporter_none = match env("OTEL_LOGS_EXPORTER") {
            None => false,
            Some(value) => {
                let names: Vec<String> = value.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
                if let Some(bad) = names.iter().find(|n| *n != "otlp" && *n != "none") {
                    return Err(OtlpConfigError::LogsExporter { source_name: "OTEL_LOGS_EXPORTER".into(), value: bad.clone() });
                }
                !names.iter().any(|n| n == "otlp")
            }
        };

        let protocol = match pick(&self.otlp_protocol, "--otlp-protocol", "PROTOCOL") {
            None => Protocol::HttpProtobuf,
            Some((source_name, value)) => match value.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                _ => return Err(OtlpConfigError::Protocol { source_name, value }),
            },
        };

        // The logs-specific variable is the full URL; the generic one (and the
        // flag, when its URL has no path) is a base to which HTTP appends /v1/logs.
        let (endpoint_source, endpoint, is_base) = if let Some(v) = self.otlp_endpoint.as_ref().filter(|v| !v.is_empty()) {
            ("--otlp-endpoint".to_string(), v.clone(), url_path(v).is_none_or(|p| p.is_empty() || p == "/"))
        } else if let Some(v) = env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT".to_string(), v, false)
        } else if let Some(v) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), v, true)
        } else {
            return Ok(Err(OtlpOff::NoEndpoint));
        };
        let endpoint = endpoint.trim().to_string();
        for (off, setting) in [(sdk_disabled, "OTEL_SDK_DISABLED=true"), (logs_exporter_none, "OTEL_LOGS_EXPORTER=none")] {
            if off {
                let endpoint = Some(format!("{endpoint_source}={endpoint}"));
                return Ok(Err(OtlpOff::Switch { setting: setting.to_string(), endpoint }));
            }
        }

        // A gRPC endpoint without a scheme: TLS unless INSECURE says otherwise
        // (the specification's rule; a scheme given always wins).
        let insecure = match self.otlp_insecure {
            Some(v) => v,
            None => match pick(&None, "", "INSECURE") {
                None => false,
                Some((source_name, value)) => parse_bool(source_name, value)?,
            },
        };
        let endpoint = if protocol == Protocol::Grpc && !endpoint.contains("://") && !endpoint.is_empty() {
            format!("{}://{endpoint}", if insecure { "http" } else { "https" })
        } else {
            endpoint
        };
        if url_path(&endpoint).is_none() {
            return Err(OtlpConfigError::Endpoint { source_name: endpoint_source, value: endpoint });
        }
        let endpoint = if protocol == Protocol::HttpProtobuf && is_base {
            format!("{}{HTTP_LOGS_PATH}", endpoint.trim_end_matches('/'))
        } else {
            endpoint
        };

        let headers = match pick(&self.otlp_headers, "--otlp-headers", "HEADERS") {
            None => Vec::new(),
            Some((source_name, value)) => parse_key_values(&source_name, &value)?,
        };

        let millis = |source_name: String, value: String| {
            value.trim().parse().map(Duration::from_millis).map_err(|_| OtlpConfigError::Timeout { source_name, value })
        };
        let timeout = match self.otlp_timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => match pick(&None, "", "TIMEOUT") {
                Some((source_name, value)) => millis(source_name, value)?,
                None => match env("OTEL_BLRP_EXPORT_TIMEOUT") {
                    Some(value) => millis("OTEL_BLRP_EXPORT_TIMEOUT".into(), value)?,
                    None => DEFAULT_TIMEOUT,
                },
            },
        };

        let compression = match pick(&self.otlp_compression, "--otlp-compression", "COMPRESSION") {
            None => Compression::None,
            Some((source_name, value)) => match value.trim() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => return Err(OtlpConfigError::Compression { source_name, value }),
            },
        };

        let tls = {
            let file = |flag: &Option<PathBuf>, flag_name: &str, suffix: &str| {
                let as_string = flag.as_ref().map(|p| p.display().to_string());
                pick(&as_string, flag_name, suffix).map(|(source_name, path)| TlsFile { source_name, path: path.into() })
            };
            let ca = file(&self.otlp_certificate, "--otlp-certificate", "CERTIFICATE");
            let cert = file(&self.otlp_client_certificate, "--otlp-client-certificate", "CLIENT_CERTIFICATE");
            let key = file(&self.otlp_client_key, "--otlp-client-key", "CLIENT_KEY");
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                (Some(c), None) => {
                    return Err(OtlpConfigError::HalfClientIdentity {
                        given: c.source_name,
                        missing: "key",
                        sources: "--otlp-client-key, OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    })
                }
                (None, Some(k)) => {
                    return Err(OtlpConfigError::HalfClientIdentity {
                        given: k.source_name,
                        missing: "certificate",
                        sources: "--otlp-client-certificate, OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    })
                }
            };
            TlsFiles { ca, client }
        };

        let mut resource_attributes = match (&self.otlp_resource_attributes, env("OTEL_RESOURCE_ATTRIBUTES")) {
            (Some(v), _) => parse_key_values("--otlp-resource-attributes", v)?,
            (None, Some(v)) => parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &v)?,
            (None, None) => Vec::new(),
        };
        let service_from_attributes =
            resource_attributes.iter().rev().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone());
        resource_attributes.retain(|(k, _)| k != "service.name");
        let service_name = self
            .otlp_service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .or(service_from_attributes)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());

        if self.otlp_service_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(OtlpConfigError::EmptyServiceName { source_name: "--otlp-service-name" });
        }

        // badfd's own queue and batches, which the batch log record
        // processor's variables describe: flag (or BADFD_ variable), then OTEL_BLRP_, then default.
        let records = |flag: Option<usize>, flag_name: &str, var: &str, default: usize| -> Result<usize, OtlpConfigError> {
            let (source_name, n) = match (flag, env(var)) {
                (Some(n), _) => (flag_name.to_string(), n),
                (None, Some(value)) => {
                    let n = value.trim().parse().map_err(|_| OtlpConfigError::Records { source_name: var.into(), value })?;
                    (var.to_string(), n)
                }
                (None, None) => return Ok(default),
            };
            if n == 0 {
                return Err(OtlpConfigError::Zero { source_name });
            }
            Ok(n)
        };
        let queue_size = records(self.otlp_queue_size, "--otlp-queue-size", "OTEL_BLRP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)?;
        let max_batch = records(self.otlp_max_batch, "--otlp-max-batch", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_BATCH)?;
        let batch_delay = match (self.otlp_batch_delay_ms, env("OTEL_BLRP_SCHEDULE_DELAY")) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(value)) => millis("OTEL_BLRP_SCHEDULE_DELAY".into(), value)?,
            (None, None) => Duration::from_millis(DEFAULT_BATCH_DELAY_MS),
        };
        Ok(Ok(OtlpConfig {
            endpoint,
            protocol,
            headers,
            timeout,
            compression,
            tls,
            service_name,
            resource_attributes,
            queue_size,
            max_batch,
            batch_delay,
            rate_limit: self.otlp_rate_limit,
            rate_burst: self.otlp_rate_burst.max(1),
        }))
    }
}

impl OtlpArgs {
    /// The flags' defaults, as clap would fill them, with `endpoint` set.
    pub fn with_endpoint(endpoint: &str, protocol: Protocol) -> OtlpArgs {
        OtlpArgs {
            otlp_endpoint: Some(endpoint.to_string()),
            otlp_protocol: Some(protocol.name().to_string()),
            otlp_rate_limit: DEFAULT_RATE_LIMIT,
            otlp_rate_burst: DEFAULT_RATE_BURST,
            ..OtlpArgs::default()
        }
    }
}

/// The path of an http(s) URL ("" when it has none); None when `url` is not one.
fn url_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if authority_end == 0 {
        return None;
    }
    Some(&rest[authority_end..])
}

/// `key=value,key2=value2` as the OpenTelemetry variables write them: keys and
/// values trimmed, values percent-decoded.
pub fn parse_key_values(source_name: &str, text: &str) -> Result<Vec<(String, String)>, OtlpConfigError> {
    let mut out = Vec::new();
    for entry in text.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let err = |problem| OtlpConfigError::KeyValues { source_name: source_name.to_string(), entry: entry.to_string(), problem };
        let (key, value) = entry.split_once('=').ok_or_else(|| err("no '='"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(err("empty key"));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| err("bad percent-encoding"))?;
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn args() -> OtlpArgs {
        OtlpArgs { otlp_endpoint: None, otlp_protocol: None, ..OtlpArgs::with_endpoint("", Protocol::Grpc) }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn flattens_into_a_command_with_its_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            otlp: OtlpArgs,
        }
        let s = Serve::try_parse_from(["serve", "--otlp-endpoint", "http://c:4317", "--otlp-protocol", "grpc", "--otlp-rate-limit", "0"])
            .unwrap();
        let c = s.otlp.resolve_with(|_| None).unwrap().unwrap();
        assert_eq!((c.endpoint.as_str(), c.protocol, c.rate_limit), ("http://c:4317", Protocol::Grpc, 0));
        assert_eq!((c.queue_size, c.max_batch, c.rate_burst), (DEFAULT_QUEUE_SIZE, DEFAULT_MAX_BATCH, DEFAULT_RATE_BURST));
        let s = Serve::try_parse_from(["serve"]).unwrap();
        assert_eq!(s.otlp.resolve_with(|_| None), Ok(None));
    }

    #[test]
    fn no_endpoint_means_off() {
        assert_eq!(args().resolve_with(env(&[("OTEL_SERVICE_NAME", "x")])), Ok(None));
        assert_eq!(args().resolve_with(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])), Ok(None));
    }

    #[test]
    fn generic_http_endpoint_gets_the_logs_path_and_logs_variables_win() {
        let c = args().resolve_with(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://c:4318/v1/logs");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.service_name, "badfd");

        let c = args()
            .resolve_with(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9999/custom"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1"),
                ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "api-key=s%3Dcret, x = y "),
                ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://logs:9999/custom", "the logs endpoint is used as given");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.headers, vec![("api-key".into(), "s=cret".into()), ("x".into(), "y".into())]);
        assert_eq!(c.compression, Compression::Gzip);
    }

    #[test]
    fn flags_override_the_environment() {
        let a = OtlpArgs {
            otlp_endpoint: Some("http://flag:4317".into()),
            otlp_protocol: Some("grpc".into()),
            otlp_headers: Some("k=v".into()),
            otlp_timeout_ms: Some(300),
            otlp_compression: Some("none".into()),
            otlp_service_name: Some("svc".into()),
            otlp_resource_attributes: Some("deployment.environment.name=prod".into()),
            ..args()
        };
        let c = a
            .resolve_with(env(&[
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://env:1"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_SERVICE_NAME", "env-svc"),
                ("OTEL_RESOURCE_ATTRIBUTES", "a=b"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://flag:4317", "gRPC endpoints get no path");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.headers, vec![("k".into(), "v".into())]);
        assert_eq!(c.timeout, Duration::from_millis(300));
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.service_name, "svc");
        assert_eq!(c.resource_attributes, vec![("deployment.environment.name".into(), "prod".into())]);

        let http = OtlpArgs { otlp_protocol: Some("http/protobuf".into()), ..a.clone() };
        assert_eq!(http.resolve_with(env(&[])).unwrap().unwrap().endpoint, "http://flag:4317/v1/logs");
        let custom = OtlpArgs { otlp_endpoint: Some("http://flag:4318/ingest".into()), ..http };
        assert_eq!(custom.resolve_with(env(&[])).unwrap().unwrap().endpoint, "http://flag:4318/ingest");
    }

    #[test]
    fn service_name_precedence() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,k8s.node.name=n1")]);
        let c = args().resolve_with(e).unwrap().unwrap();
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(c.resource_attributes, vec![("k8s.node.name".into(), "n1".into())]);
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ]);
        assert_eq!(args().resolve_with(e).unwrap().unwrap().service_name, "from-env");
    }

    #[test]
    fn bad_input_names_its_source() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(
            args().resolve_with(e).unwrap_err().to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": expected grpc or http/protobuf"
        );
        let e = env(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4317")]);
        assert!(matches!(args().resolve_with(e), Err(OtlpConfigError::Endpoint { .. })));
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]);
        assert!(args().resolve_with(e).unwrap_err().to_string().starts_with("OTEL_EXPORTER_OTLP_HEADERS: no '='"));
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]);
        assert!(matches!(args().resolve_with(e), Err(OtlpConfigError::Timeout { .. })));
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
        assert!(matches!(args().resolve_with(e), Err(OtlpConfigError::Compression { .. })));
        assert_eq!(parse_key_values("X", "a=%zz").unwrap_err().to_string(), "X: bad percent-encoding in \"a=%zz\" (expected key=value,key2=value2 with percent-encoded values)");
    }

    fn on(a: &OtlpArgs, vars: &[(&str, &str)]) -> OtlpConfig {
        a.resolve_with(env(vars)).unwrap().expect("OTLP on")
    }

    #[test]
    fn batch_processor_variables_fill_in_for_badfds_settings_and_flags_win() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        let c = on(&args(), &base);
        assert_eq!((c.queue_size, c.max_batch, c.batch_delay), (DEFAULT_QUEUE_SIZE, DEFAULT_MAX_BATCH, Duration::from_millis(DEFAULT_BATCH_DELAY_MS)));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);

        let blrp = [
            base[0],
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "4096"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", " 128 "),
            ("OTEL_BLRP_SCHEDULE_DELAY", "250"),
            ("OTEL_BLRP_EXPORT_TIMEOUT", "7000"),
        ];
        let c = on(&args(), &blrp);
        assert_eq!((c.queue_size, c.max_batch, c.batch_delay), (4096, 128, Duration::from_millis(250)));
        assert_eq!(c.timeout, Duration::from_millis(7000), "OTEL_BLRP_EXPORT_TIMEOUT bounds the one request of an export");

        // An explicit flag (or its BADFD_OTLP_ variable, which clap folds into it) wins.
        let flags = OtlpArgs {
            otlp_queue_size: Some(100),
            otlp_max_batch: Some(10),
            otlp_batch_delay_ms: Some(5),
            otlp_timeout_ms: Some(300),
            ..args()
        };
        let c = on(&flags, &blrp);
        assert_eq!((c.queue_size, c.max_batch, c.batch_delay, c.timeout), (100, 10, Duration::from_millis(5), Duration::from_millis(300)));

        // The exporter's own timeout variables are more specific than the processor's.
        let c = on(&args(), &[blrp[0], blrp[4], ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")]);
        assert_eq!(c.timeout, Duration::from_millis(2000));
        let c = on(&args(), &[blrp[0], blrp[4], ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"), ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "3000")]);
        assert_eq!(c.timeout, Duration::from_millis(3000));

        let bad = |var: &str, value: &str| args().resolve_with(env(&[base[0], (var, value)])).unwrap_err().to_string();
        assert_eq!(bad("OTEL_BLRP_MAX_QUEUE_SIZE", "0"), "OTEL_BLRP_MAX_QUEUE_SIZE must be at least 1");
        assert_eq!(bad("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "lots"), "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=\"lots\": expected a whole number of records");
        assert_eq!(bad("OTEL_BLRP_SCHEDULE_DELAY", "1s"), "OTEL_BLRP_SCHEDULE_DELAY=\"1s\": expected a whole number of milliseconds");
        assert_eq!(bad("OTEL_BLRP_EXPORT_TIMEOUT", "-1"), "OTEL_BLRP_EXPORT_TIMEOUT=\"-1\": expected a whole number of milliseconds");
        let zero_flag = OtlpArgs { otlp_max_batch: Some(0), ..args() };
        assert_eq!(zero_flag.resolve_with(env(&base)).unwrap_err().to_string(), "--otlp-max-batch must be at least 1");
    }

    #[test]
    fn sdk_disabled_and_logs_exporter_none_turn_otlp_off_whatever_the_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (var, value) in [("OTEL_SDK_DISABLED", "true"), ("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_LOGS_EXPORTER", "none"), ("OTEL_LOGS_EXPORTER", " None ")] {
            let off = args().resolve_explained(env(&[endpoint, (var, value)])).unwrap().unwrap_err();
            let setting = if var == "OTEL_SDK_DISABLED" { "OTEL_SDK_DISABLED=true" } else { "OTEL_LOGS_EXPORTER=none" };
            assert_eq!(off.to_string(), format!("{setting} (the endpoint OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318 is not used)"));
            // Even an explicit flag: the switch is the one way to say "off".
            let flagged = OtlpArgs { otlp_endpoint: Some("http://flag:4318".into()), ..args() };
            assert_eq!(flagged.resolve_with(env(&[(var, value)])), Ok(None));
        }
        // Without an endpoint OTLP is off anyway, for the ordinary reason.
        assert_eq!(args().resolve_explained(env(&[("OTEL_SDK_DISABLED", "true")])).unwrap(), Err(OtlpOff::NoEndpoint));
        for (var, value) in [("OTEL_SDK_DISABLED", "false"), ("OTEL_SDK_DISABLED", ""), ("OTEL_LOGS_EXPORTER", "otlp"), ("OTEL_LOGS_EXPORTER", "otlp,none")] {
            assert!(args().resolve_with(env(&[endpoint, (var, value)])).unwrap().is_some(), "{var}={value}");
        }
        let err = args().resolve_with(env(&[endpoint, ("OTEL_SDK_DISABLED", "1")])).unwrap_err();
        assert_eq!(err.to_string(), "OTEL_SDK_DISABLED=\"1\": expected true or false");
        let err = args().resolve_with(env(&[endpoint, ("OTEL_LOGS_EXPORTER", "console")])).unwrap_err();
        assert_eq!(err.to_string(), "OTEL_LOGS_EXPORTER=\"console\": badfd sends its log records over OTLP only; expected otlp or none");
    }

    #[test]
    fn tls_files_flag_then_logs_variable_then_generic_each_on_its_own() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318");
        let file = |source: &str, path: &str| TlsFile { source_name: source.into(), path: path.into() };
        let c = on(&args(), &[base]);
        assert_eq!(c.tls, TlsFiles::default(), "no files: the system trust store");

        let vars = [
            base,
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic/ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/generic/client.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/generic/client.key"),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/logs/client.key"),
        ];
        let c = on(&args(), &vars);
        assert_eq!(c.tls.ca, Some(file("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs/ca.pem")));
        assert_eq!(
            c.tls.client,
            Some((file("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/generic/client.pem"), file("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/logs/client.key")))
        );

        let flags = OtlpArgs {
            otlp_certificate: Some("/flag/ca.pem".into()),
            otlp_client_certificate: Some("/flag/client.pem".into()),
            ..args()
        };
        let c = on(&flags, &vars);
        assert_eq!(c.tls.ca, Some(file("--otlp-certificate", "/flag/ca.pem")));
        assert_eq!(c.tls.client.unwrap().0, file("--otlp-client-certificate", "/flag/client.pem"));

        let err = args().resolve_with(env(&[base, ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/k")])).unwrap_err().to_string();
        assert_eq!(
            err,
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY is set but no client certificate (--otlp-client-certificate, \
             OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE): mutual TLS needs both"
        );
        let half = OtlpArgs { otlp_client_certificate: Some("/c".into()), ..args() };
        assert!(matches!(half.resolve_with(env(&[base])), Err(OtlpConfigError::HalfClientIdentity { missing: "key", .. })));
    }

    #[test]
    fn insecure_decides_the_scheme_of_a_grpc_endpoint_without_one() {
        let grpc = |vars: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
            all.extend_from_slice(vars);
            args().resolve_with(env(&all))
        };
        assert_eq!(grpc(&[]).unwrap().unwrap().endpoint, "https://collector:4317", "secure by default");
        assert_eq!(grpc(&[("OTEL_EXPORTER_OTLP_INSECURE", "true")]).unwrap().unwrap().endpoint, "http://collector:4317");
        let logs_wins = [("OTEL_EXPORTER_OTLP_INSECURE", "true"), ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "False")];
        assert_eq!(grpc(&logs_wins).unwrap().unwrap().endpoint, "https://collector:4317");
        let flag = OtlpArgs { otlp_insecure: Some(true), ..args() };
        let c = on(&flag, &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_INSECURE", "false")]);
        assert_eq!(c.endpoint, "http://collector:4317");
        // A scheme given wins over INSECURE.
        let c = on(&args(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_INSECURE", "false")]);
        assert_eq!(c.endpoint, "http://c:4317");
        assert_eq!(
            grpc(&[("OTEL_EXPORTER_OTLP_INSECURE", "yes")]).unwrap_err().to_string(),
            "OTEL_EXPORTER_OTLP_INSECURE=\"yes\": expected true or false"
        );
        // HTTP needs its scheme.
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"), ("OTEL_EXPORTER_OTLP_INSECURE", "true")]);
        assert!(matches!(args().resolve_with(e), Err(OtlpConfigError::Endpoint { .. })));
    }
}

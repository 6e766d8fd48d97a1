//! OTLP settings the OpenTelemetry way: `OTEL_EXPORTER_OTLP_*` variables (the
//! `_LOGS_` variant of each wins over the generic one), `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, and `--otlp-*` flags that override them all.
//! No endpoint anywhere means OTLP is off.

use std::time::Duration;

use clap::Args;

use crate::sinks::otlp::{Compression, OtlpConfig, Protocol};

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
    /// OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, then OTEL_EXPORTER_OTLP_TIMEOUT, else 10000.
    #[arg(long, value_name = "MS")]
    pub otlp_timeout_ms: Option<u64>,
    /// gzip or none. Else OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, then
    /// OTEL_EXPORTER_OTLP_COMPRESSION, else none.
    #[arg(long, value_name = "COMPRESSION")]
    pub otlp_compression: Option<String>,
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
    #[arg(long, value_name = "RECORDS", default_value_t = DEFAULT_QUEUE_SIZE, env = "BADFD_OTLP_QUEUE_SIZE")]
    pub otlp_queue_size: usize,
    /// Records per export request at most.
    #[arg(long, value_name = "RECORDS", default_value_t = DEFAULT_MAX_BATCH, env = "BADFD_OTLP_MAX_BATCH")]
    pub otlp_max_batch: usize,
    /// How long a record may wait for its batch to fill before it is sent, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BATCH_DELAY_MS, env = "BADFD_OTLP_BATCH_DELAY_MS")]
    pub otlp_batch_delay_ms: u64,
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
    #[error("{source_name}={value:?}: expected an http:// or https:// URL")]
    Endpoint { source_name: String, value: String },
    #[error("{source_name}: {problem} in {entry:?} (expected key=value,key2=value2 with percent-encoded values)")]
    KeyValues { source_name: String, entry: String, problem: &'static str },
    #[error("--otlp-{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("{source_name}: the service name must not be empty")]
    EmptyServiceName { source_name: &'static str },
}

/// The logs path the OTLP/HTTP specification appends to a base endpoint.
pub const HTTP_LOGS_PATH: &str = "/v1/logs";

impl OtlpArgs {
    /// Resolves flags and the process environment; `Ok(None)` when no endpoint
    /// is set (OTLP off).
    pub fn resolve(&self) -> Result<Option<OtlpConfig>, OtlpConfigError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// As `resolve`, with the environment given by `env` (for tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, OtlpConfigError> {
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
            return Ok(None);
        };
        let endpoint = endpoint.trim().to_string();
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

        let timeout = match self.otlp_timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => match pick(&None, "", "TIMEOUT") {
                None => DEFAULT_TIMEOUT,
                Some((source_name, value)) => Duration::from_millis(
                    value.trim().parse().map_err(|_| OtlpConfigError::Timeout { source_name, value })?,
                ),
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
        if self.otlp_queue_size == 0 {
            return Err(OtlpConfigError::Zero { what: "queue-size" });
        }
        if self.otlp_max_batch == 0 {
            return Err(OtlpConfigError::Zero { what: "max-batch" });
        }
        Ok(Some(OtlpConfig {
            endpoint,
            protocol,
            headers,
            timeout,
            compression,
            service_name,
            resource_attributes,
            queue_size: self.otlp_queue_size,
            max_batch: self.otlp_max_batch,
            batch_delay: Duration::from_millis(self.otlp_batch_delay_ms),
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
            otlp_queue_size: DEFAULT_QUEUE_SIZE,
            otlp_max_batch: DEFAULT_MAX_BATCH,
            otlp_batch_delay_ms: DEFAULT_BATCH_DELAY_MS,
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
}

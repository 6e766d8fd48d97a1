//! The OTLP exporter of the SDK, built from the config: gRPC or HTTP/protobuf,
//! compression, the configured headers (winning over the OTEL_ variables'),
//! TLS for https:// endpoints (`tls.rs`), and the resource every record carries.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;

use super::{
    config::{Compression, OtlpConfig, Protocol},
    tls, StartError,
};

/// `service.name`, `host.name`, the configured resource attributes, and the
/// SDK's `telemetry.sdk.*`.
pub(super) fn resource(config: &OtlpConfig) -> Resource {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let mut attributes: Vec<KeyValue> =
        config.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    if !config.resource_attributes.iter().any(|(k, _)| k == "host.name") && !host.is_empty() {
        attributes.push(KeyValue::new("host.name", host));
    }
    Resource::builder_empty()
        .with_detector(Box::new(opentelemetry_sdk::resource::TelemetryResourceDetector))
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

/// The last error of the HTTP client, with its causes: the SDK reports a
/// failed HTTP request only as "network error", which says nothing of a
/// refused certificate or a refused connection.
pub(super) type TransportError = std::sync::Arc<std::sync::Mutex<Option<String>>>;

pub(super) fn build_exporter(config: &OtlpConfig) -> Result<(opentelemetry_otlp::LogExporter, TransportError), StartError> {
    let transport_error = TransportError::default();
    let tls = if config.endpoint.starts_with("https://") { Some(tls::load(&config.tls)?) } else { None };
    let built = match config.protocol {
        Protocol::Grpc => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout);
            if let Some(tls) = tls {
                use opentelemetry_otlp::tonic_types::transport::{ClientTlsConfig, Identity};
                // tonic builds its own rustls config (on ring) from the same anchors and identity.
                let mut tls_config = ClientTlsConfig::new().trust_anchors(tls.anchors);
                if let Some((cert, key)) = tls.identity_pem {
                    tls_config = tls_config.identity(Identity::from_pem(cert, key));
                }
                b = b.with_tls_config(tls_config);
            }
            if config.compression == Compression::Gzip {
                b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // Set in an interceptor, which runs after the SDK has added the headers
            // it reads from the environment, so that the flag's values win.
            let mut headers = Vec::new();
            for (k, v) in &config.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| StartError::Header(k.clone()))?;
                let value = tonic::metadata::MetadataValue::try_from(v.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                headers.push((key, value));
            }
            if !headers.is_empty() {
                b = b.with_interceptor(move |mut req: tonic::Request<()>| {
                    for (k, v) in &headers {
                        req.metadata_mut().insert(k.clone(), v.clone());
                    }
                    Ok(req)
                });
            }
            b.build()
        }
        Protocol::HttpProtobuf => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout);
            if config.compression == Compression::Gzip {
                b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // The SDK adds the headers of the OTEL_ variables over those given
            // to it; set the flag's last, in the client, so that they win.
            let mut headers = Vec::new();
            for (k, v) in &config.headers {
                let name = http::HeaderName::try_from(k.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                let value = http::HeaderValue::try_from(v.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                headers.push((name, value));
            }
            // Always badfd's own client: reqwest is built without a default
            // crypto provider, so it gets its rustls config (on ring) from here.
            let rustls_config = tls.map_or_else(tls::plain, |t| t.rustls);
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .tls_backend_preconfigured(rustls_config)
                .build()
                .map_err(|e| StartError::HttpClient(e.to_string()))?;
            b.with_http_client(WithHeaders { client, headers, last_error: transport_error.clone() }).build()
        }
    };
    let exporter = built.map_err(|source| StartError::Build { endpoint: config.endpoint.clone(), source })?;
    Ok((exporter, transport_error))
}

/// An HTTP client that sets the configured headers on every request, and
/// keeps the last error with its causes.
#[derive(Debug)]
struct WithHeaders {
    client: reqwest::Client,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    last_error: TransportError,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for WithHeaders {
    async fn send_bytes(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let sent = self.client.send_bytes(request).await;
        if let Err(e) = &sent {
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        }
        sent
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpArgs;

    #[tokio::test]
    async fn https_builds_for_both_transports_and_a_bad_ca_file_is_a_start_error() {
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let config = OtlpArgs::with_endpoint("https://collector:4317", protocol).resolve_with(|_| None).unwrap().unwrap();
            // The system roots of this host (an https:// endpoint without a CA file).
            build_exporter(&config).unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
            let mut bad = config.clone();
            bad.tls.ca = Some(super::super::config::TlsFile {
                source_name: "OTEL_EXPORTER_OTLP_CERTIFICATE".into(),
                path: "/no/such/ca.pem".into(),
            });
            let err = build_exporter(&bad).unwrap_err().to_string();
            assert!(err.contains("OTEL_EXPORTER_OTLP_CERTIFICATE=/no/such/ca.pem"), "{err}");
            // A plain endpoint reads no TLS file.
            bad.endpoint = "http://collector:4317".into();
            build_exporter(&bad).unwrap();
        }
    }
}

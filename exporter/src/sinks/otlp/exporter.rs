//! The OTLP exporter of the SDK, built from the config: gRPC or HTTP/protobuf,
//! compression, the configured headers (winning over the OTEL_ variables'),
//! and the resource every record carries.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;

use super::{
    config::{Compression, OtlpConfig, Protocol},
    StartError,
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

pub(super) fn build_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::LogExporter, StartError> {
    if config.endpoint.starts_with("https://") {
        return Err(StartError::NoTls(config.endpoint.clone()));
    }
    let built = match config.protocol {
        Protocol::Grpc => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(config.timeout);
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
            if !config.headers.is_empty() {
                // The SDK adds the headers of the OTEL_ variables over those given
                // to it; set the flag's last, in the client, so that they win.
                let mut headers = Vec::new();
                for (k, v) in &config.headers {
                    let name = http::HeaderName::try_from(k.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                    let value = http::HeaderValue::try_from(v.as_str()).map_err(|_| StartError::Header(k.clone()))?;
                    headers.push((name, value));
                }
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| StartError::HttpClient(e.to_string()))?;
                b = b.with_http_client(WithHeaders { client, headers });
            }
            b.build()
        }
    };
    built.map_err(|source| StartError::Build { endpoint: config.endpoint.clone(), source })
}

/// An HTTP client that sets the configured headers on every request.
#[derive(Debug)]
struct WithHeaders {
    client: reqwest::Client,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
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
        self.client.send_bytes(request).await
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpArgs;

    #[test]
    fn https_is_refused_with_a_clear_error() {
        let config = OtlpArgs::with_endpoint("https://collector:4317", Protocol::Grpc).resolve_with(|_| None).unwrap().unwrap();
        let err = build_exporter(&config).unwrap_err();
        assert!(matches!(err, StartError::NoTls(_)), "{err}");
    }
}

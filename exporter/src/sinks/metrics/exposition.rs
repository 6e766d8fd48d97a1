//! The registry every part of `serve` registers into, rendered as OpenMetrics
//! or the classic text format as the scraper asks.

use std::time::Instant;

use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::{histogram::Histogram, MetricType},
    registry::Registry,
};

use super::{classic::openmetrics_to_classic, exemplar::RENDERING_CLASSIC};

/// `badfd_build_info`: the version, the git revision it was built from
/// (exporter/build.rs; "unknown" outside a git checkout) and the compiler's
/// version, as Go exporters give `version`, `revision` and `goversion`.
#[derive(Debug)]
pub struct BuildInfo;

impl BuildInfo {
    pub const REVISION: &'static str = env!("BADFD_GIT_REVISION");
    pub const RUSTC_VERSION: &'static str = env!("BADFD_RUSTC_VERSION");
}

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut m = encoder.encode_descriptor("build", "The badfd build: version, git revision, compiler version.", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION")), ("revision", BuildInfo::REVISION), ("rustc_version", BuildInfo::RUSTC_VERSION)])
    }
}

/// The registry every part of the exporter registers into at start-up, and the
/// encode-time histogram. Immutable once serving starts.
pub struct Exposition {
    pub registry: Registry,
    /// Metrics without the `badfd_` prefix: the standard `process_*` ones.
    pub unprefixed: Registry,
    pub encode_seconds: Histogram,
    /// The size of the last response: the next one starts with room for it
    /// (a 10 MB exposition otherwise grows through a dozen copies).
    last_len: std::sync::atomic::AtomicUsize,
}

impl Exposition {
    pub fn new() -> Exposition {
        let mut registry = Registry::with_prefix("badfd");
        let encode_seconds = Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]);
        registry.register("scrape_encode_seconds", "Time to encode one /metrics response", encode_seconds.clone());
        registry.register_collector(Box::new(BuildInfo));
        let mut unprefixed = Registry::default();
        unprefixed.register_collector(Box::new(super::ProcessCollector));
        Exposition { registry, unprefixed, encode_seconds, last_len: std::sync::atomic::AtomicUsize::new(64 * 1024) }
    }

    /// The whole exposition, OpenMetrics or classic.
    pub fn render(&self, format: Format) -> String {
        use std::sync::atomic::Ordering;
        let start = Instant::now();
        let last_len = self.last_len.load(Ordering::Relaxed);
        let mut text = String::with_capacity(last_len + last_len / 8);
        RENDERING_CLASSIC.set(format == Format::Classic);
        let encoded = {
            use prometheus_client::encoding::text::{encode_eof, encode_registry};
            encode_registry(&mut text, &self.registry).and_then(|_| encode_registry(&mut text, &self.unprefixed)).and_then(|_| encode_eof(&mut text))
        };
        RENDERING_CLASSIC.set(false);
        if let Err(error) = encoded {
            tracing::error!(%error, "encoding metrics failed");
        }
        let text = match format {
            Format::OpenMetrics => text,
            Format::Classic => openmetrics_to_classic(&text),
        };
        self.last_len.store(text.len(), Ordering::Relaxed);
        self.encode_seconds.observe(start.elapsed().as_secs_f64());
        text
    }
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// OpenMetrics unless the scraper asks for plain text only (Prometheus
    /// before 2.5, curl with `-H 'Accept: text/plain'`, promtool).
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if !a.contains("application/openmetrics-text") && a.contains("text/plain") => Format::Classic,
            _ => Format::OpenMetrics,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_format() {
        assert_eq!(Format::negotiate(None), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")),
            Format::OpenMetrics
        );
    }
}

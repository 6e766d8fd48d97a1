//! The HTTP side of `badfd serve`: `/metrics`, the landing page, health checks.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};

use super::web_config::{require_auth, WebState};
use crate::{
    config::{values::format_duration, Settings},
    sinks::metrics::{Aggregates, Exposition, Format, SharedProbe},
};

#[derive(Clone)]
pub struct AppState {
    pub exposition: Arc<Exposition>,
    pub probe: SharedProbe,
    pub aggregates: Arc<Mutex<Aggregates>>,
    /// The running settings (after the last successful reload).
    pub settings: Arc<Mutex<Settings>>,
    pub config_file: Option<std::path::PathBuf>,
}

/// Every endpoint. `/metrics` and the landing page (it shows the running
/// configuration and path prefixes) need the web config's basic auth when it
/// has users; the health checks never do (they tell only up/ready, and a
/// kubelet probe should need no password in the pod spec).
pub fn router(state: AppState, web: Arc<WebState>) -> Router {
    let protected = Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(web, require_auth));
    Router::new()
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/-/ready", get(ready))
        .merge(protected)
        .with_state(state)
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    // Encoding reads the kernel counters (a syscall per map), and gzip is CPU
    // work too: off the async thread.
    let exposition = state.exposition.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let text = exposition.render(format);
        let zipped = if gzip { gzip_bytes(text.as_bytes()).map(Some) } else { Ok(None) };
        zipped.map(|zipped| (text, zipped))
    });
    // The body depends on Accept-Encoding: caches must key on it.
    let vary = (header::VARY, "Accept-Encoding");
    match rendered.await {
        Ok(Ok((_, Some(zipped)))) => ([(header::CONTENT_TYPE, format.content_type()), (header::CONTENT_ENCODING, "gzip"), vary], zipped).into_response(),
        Ok(Ok((text, None))) => ([(header::CONTENT_TYPE, format.content_type()), vary], text).into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("gzip failed: {error}\n")).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding failed: {error}\n")).into_response(),
    }
}

/// Whether `Accept-Encoding` takes gzip: listed (any case) and not with
/// `q=0` (Prometheus sends `gzip`; a `*` alone is not taken as gzip, since
/// plain text is always acceptable).
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.unwrap_or("").split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
        name.eq_ignore_ascii_case("gzip") && !refused
    })
}

/// gzip at the fastest level: an exposition is repetitive text that shrinks
/// about tenfold even so, and a scrape should not cost much CPU.
fn gzip_bytes(text: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 8), flate2::Compression::fast());
    encoder.write_all(text)?;
    encoder.finish()
}

fn attached(state: &AppState) -> bool {
    state.probe.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

async fn ready(State(state): State<AppState>) -> Response {
    if attached(&state) {
        (StatusCode::OK, "Ready: programs attached\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready: programs not attached\n").into_response()
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

fn redaction_summary(r: &crate::pipeline::redact::RedactSettings) -> String {
    use crate::pipeline::redact::RedactMode;
    let mode = match r.mode {
        RedactMode::None => return "none".into(),
        RedactMode::Hash => "hash",
        RedactMode::Drop => "drop",
    };
    match r.under.is_empty() {
        true => format!("{mode}, after the first {} name(s) of every path", r.keep),
        false => format!("{mode}, below {}", r.under.join(", ")),
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let (mode, fallback, config) = {
        let probe = state.probe.lock().unwrap_or_else(|e| e.into_inner());
        match probe.as_ref() {
            Some(p) => (p.attach_mode().name().to_string(), p.fallback_reason().map(str::to_string), Some(p.config())),
            None => ("not attached".to_string(), None, None),
        }
    };
    let settings = state.settings.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (slow, failures) = {
        let a = state.aggregates.lock().unwrap_or_else(|e| e.into_inner());
        (a.worst_slow(20), a.worst_failures(20))
    };
    let mut h = String::with_capacity(8192);
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>badfd exporter</title>\
        <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}td.n{text-align:right}code{background:#f4f4f4}</style>\
        </head><body><h1>badfd</h1><p>Failing and slow file opens, from eBPF.</p>\
        <p><a href=\"/metrics\">Metrics</a> · <a href=\"/-/ready\">Ready</a> · <a href=\"/-/healthy\">Healthy</a></p>");
    let _ = write!(h, "<h2>Probe</h2><table><tr><th>attach mode</th><td>{}</td></tr>", escape(&mode));
    if let Some(reason) = &fallback {
        let _ = write!(h, "<tr><th>fentry fallback reason</th><td>{}</td></tr>", escape(reason));
    }
    if let Some(c) = config {
        let _ = write!(h, "<tr><th>kernel slow threshold</th><td>{}</td></tr>", if c.slow_threshold_ns == u64::MAX { "off".to_string() } else { format!("{} ns", c.slow_threshold_ns) });
    }
    let _ = write!(h, "<tr><th>kernel release</th><td>{}</td></tr></table>", escape(&crate::probe::kernel_release()));
    h.push_str("<h2>Running configuration</h2><table>");
    let rows = [
        ("config file", state.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into())),
        ("slow threshold", settings.slow_threshold.map(format_duration).unwrap_or_else(|| "off".into())),
        ("failures only", settings.failures_only.to_string()),
        ("filter pid", settings.filter_pid.map(|p| p.to_string()).unwrap_or_else(|| "any".into())),
        ("filter uid", settings.filter_uid.map(|p| p.to_string()).unwrap_or_else(|| "any".into())),
        ("path prefix depth", settings.path_prefix_depth.to_string()),
        ("max label sets per metric", settings.max_label_sets.to_string()),
        ("label set TTL", format_duration(settings.label_set_ttl)),
        ("listen address", settings.listen_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        ("web config file (TLS, basic auth)", settings.web_config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none): plain HTTP, no authentication".into())),
        ("path redaction", redaction_summary(&settings.paths_redact)),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td><code>{}</code></td></tr>", escape(&v));
    }
    h.push_str("</table><h2>Slowest opens (by p99)</h2>");
    if slow.is_empty() {
        h.push_str("<p>No slow opens yet.</p>");
    } else {
        h.push_str("<table><tr><th>comm</th><th>path prefix</th><th>slow opens</th><th>p50</th><th>p99</th><th>max</th></tr>");
        for r in &slow {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                escape(&r.comm), escape(&r.path_prefix), r.count, micros(r.p50_us), micros(r.p99_us), micros(r.max_us)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Most failures</h2>");
    if failures.is_empty() {
        h.push_str("<p>No failed opens yet.</p>");
    } else {
        h.push_str("<table><tr><th>comm</th><th>path prefix</th><th>errno</th><th>failures</th></tr>");
        for r in &failures {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=n>{}</td></tr>",
                escape(&r.comm), escape(&r.path_prefix), r.errno.unwrap_or(""), r.count
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    Html(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SettingsArgs;
    use std::io::{Read, Write};

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("identity,gzip")));
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("deflate, br, *")));
        assert!(!accepts_gzip(Some("x-gzip-not")));
        let text = "badfd_ready 1\n".repeat(100);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gzip_bytes(text.as_bytes()).unwrap()[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
    }

    fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(address).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
    }

    /// Before the programs are attached (or after they are detached) the
    /// exporter is healthy but not ready, and says so in /metrics too.
    #[test]
    fn not_ready_without_attached_programs() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let settings = Settings::resolve(&SettingsArgs::default(), None, None).unwrap();
        let probe: SharedProbe = Arc::new(Mutex::new(None));
        let mut exposition = Exposition::new();
        exposition.registry.register_collector(Box::new(crate::sinks::metrics::KernelCollector { probe: probe.clone(), found_later: Default::default() }));
        let state = AppState {
            exposition: Arc::new(exposition),
            probe,
            aggregates: Arc::new(Mutex::new(Aggregates::new(10, std::time::Duration::from_secs(60)))),
            settings: Arc::new(Mutex::new(settings)),
            config_file: None,
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let web = Arc::new(WebState::load(None).unwrap());
        runtime.spawn(async move { axum::serve(listener, router(state, web)).await });
        assert_eq!(get(address, "/-/ready").0, 503);
        assert_eq!(get(address, "/-/healthy").0, 200);
        assert_eq!(get(address, "/healthz").0, 200);
        let (status, metrics) = get(address, "/metrics");
        assert_eq!(status, 200);
        assert!(metrics.contains("\nbadfd_ready 0\n"), "{metrics}");
        assert!(!metrics.contains("badfd_opens_total"), "no kernel counters without a probe");
        let (status, page) = get(address, "/");
        assert_eq!(status, 200);
        assert!(page.contains("not attached") && page.contains("<code>10ms</code>"));
    }
}

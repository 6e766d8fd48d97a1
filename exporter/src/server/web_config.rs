//! `--web.config.file`: TLS and basic auth for the HTTP endpoints, in the YAML
//! shape of Prometheus's exporter-toolkit, so a file written for
//! node_exporter works here:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths: to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # mTLS (or VerifyClientCertIfGiven)
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Differences from exporter-toolkit: rustls speaks TLS 1.2 and 1.3 only (no
//! TLS10/TLS11), `cipher_suites`, `curve_preferences` and `http_server_config`
//! are not offered (an unknown key is an error, never ignored), and
//! `RequestClientCert`/`RequireAnyClientCert` (a client certificate nobody
//! verifies) are refused.
//!
//! What is protected: TLS covers every endpoint (one port). Basic auth covers
//! `/metrics` and the landing page `/` (which shows the running configuration
//! and path prefixes); the health endpoints `/-/healthy`, `/-/ready` and
//! `/healthz` answer without credentials, so that a kubelet probe needs no
//! password in the pod spec; they tell nothing but up/ready.
//!
//! SIGHUP re-reads the file: new certificates, client CAs and users take effect
//! for new connections and requests; a broken file keeps the running one (and
//! the reload is counted as failed). Turning TLS on or off needs a restart.

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use serde::Deserialize;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, Semaphore},
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// bcrypt is slow on purpose; at most this many checks run at once so that a
/// flood of wrong passwords cannot take every core from the event thread.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// Successful checks remembered (as SHA-256 of hash and password, never the
/// password), so that a scrape every few seconds costs one bcrypt run, not one each.
const VERIFIED_CACHE: usize = 64;

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"badfd\", charset=\"UTF-8\"";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFileConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFileConfig {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// One loaded, validated web config.
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    /// user -> bcrypt hash
    users: BTreeMap<String, String>,
    /// What the file asked for, for logs and the landing page.
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
#[error("web config file {path} (--web.config.file, web_config_file): {message}")]
pub struct WebConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl WebConfig {
    /// No file: plain HTTP, no auth.
    pub fn none() -> WebConfig {
        WebConfig { tls: None, users: BTreeMap::new(), description: "plain HTTP, no authentication".into() }
    }

    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let fail = |message: String| WebConfigError { path: path.to_path_buf(), message: message.replace('\n', " ").trim().to_string() };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(tls) => Some(Arc::new(server_config(&tls, dir).map_err(fail)?)),
            None => None,
        };
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(fail(format!("basic_auth_users: user name {user:?} contains `:`, which basic auth cannot carry")));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(fail(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                )));
            }
        }
        let mut description = if tls.is_some() { "TLS" } else { "plain HTTP" }.to_string();
        description.push_str(&match users.len() {
            0 => ", no authentication".to_string(),
            n => format!(", basic auth ({n} user{})", if n == 1 { "" } else { "s" }),
        });
        Ok(WebConfig { tls, users, description })
    }

    pub fn tls(&self) -> Option<&Arc<ServerConfig>> {
        self.tls.as_ref()
    }
}

fn tls_version(name: &str, key: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!("tls_server_config.{key}: {name} is not offered (TLS12 and TLS13 only: older versions are broken)")),
        other => Err(format!("tls_server_config.{key}: {other:?} is not a TLS version (TLS12 or TLS13)")),
    }
}

fn server_config(tls: &TlsFileConfig, dir: &Path) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert_file, key_file) = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => (dir.join(c), dir.join(k)),
        (None, _) => return Err("tls_server_config.cert_file is missing".into()),
        (_, None) => return Err("tls_server_config.key_file is missing".into()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_server_config.cert_file {}: no PEM certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|e| format!("tls_server_config.key_file {}: {e}", key_file.display()))?;

    let min = tls_version(tls.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = tls_version(tls.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    let order = |v: &SupportedProtocolVersion| if v.version == rustls::ProtocolVersion::TLSv1_2 { 0 } else { 1 };
    if order(min) > order(max) {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13].into_iter().filter(|v| order(v) >= order(min) && order(v) <= order(max)).collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verify = match auth_type {
        "NoClientCert" | "" => None,
        "RequireAndVerifyClientCert" => Some(true),
        "VerifyClientCertIfGiven" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type {auth_type}: a client certificate nobody verifies is not offered; use RequireAndVerifyClientCert with client_ca_file"
            ))
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type {other:?}: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
    };
    let builder = match (verify, &tls.client_ca_file) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(_)) => {
            return Err("tls_server_config: client_ca_file is set but client_auth_type is NoClientCert (set RequireAndVerifyClientCert)".into())
        }
        (Some(_), None) => return Err(format!("tls_server_config.client_auth_type {auth_type} needs client_ca_file")),
        (Some(required), Some(ca)) => {
            let ca = dir.join(ca);
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))? {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("tls_server_config.client_ca_file {}: no PEM certificate in it", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not go together: {e}"))?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Self-metrics of the web side.
#[derive(Clone, Debug, Default)]
pub struct WebStats {
    pub unauthorized: Counter,
    pub tls_handshake_failures: Counter,
}

/// The running web config, swapped whole on SIGHUP.
pub struct WebState {
    file: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
    verified: Mutex<lru::LruCache<[u8; 32], ()>>,
    password_checks: Semaphore,
    pub stats: WebStats,
}

impl WebState {
    /// Reads `file` (None: plain HTTP, no auth).
    pub fn load(file: Option<PathBuf>) -> Result<WebState, WebConfigError> {
        let config = match &file {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::none(),
        };
        Ok(WebState {
            file,
            current: RwLock::new(Arc::new(config)),
            verified: Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(VERIFIED_CACHE).expect("not zero"))),
            password_checks: Semaphore::new(CONCURRENT_PASSWORD_CHECKS),
            stats: WebStats::default(),
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "web_unauthorized_requests",
            "HTTP requests refused for missing or wrong basic-auth credentials (answered 401)",
            self.stats.unauthorized.clone(),
        );
        registry.register(
            "web_tls_handshake_failures",
            "TLS connections dropped before a request: failed or timed-out handshakes (plain HTTP to the TLS port, untrusted client certificates)",
            self.stats.tls_handshake_failures.clone(),
        );
    }

    pub fn current(&self) -> Arc<WebConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Re-reads the file; on any error the running config stays.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let Some(path) = &self.file else { return Ok(()) };
        let new = WebConfig::load(path)?;
        if new.tls.is_some() != self.current().tls.is_some() {
            return Err(WebConfigError {
                path: path.clone(),
                message: "turning TLS on or off takes a restart (kept the running web config)".into(),
            });
        }
        tracing::info!(config = %new.description, "web config reloaded");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
    }

    /// Whether `user`/`password` is one of the configured users. Unknown users
    /// cost one bcrypt run too, so that timing does not tell which users exist.
    async fn check(&self, config: &WebConfig, user: &str, password: String) -> bool {
        let (hash, known) = match config.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (config.users.values().next().cloned().unwrap_or_default(), false),
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(hash.as_bytes());
        ctx.update(b"\0");
        ctx.update(password.as_bytes());
        let digest: [u8; 32] = ctx.finish().as_ref().try_into().expect("SHA-256 has 32 bytes");
        if known && self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).is_some() {
            return true;
        }
        let Ok(_slot) = self.password_checks.acquire().await else { return false };
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await.unwrap_or(false);
        if matches && known {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).put(digest, ());
        }
        matches && known
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Middleware: lets the request through when no users are configured or its
/// credentials match; else 401 with `WWW-Authenticate`.
pub async fn require_auth(State(web): State<Arc<WebState>>, request: Request, next: Next) -> Response {
    let config = web.current();
    if config.users.is_empty() {
        return next.run(request).await;
    }
    if let Some((user, password)) = basic_credentials(request.headers()) {
        if web.check(&config, &user, password).await {
            return next.run(request).await;
        }
    }
    web.stats.unauthorized.inc();
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, WWW_AUTHENTICATE)], "Unauthorized\n").into_response()
}

/// A listener that hands axum TLS streams: TCP connections are accepted at
/// once and their handshakes run in their own tasks (with a timeout), so a
/// slow or hostile client never holds up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, web: Arc<WebState>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(tcp, web, tx));
        Ok(TlsListener { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(tcp: TcpListener, web: Arc<WebState>, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: wait, as axum's own loop does.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(config) = web.current().tls().cloned() else {
            continue; // TLS cannot be turned off by a reload
        };
        let (ready, web) = (ready.clone(), web.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    web.stats.tls_handshake_failures.inc();
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    web.stats.tls_handshake_failures.inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it never does on its own): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every mistake in the file is one line naming the file and the key.
    #[test]
    fn bad_files_are_one_clear_line() {
        let dir = std::env::temp_dir().join(format!("badfd-web-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("basic_auth_users:\n  alice: plain-text\n", "basic_auth_users.alice: not a bcrypt hash"),
            ("tls_server_config:\n  cert_file: a.crt\n", "key_file is missing"),
            ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "cert_file"),
            ("tls_server_config:\n  cert_file: x\n  key_file: y\n  cipher_suites: [a]\n", "unknown field `cipher_suites`"),
            ("basic_auth_user:\n  a: b\n", "unknown field `basic_auth_user`"),
            ("basic_auth_users: [\n", "web config file"),
        ];
        for (text, says) in cases {
            let file = write(&dir, "web.yml", text);
            let e = WebConfig::load(&file).err().unwrap_or_else(|| panic!("{text} loaded")).to_string();
            assert!(e.contains(says) && !e.contains('\n') && e.contains("web.yml"), "{text:?} -> {e}");
        }
        let hash = bcrypt::hash("secret", 4).unwrap();
        let file = write(&dir, "web.yml", &format!("basic_auth_users:\n  alice: '{hash}'\n"));
        let config = WebConfig::load(&file).unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.description, "plain HTTP, basic auth (1 user)");
        assert!(WebConfig::load(&write(&dir, "empty.yml", "")).unwrap().users.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_basic_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Basic YWxpY2U6czNjcjN0OndpdGg6Y29sb25z".parse().unwrap());
        assert_eq!(basic_credentials(&headers), Some(("alice".into(), "s3cr3t:with:colons".into())));
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }
}

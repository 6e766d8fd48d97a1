//! Real OTLP log receivers on 127.0.0.1 for tests and the OTLP benchmark: the
//! `opentelemetry-proto` crate's gRPC LogsService served by tonic, and an
//! HTTP/protobuf endpoint (axum, prost decoding, gzip understood); either of
//! them plain or over TLS (rustls on ring), optionally requiring a client
//! certificate (mutual TLS), with every refused handshake counted.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        logs_service_server::{LogsService, LogsServiceServer},
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
    logs::v1::LogRecord,
};
use prost::Message;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// What a receiver got.
#[derive(Debug, Default)]
pub struct Received {
    /// Requests, kept only when the receiver keeps them (tests, not the benchmark).
    requests: Mutex<Vec<ExportLogsServiceRequest>>,
    keep: bool,
    records: AtomicU64,
    requests_count: AtomicU64,
    /// Request headers seen (first request's), lower-case names.
    headers: Mutex<Vec<(String, String)>>,
    /// TLS handshakes that failed, with why (as the server saw it).
    tls_failures: Mutex<Vec<String>>,
}

impl Received {
    fn take(&self, req: ExportLogsServiceRequest, headers: Vec<(String, String)>) {
        let n: usize = req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
        self.records.fetch_add(n as u64, Ordering::Relaxed);
        self.requests_count.fetch_add(1, Ordering::Relaxed);
        {
            let mut h = self.headers.lock().unwrap();
            if h.is_empty() {
                *h = headers;
            }
        }
        if self.keep {
            self.requests.lock().unwrap().push(req);
        }
    }
}

/// A log record as received, with the resource attributes of its request.
#[derive(Clone, Debug)]
pub struct ReceivedRecord {
    pub resource: Vec<KeyValue>,
    pub record: LogRecord,
}

impl ReceivedRecord {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        find(&self.record.attributes, key)
    }

    pub fn resource_attr(&self, key: &str) -> Option<&Value> {
        find(&self.resource, key)
    }

    pub fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attr(key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    pub fn bool_attr(&self, key: &str) -> Option<bool> {
        match self.attr(key) {
            Some(Value::BoolValue(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn body(&self) -> Option<&str> {
        match self.record.body.as_ref().and_then(|b: &AnyValue| b.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub received: Arc<Received>,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The TLS receiver's accept loop (handshakes), if any.
    acceptor: Option<JoinHandle<()>>,
}

/// The TLS of a receiver: its certificate chain and key (PEM) and, for
/// mutual TLS, the CA its clients' certificates must be signed by.
#[derive(Clone, Debug)]
pub struct ReceiverTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

impl ReceiverTls {
    fn server_config(&self, transport: Transport) -> rustls::ServerConfig {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("receiver certificate");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("receiver key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(cert.expect("client CA")).expect("client CA");
                }
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).expect("receiver certificate and key");
        // gRPC needs h2 negotiated; the HTTP receiver speaks HTTP/1.1.
        config.alpn_protocols = match transport {
            Transport::Grpc => vec![b"h2".to_vec()],
            Transport::Http => vec![b"http/1.1".to_vec()],
        };
        config
    }
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Accepts TCP connections on `listener` and hands on those whose TLS
/// handshake succeeds; each failed one is recorded in `received`.
fn spawn_acceptor(
    listener: TcpListener,
    config: rustls::ServerConfig,
    received: Arc<Received>,
) -> (tokio::sync::mpsc::Receiver<(TlsStream, SocketAddr)>, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, received) = (acceptor.clone(), tx.clone(), received.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Err(e) => received.tls_failures.lock().unwrap().push(e.to_string()),
                }
            });
        }
    });
    (rx, task)
}

/// The TLS connections of the acceptor, as axum's listener.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsStream, SocketAddr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

struct GrpcLogs(Arc<Received>);

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        self.0.take(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

async fn http_logs(
    axum::extract::State(received): axum::extract::State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let bytes = if gzip {
        use std::io::Read;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
            return (StatusCode::BAD_REQUEST, Vec::new());
        }
        out
    } else {
        body.to_vec()
    };
    match ExportLogsServiceRequest::decode(&bytes[..]) {
        Ok(req) => {
            let headers =
                headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
            received.take(req, headers);
            (StatusCode::OK, ExportLogsServiceResponse { partial_success: None }.encode_to_vec())
        }
        Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
    }
}

impl Receiver {
    /// Serves on `listener` (bound to 127.0.0.1) until stopped or dropped.
    /// `keep`: keep every request for inspection (else only counted).
    pub fn start(listener: TcpListener, transport: Transport, keep: bool) -> Receiver {
        Receiver::start_with(listener, transport, keep, None)
    }

    /// As `start`, over TLS when `tls` is given.
    pub fn start_with(listener: TcpListener, transport: Transport, keep: bool, tls: Option<ReceiverTls>) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Received { keep, ..Received::default() });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stop_rx.await;
        };
        let is_tls = tls.is_some();
        let mut acceptor = None;
        let task = match (transport, tls) {
            (Transport::Grpc, tls) => {
                let service = LogsServiceServer::new(GrpcLogs(received.clone()))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .max_decoding_message_size(64 << 20);
                let server = tonic::transport::Server::builder().add_service(service);
                match tls {
                    None => tokio::spawn(async move {
                        server
                            .serve_with_incoming_shutdown(
                                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                                shutdown,
                            )
                            .await
                            .expect("gRPC receiver");
                    }),
                    Some(tls) => {
                        use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, StreamExt as _};
                        let (rx, accepting) = spawn_acceptor(listener, tls.server_config(transport), received.clone());
                        acceptor = Some(accepting);
                        let streams = ReceiverStream::new(rx).map(|(stream, _)| Ok::<_, std::io::Error>(stream));
                        tokio::spawn(async move {
                            server.serve_with_incoming_shutdown(streams, shutdown).await.expect("gRPC receiver");
                        })
                    }
                }
            }
            (Transport::Http, tls) => {
                let app = Router::new()
                    .route("/v1/logs", post(http_logs))
                    .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
                    .with_state(received.clone());
                match tls {
                    None => {
                        // Without TCP_NODELAY, small responses wait on delayed ACKs (40 ms).
                        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                            let _ = tcp.set_nodelay(true);
                        });
                        tokio::spawn(async move {
                            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.expect("HTTP receiver");
                        })
                    }
                    Some(tls) => {
                        let (rx, accepting) = spawn_acceptor(listener, tls.server_config(transport), received.clone());
                        acceptor = Some(accepting);
                        let listener = TlsListener { rx, addr };
                        tokio::spawn(async move {
                            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.expect("HTTP receiver");
                        })
                    }
                }
            }
        };
        Receiver { addr, transport, received, tls: is_tls, stop: Some(stop_tx), task: Some(task), acceptor }
    }

    /// A TLS receiver on a free 127.0.0.1 port.
    pub async fn bind_tls(transport: Transport, keep: bool, tls: ReceiverTls) -> Receiver {
        Receiver::start_with(TcpListener::bind("127.0.0.1:0").await.unwrap(), transport, keep, Some(tls))
    }

    /// TLS handshakes this receiver refused (or that failed), with why.
    pub fn tls_failures(&self) -> Vec<String> {
        self.received.tls_failures.lock().unwrap().clone()
    }

    pub async fn bind(transport: Transport, keep: bool) -> Receiver {
        Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), transport, keep)
    }

    /// The base URL (the exporter appends /v1/logs for HTTP).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    pub fn record_count(&self) -> u64 {
        self.received.records.load(Ordering::Relaxed)
    }

    pub fn request_count(&self) -> u64 {
        self.received.requests_count.load(Ordering::Relaxed)
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        self.received.headers.lock().unwrap().clone()
    }

    /// Every record received so far (receivers started with `keep`).
    pub fn records(&self) -> Vec<ReceivedRecord> {
        let requests = self.received.requests.lock().unwrap();
        let mut out = Vec::new();
        for req in requests.iter() {
            for rl in &req.resource_logs {
                let resource = rl.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        out.push(ReceivedRecord { resource: resource.clone(), record: r.clone() });
                    }
                }
            }
        }
        out
    }

    /// Waits until at least `count` records arrived or `timeout` passed.
    pub async fn wait_for(&self, count: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.record_count() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.record_count()
    }

    /// Stops serving and frees the port.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        if let Some(t) = self.acceptor.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for t in [self.task.take(), self.acceptor.take()].into_iter().flatten() {
            t.abort();
        }
    }
}

impl ReceivedRecord {
    /// A bytes-valued attribute (reliability tests: paths that are not UTF-8).
    pub fn bytes_attr(&self, key: &str) -> Option<&[u8]> {
        match self.attr(key) {
            Some(Value::BytesValue(b)) => Some(b),
            _ => None,
        }
    }
}

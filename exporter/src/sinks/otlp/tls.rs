//! TLS of https:// OTLP endpoints, the same for gRPC and HTTP/protobuf:
//! rustls on ring (no OpenSSL, no aws-lc). The trust anchors are the
//! collector's CA when one is given (`OTEL_EXPORTER_OTLP_CERTIFICATE`: it
//! replaces the system roots, as the Go SDK and the Collector do), else the
//! host's trust store (`rustls-native-certs`: SSL_CERT_FILE, SSL_CERT_DIR,
//! /etc/ssl/certs...), so that a CA an operator installed on the host is
//! trusted and no root list is frozen into the binary. A client certificate
//! and key make it mutual TLS.
//!
//! Every file is read and checked here, at start-up: a file that is missing,
//! unreadable, not PEM, or a key that does not fit its certificate is an error
//! naming the variable (or flag) and the path.

use std::sync::Arc;

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, TrustAnchor},
    ClientConfig, RootCertStore,
};

use super::config::{TlsFile, TlsFiles};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("{source_name}={path}: cannot read it: {error}")]
    Read { source_name: String, path: String, error: String },
    #[error("{source_name}={path}: not a PEM file of {what}: {error}")]
    NotPem { source_name: String, path: String, what: &'static str, error: String },
    #[error("{source_name}={path}: not a usable CA certificate: {error}")]
    BadCa { source_name: String, path: String, error: String },
    #[error("{cert_source}={cert_path} and {key_source}={key_path}: not a usable client certificate and key: {error}")]
    Identity { cert_source: String, cert_path: String, key_source: String, key_path: String, error: String },
    #[error(
        "no CA certificate found in the system trust store (SSL_CERT_FILE, SSL_CERT_DIR, /etc/ssl/certs){detail}; \
         give the collector's CA in OTEL_EXPORTER_OTLP_CERTIFICATE (or --otlp-certificate)"
    )]
    NoSystemRoots { detail: String },
}

/// What both transports need: the trust anchors and client identity as
/// tonic takes them, and the same as one rustls config for reqwest.
pub(super) struct TlsMaterial {
    pub(super) anchors: Vec<TrustAnchor<'static>>,
    /// PEM certificate chain and key, checked.
    pub(super) identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) rustls: ClientConfig,
}

fn read(file: &TlsFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|e| TlsError::Read {
        source_name: file.source_name.clone(),
        path: file.path.display().to_string(),
        error: e.to_string(),
    })
}

fn certificates(file: &TlsFile, pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let not_pem = |error: String| TlsError::NotPem {
        source_name: file.source_name.clone(),
        path: file.path.display().to_string(),
        what,
        error,
    };
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| not_pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(not_pem("no BEGIN CERTIFICATE section".into()));
    }
    Ok(certs)
}

/// Checks and loads `files`: the material of an https:// endpoint.
pub(super) fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
    let mut roots = RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in certificates(ca, &read(ca)?, "CA certificates")? {
                roots.add(cert).map_err(|e| TlsError::BadCa {
                    source_name: ca.source_name.clone(),
                    path: ca.path.display().to_string(),
                    error: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let detail = found.errors.iter().map(|e| format!(": {e}")).collect::<String>();
                return Err(TlsError::NoSystemRoots { detail });
            }
        }
    }
    roots_to_material(roots, files.client.as_ref())
}

/// The rustls config of a plain http:// endpoint: never used for a handshake,
/// but reqwest (built without a default crypto provider) needs one.
pub(super) fn plain() -> ClientConfig {
    builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth()
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

fn roots_to_material(roots: RootCertStore, client: Option<&(TlsFile, TlsFile)>) -> Result<TlsMaterial, TlsError> {
    let anchors = roots.roots.clone();
    let with_roots = builder().with_root_certificates(roots);
    let (rustls, identity_pem) = match client {
        None => (with_roots.with_no_client_auth(), None),
        Some((cert, key)) => {
            let cert_pem = read(cert)?;
            let key_pem = read(key)?;
            let chain = certificates(cert, &cert_pem, "client certificates")?;
            let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NotPem {
                source_name: key.source_name.clone(),
                path: key.path.display().to_string(),
                what: "a private key (PKCS#8, PKCS#1 or SEC1)",
                error: e.to_string(),
            })?;
            // rustls checks that the key is one it can sign with and that it
            // fits the certificate.
            let config = with_roots.with_client_auth_cert(chain, private_key).map_err(|e| TlsError::Identity {
                cert_source: cert.source_name.clone(),
                cert_path: cert.path.display().to_string(),
                key_source: key.source_name.clone(),
                key_path: key.path.display().to_string(),
                error: e.to_string(),
            })?;
            (config, Some((cert_pem, key_pem)))
        }
    };
    Ok(TlsMaterial { anchors, identity_pem, rustls })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(source_name: &str, path: PathBuf) -> TlsFile {
        TlsFile { source_name: source_name.into(), path }
    }

    fn temp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("badfd-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn bad_files_name_the_variable_and_the_path() {
        let missing = file("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem".into());
        let err = load(&TlsFiles { ca: Some(missing), client: None }).err().unwrap().to_string();
        assert!(err.starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE=/no/such/ca.pem: cannot read it: "), "{err}");

        let path = temp("not-pem.pem", b"just text\n");
        let err = load(&TlsFiles { ca: Some(file("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", path.clone())), client: None })
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            format!("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE={}: not a PEM file of CA certificates: no BEGIN CERTIFICATE section", path.display())
        );

        let garbage = temp("garbage.pem", b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
        let err = load(&TlsFiles { ca: Some(file("--otlp-certificate", garbage.clone())), client: None }).err().unwrap();
        assert!(matches!(&err, TlsError::NotPem { .. } | TlsError::BadCa { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("--otlp-certificate={}: ", garbage.display())), "{err}");
    }
}

//! The HTTP client used for every upstream: hyper's pooled client over rustls.
//!
//! Trust: the system's roots (loaded once per process) plus the upstream's `ca_file`, so a
//! private registry with its own CA works without touching the system store. HTTP/2 is
//! negotiated by ALPN where the upstream offers it.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Errors of a streamed request body (a client's upload as it arrives).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body streamed to the upstream (pushes).
pub type PushBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// The client for requests with bodies: same trust, same client certificate, own pool.
pub type StreamingClient = Client<HttpsConnector<HttpConnector>, PushBody>;

/// The system's trust roots, loaded once.
fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let res = rustls_native_certs::load_native_certs();
        for e in &res.errors {
            tracing::debug!(error = %e, "could not load a system trust root");
        }
        res.certs
    })
}

/// Reads every certificate of a PEM file; the error names the file and the problem.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// Builds the client for one upstream (`client_cert`: PEM chain and key for mutual TLS).
pub fn build(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<HttpClient, String> {
    build_with(ca_file, client_cert, connect_timeout)
}

/// As [`build`], for requests whose bodies stream (pushes).
pub fn build_streaming(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<StreamingClient, String> {
    build_with(ca_file, client_cert, connect_timeout)
}

pub(crate) fn build_with<B>(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots);
    let tls = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = read_pem_certs(cert)?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: cannot read a PEM private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("{}: unusable client certificate: {e}", cert.display()))?
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

//! The HTTP client used for every upstream: hyper's pooled client over rustls.
//!
//! Trust: the system's roots (loaded once per process) plus the upstream's `ca_file`, so a
//! private registry with its own CA works without touching the system store. HTTP/2 is
//! negotiated by ALPN where the upstream offers it.
//!
//! Invariants of an upstream's client ([`build_upstream`]):
//! - The mTLS client certificate is offered only to the upstream's own host (the host of its
//!   `url`, any port): a redirect target or a token realm elsewhere gets a TLS handshake
//!   without it ([`Connector`] holds one TLS configuration with it and one without).
//! - Connections keep the address policy of [`super::redirect`] (see [`super::guard`]).

use super::guard::{Guard, Tcp};
use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

pub type HttpClient = Client<Connector, Empty<Bytes>>;

/// Errors of a streamed request body (a client's upload as it arrives), and of the connectors.
pub use super::guard::BoxError;
/// A request body streamed to the upstream (pushes).
pub type PushBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// The client for requests with bodies: same trust, same client certificate, own pool.
pub type StreamingClient = Client<Connector, PushBody>;

/// TLS over the guarded TCP connector, choosing the TLS configuration by host: the one with
/// the client certificate for the upstream's own host only.
#[derive(Clone)]
pub struct Connector {
    /// The upstream's host (`None`: a client that is not an upstream's; every host is "own").
    own: Option<Guard>,
    with_cert: HttpsConnector<Tcp>,
    without_cert: HttpsConnector<Tcp>,
}

impl Connector {
    fn pick(&mut self, dst: &Uri) -> &mut HttpsConnector<Tcp> {
        let own = match &self.own {
            None => true,
            Some(g) => dst.host().is_some_and(|h| g.is_own(h)),
        };
        if own {
            &mut self.with_cert
        } else {
            &mut self.without_cert
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = <HttpsConnector<Tcp> as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.with_cert.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.without_cert.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        self.pick(&dst).call(dst)
    }
}

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

/// Builds a client for any host (peers, the shared bucket, Wharf itself): no address
/// policy; `client_cert` (PEM chain and key for mutual TLS) offered to every host.
pub fn build(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<HttpClient, String> {
    build_with(ca_file, client_cert, connect_timeout)
}

/// As [`build`], for any body type.
pub(crate) fn build_with<B>(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<Client<Connector, B>, String>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    make(None, ca_file, client_cert, connect_timeout)
}

/// Builds the client of the upstream at `url` (any body type: pulls and pushes): the address
/// policy of [`super::redirect`], the client certificate for `url`'s host only.
pub fn build_upstream<B>(
    url: &Uri,
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<Client<Connector, B>, String>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    make(Some(Guard::new(url)), ca_file, client_cert, connect_timeout)
}

fn make<B>(
    guard: Option<Guard>,
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    connect_timeout: Duration,
) -> Result<Client<Connector, B>, String>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let roots = roots(ca_file)?;
    let config = || -> Result<_, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots.clone()))
    };
    let without = config()?.with_no_client_auth();
    let with = match client_cert {
        None => without.clone(),
        Some((cert, key)) => {
            let certs = read_pem_certs(cert)?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: cannot read a PEM private key: {e}", key.display()))?;
            config()?
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("{}: unusable client certificate: {e}", cert.display()))?
        }
    };
    let tcp = Tcp::new(guard.clone(), connect_timeout);
    let https = |tls: rustls::ClientConfig| {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp.clone())
    };
    let connector = Connector {
        own: guard,
        with_cert: https(with),
        without_cert: https(without),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// The system's roots plus those of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    Ok(Arc::new(roots))
}

//! A TLS terminator on loopback in front of a plain-HTTP server: an `https://` endpoint whose
//! certificate a private CA signed, for servers that speak only HTTP (Garage's S3 API). It
//! offers HTTP/1.1 only by ALPN and copies bytes both ways; stopped when dropped.
//! [`start_asking_client_certs`] also asks every client for a certificate (optional) and
//! records, per connection, whether one was presented.

use super::upstream::Certs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct TlsFront {
    pub addr: SocketAddr,
    /// Per accepted TLS connection: whether the client presented a certificate.
    pub client_certs: Arc<Mutex<Vec<bool>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `certs`' server certificate on a free loopback port, forwarding to `target`.
pub async fn start(certs: &Certs, target: SocketAddr) -> TlsFront {
    start_with(certs, target, None).await
}

/// As [`start`], asking clients for a certificate signed by `client_ca` (not requiring one).
pub async fn start_asking_client_certs(
    certs: &Certs,
    target: SocketAddr,
    client_ca: &Path,
) -> TlsFront {
    start_with(certs, target, Some(client_ca)).await
}

async fn start_with(certs: &Certs, target: SocketAddr, client_ca: Option<&Path>) -> TlsFront {
    // Wharf's own loader (the registry listener's), as a fixed certificate.
    let cert = wharf::http::tls::Reloadable::new(&certs.server_pem, &certs.server_key)
        .expect("server cert and key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("tls versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in wharf::upstream::client::read_pem_certs(ca).expect("client CA") {
                roots.add(c).expect("client CA certificate");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(cert));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client_certs = Arc::new(Mutex::new(Vec::new()));
    let seen = client_certs.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let presented = tls.get_ref().1.peer_certificates().is_some();
                seen.lock().expect("lock").push(presented);
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront {
        addr,
        client_certs,
        task,
    }
}

//! A TLS terminator on loopback in front of a plain-HTTP server: an `https://` endpoint whose
//! certificate a private CA signed, for servers that speak only HTTP (Garage's S3 API). It
//! offers HTTP/1.1 only by ALPN and copies bytes both ways; stopped when dropped.

use super::upstream::Certs;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct TlsFront {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `certs`' server certificate on a free loopback port, forwarding to `target`.
pub async fn start(certs: &Certs, target: SocketAddr) -> TlsFront {
    // Wharf's own loader (the registry listener's), as a fixed certificate.
    let cert = wharf::http::tls::Reloadable::new(&certs.server_pem, &certs.server_key)
        .expect("server cert and key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(cert));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends here: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront { addr, task }
}

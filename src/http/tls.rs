//! HTTPS on the registry listener: rustls with HTTP/2 and HTTP/1.1 by ALPN, and the
//! certificate re-read on `SIGHUP` without dropping connections.
//!
//! Invariant: a reload that fails (missing file, bad PEM, key not matching the certificate)
//! keeps the certificate in use and says why; new handshakes get the new certificate only
//! once it loaded completely.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Loads a certificate chain and its key; every error names the file and the problem.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("{}: cannot read: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not valid PEM: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "{}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            key_file.display()
        )
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "{} and {}: the key does not fit the certificate: {e}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// The server's certificate, swappable at run time.
#[derive(Debug)]
pub struct Reloadable {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloadable {
    pub fn new(cert_file: &Path, key_file: &Path) -> Result<Reloadable, String> {
        let key = load(cert_file, key_file)?;
        Ok(Reloadable {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Re-reads the files; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = load(&self.cert_file, &self.key_file)?;
        let mut cur = self
            .current
            .write()
            .map_err(|_| "certificate lock poisoned".to_string())?;
        *cur = Arc::new(key);
        Ok(())
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The acceptor for the registry listener: h2 preferred, HTTP/1.1 otherwise.
pub fn acceptor(certs: Arc<Reloadable>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

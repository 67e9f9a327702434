//! Which Wharf a prefetch talks to: the one running on the `data_dir` (RocksDB's lock says one
//! is), an explicit `--server`, or an in-process one started for the run.

use super::client::WharfClient;
use crate::app::Running;
use crate::config::Config;
use crate::upstream::Credentials;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The client, and the in-process server to stop afterwards (none when talking to a running
/// Wharf).
pub struct Connection {
    pub client: Arc<WharfClient>,
    pub local: Option<Running>,
    /// What prefetch is doing, for the first line of output.
    pub how: String,
}

impl Connection {
    /// Stops the in-process server (draining its connections) if there is one.
    pub async fn close(self) {
        if let Some(r) = self.local {
            r.shutdown().await;
        }
    }
}

/// The URL a client on this machine reaches `listen` at.
fn local_url(config: &Config) -> String {
    let mut addr: SocketAddr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// Connects to the right Wharf for `config`'s `data_dir`.
pub async fn connect(
    config: &Config,
    server: Option<&str>,
    creds: Credentials,
) -> Result<Connection, String> {
    // A Wharf serving TLS with its own certificate: trust that certificate too.
    let own_cert = config.tls.as_ref().map(|t| t.cert_file.as_path());
    if let Some(url) = server {
        let ca = own_cert.filter(|_| url.starts_with("https:"));
        return Ok(Connection {
            client: Arc::new(WharfClient::new(url, ca, creds)?),
            local: None,
            how: format!("prefetching through the Wharf at {url}"),
        });
    }
    let mut local = config.clone();
    local.tls = None;
    local.admin_listen = (Ipv4Addr::LOCALHOST, 0).into();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("cannot listen on a loopback port: {e}"))?;
    match crate::app::start_on(local, listener).await {
        Ok(running) => {
            let url = format!("http://{}", running.addr);
            Ok(Connection {
                client: Arc::new(WharfClient::new(&url, None, creds)?),
                local: Some(running),
                how: format!(
                    "no Wharf is running on {}: prefetching into it directly",
                    config.data_dir.display()
                ),
            })
        }
        // RocksDB: "IO error: While lock file: <data_dir>/LOCK: Resource temporarily unavailable".
        Err(e) if e.contains("While lock file") || e.contains("/LOCK:") => {
            let url = local_url(config);
            Ok(Connection {
                client: Arc::new(WharfClient::new(&url, own_cert, creds)?),
                local: None,
                how: format!(
                    "a Wharf is running on {}: prefetching through it at {url}",
                    config.data_dir.display()
                ),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_server_is_reached_on_loopback() {
        let mut c = Config::embedded_default();
        c.listen = "0.0.0.0:5000".parse().expect("addr");
        assert_eq!(local_url(&c), "http://127.0.0.1:5000");
        c.listen = "[::]:5443".parse().expect("addr");
        c.tls = Some(crate::config::TlsConfig {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
        });
        assert_eq!(local_url(&c), "https://[::1]:5443");
        c.listen = "10.0.0.5:80".parse().expect("addr");
        assert_eq!(local_url(&c), "https://10.0.0.5:80");
    }
}

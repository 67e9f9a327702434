//! The accept loop, for the registry listener and the admin listener alike: HTTP/1.1 and h2
//! (prior knowledge, or ALPN behind TLS) on one listener, graceful shutdown.
//!
//! Hostile or idle clients are bounded:
//! - at most `max_connections` connections are served at once; the rest wait in the kernel's
//!   accept queue;
//! - with a per-address cap, a connection from a client address (an IPv4 address, or an IPv6
//!   /64: one host's worth) that already has that many open is closed as soon as it is
//!   accepted, so that no single address can take every slot; the count map holds only
//!   addresses with open connections, so it is bounded by `max_connections`;
//! - each connection is timed by `conn` (first request head, idleness, stalled request
//!   bodies) and HTTP/2 peers are pinged (`http2_keepalive_interval`) and dropped when they
//!   do not answer within `http2_keepalive_timeout`.

use super::body::ClientBody;
use super::conn::{self, Activity, Ended, Timeouts};
use super::handlers::Handler;
use super::RespBody;
use crate::config::ConnectionLimits;
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// How long in-flight requests get to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// What the clients of one listener may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (> 0).
    pub max_connections: u32,
    /// Connections open at once from one client address; `None`: no cap of its own.
    pub max_connections_per_ip: Option<u32>,
    /// Until a connection's first complete request head (and each later HTTP/1.1 head).
    pub header_read_timeout: Duration,
    /// With no request in flight.
    pub idle_timeout: Duration,
    /// Between two chunks of a request body being read.
    pub request_body_timeout: Duration,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
}

impl Limits {
    /// The registry listener's.
    pub fn registry(c: &ConnectionLimits) -> Limits {
        Limits {
            max_connections: c.max_connections,
            max_connections_per_ip: Some(c.max_connections_per_ip),
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
            request_body_timeout: c.request_body_timeout,
            http2_keepalive_interval: c.http2_keepalive_interval,
            http2_keepalive_timeout: c.http2_keepalive_timeout,
        }
    }

    /// The admin listener's: a cap of its own, the same timeouts, no per-address cap (its
    /// clients are a few monitoring hosts).
    pub fn admin(c: &ConnectionLimits) -> Limits {
        Limits {
            max_connections: c.admin_max_connections,
            max_connections_per_ip: None,
            ..Limits::registry(c)
        }
    }
}

/// Serves the registry on `listener` (over TLS when `tls` is given) until `shutdown`
/// completes, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let handle = move |req| {
        let handler = handler.clone();
        async move { handler.handle(req).await }
    };
    serve_with(listener, tls, limits, handle, shutdown).await
}

/// Serves `handle` on `listener` under `limits` until `shutdown` completes, then drains.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<ClientBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<RespBody>> + Send + 'static,
{
    let builder = Arc::new(builder(&limits));
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max as usize));
    let per_ip = limits.max_connections_per_ip.map(PerIp::new);
    let (stop, stopped) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the limit, new connections wait in the accept queue.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ip_slot = match &per_ip {
            None => None,
            Some(m) => match m.admit(peer.ip()) {
                Some(s) => Some(s),
                None => {
                    tracing::debug!(%peer, "too many connections from this address; closed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (handle, builder, tls, stopped) = (
            handle.clone(),
            builder.clone(),
            tls.clone(),
            stopped.clone(),
        );
        tokio::spawn(async move {
            // Given back when the connection ends.
            let _held = (slot, ip_slot);
            connection(stream, peer, tls, &builder, handle, limits, stopped).await;
        });
    }
    drop(listener);
    let _ = stop.send(());
    tokio::select! {
        _ = slots.acquire_many(max) => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain period"),
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(limits.http2_keepalive_interval))
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    builder
}

/// Serves one accepted connection to its end.
async fn connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: &auto::Builder<TokioExecutor>,
    handle: H,
    limits: Limits,
    stopped: watch::Receiver<()>,
) where
    H: Fn(Request<ClientBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<RespBody>> + Send + 'static,
{
    let activity = Activity::new();
    let service = {
        let (activity, gap) = (activity.clone(), limits.request_body_timeout);
        service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(super::events::PeerAddr(peer));
            conn::answer(handle.clone(), req, activity.begin(), gap)
        })
    };
    let t = Timeouts {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let ended = match tls {
        None => {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            conn::drive(conn, &activity, t, stopped).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    let conn = builder
                        .serve_connection(TokioIo::new(s), service)
                        .into_owned();
                    conn::drive(conn, &activity, t, stopped).await
                }
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    };
    match ended {
        Ended::NoRequest => tracing::debug!(%peer, "no complete request in time; closed"),
        Ended::Idle => tracing::debug!(%peer, "idle; closed"),
        Ended::Abandoned => tracing::debug!(%peer, "did not close at shutdown; dropped"),
        Ended::Done(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Ended::Done(Ok(())) => {}
    }
}

/// Open connections per client address.
struct PerIp {
    cap: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place in [`PerIp`]; gives it back when dropped.
struct IpSlot {
    map: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    fn new(cap: u32) -> Arc<PerIp> {
        Arc::new(PerIp {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, unless it has `cap` open already.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: self.clone(),
            key,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.map.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What counts as one client: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_per_client() {
        let k = |s: &str| client_key(s.parse().expect("ip"));
        assert_eq!(k("192.0.2.1"), k("::ffff:192.0.2.1"));
        assert_ne!(k("192.0.2.1"), k("192.0.2.2"));
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        let m = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let a = m.admit(ip).expect("first");
        let _b = m.admit(ip).expect("second");
        assert!(m.admit(ip).is_none(), "a third is refused");
        assert!(m.admit("192.0.2.2".parse().expect("ip")).is_some());
        drop(a);
        let _c = m.admit(ip).expect("room again");
        assert!(m.admit(ip).is_none());
    }

    #[test]
    fn the_count_map_forgets_addresses_without_connections() {
        let m = PerIp::new(1);
        let s = m.admit("192.0.2.1".parse().expect("ip"));
        drop(s);
        assert!(m.open.lock().expect("lock").is_empty());
    }
}

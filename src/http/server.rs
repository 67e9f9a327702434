//! The accept loop: HTTP/1.1 and h2 (prior knowledge) on one listener, graceful shutdown.
//!
//! Hostile or idle clients are bounded: at most `max_connections` connections are served at
//! once (the rest wait in the kernel's accept queue), and a connection that has not sent a
//! complete first request head within `header_read_timeout` is closed, whatever it is doing
//! (silent, a partial HTTP/2 preface, an HTTP/2 connection without a stream, a dripping
//! HTTP/1.1 head). Later HTTP/1.1 request heads are bounded by hyper's own header timeout.

use super::handlers::Handler;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long in-flight requests get to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// What one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (> 0).
    pub max_connections: u32,
    /// Until a connection's first complete request head (and each later HTTP/1.1 head).
    pub header_read_timeout: Duration,
}

/// Serves `listener` (over TLS when `tls` is given) until `shutdown` completes, then drains
/// open connections.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1) as usize));
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let asked = Arc::new(AtomicBool::new(false));
        let service = service_fn({
            let asked = asked.clone();
            move |req| {
                asked.store(true, Ordering::Relaxed);
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(req).await) }
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let first_head = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let res = match tls {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    first_request_within(first_head, &asked, watcher.watch(conn)).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(s)) => {
                            let conn = builder
                                .serve_connection(TokioIo::new(s), service)
                                .into_owned();
                            first_request_within(first_head, &asked, watcher.watch(conn)).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            match res {
                None => tracing::debug!(%peer, "no complete request in time; connection closed"),
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error")
                }
                Some(Ok(())) => {}
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain period"),
    }
}

/// Runs `conn` to its end, unless no request has arrived on it within `limit`: then it is
/// dropped (closing the connection) and the result is `None`. hyper-util's protocol sniffing
/// and HTTP/2 have no timeout of their own for this.
async fn first_request_within<F: Future>(
    limit: Duration,
    asked: &AtomicBool,
    conn: F,
) -> Option<F::Output> {
    tokio::pin!(conn);
    tokio::select! {
        res = &mut conn => return Some(res),
        _ = tokio::time::sleep(limit) => {}
    }
    if asked.load(Ordering::Relaxed) {
        Some(conn.await)
    } else {
        None
    }
}

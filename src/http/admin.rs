//! The admin listener: `/metrics` (Prometheus), `/healthz` (the process answers), `/readyz`
//! (the store is open and the registry listener is up). Kept off the registry port so that
//! it can be firewalled separately.

use super::{full, RespBody};
use crate::registry::Registry;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Set once the registry listener accepts connections.
pub type Ready = Arc<AtomicBool>;

fn answer(registry: &Registry, ready: &Ready, req: &Request<Incoming>) -> Response<RespBody> {
    let (status, ctype, body): (StatusCode, &'static str, Vec<u8>) = match req.uri().path() {
        "/metrics" => {
            registry.refresh_gauges();
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                registry.metrics.render(),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
        "/readyz" if ready.load(Ordering::SeqCst) => {
            (StatusCode::OK, "text/plain", b"ready\n".to_vec())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"not ready\n".to_vec(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: Ready,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            res = listener.accept() => match res {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (registry, ready) = (registry.clone(), ready.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = answer(&registry, &ready, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

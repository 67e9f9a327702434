//! The admin listener: `/metrics` (Prometheus), `/healthz` (the process answers), `/readyz`
//! (the store is open and the registry listener is up). Kept off the registry port so that
//! it can be firewalled separately. Served by the registry's accept loop (`server`) with a
//! connection cap of its own (`admin_max_connections`) and the same timeouts. Paths under
//! `/admin/` are the admin API (`admin_api`).

use super::body::ClientBody;
use super::server::{self, Limits};
use super::{full, RespBody};
use crate::registry::Registry;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Set once the registry listener accepts connections.
pub type Ready = Arc<AtomicBool>;

fn answer<B>(registry: &Registry, ready: &Ready, req: &Request<B>) -> Response<RespBody> {
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

/// Serves the admin endpoints (and the admin API as `api` says) on `listener` under
/// `limits` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: Ready,
    api: super::admin_api::Api,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let api = Arc::new(api);
    let handle = move |req: Request<ClientBody>| {
        let (registry, ready, api) = (registry.clone(), ready.clone(), api.clone());
        async move {
            if req.uri().path().starts_with(super::admin_api::PREFIX) {
                super::admin_api::answer(registry, api, req).await
            } else {
                answer(&registry, &ready, &req)
            }
        }
    };
    server::serve_with(listener, None, limits, handle, shutdown).await
}

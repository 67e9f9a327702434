//! The control socket: how `wharf import` and `wharf export` reach a *running* Wharf, whose
//! RocksDB admits no second opener. A Unix socket at `data_dir/run/control.sock`, speaking
//! HTTP/1.1 with JSON bodies:
//!
//! - `POST /import` `{"path": "/abs/archive.tar", "name": null}` → the [`ImportSummary`];
//! - `POST /export` `{"images": [...], "all": false, "output": "/abs/out.tar"}` → the
//!   [`ExportSummary`];
//! - errors: status 400 (the operation failed) or 404/405, body `{"error": "..."}`.
//!
//! Invariants:
//! - Never on a network. The socket lives in a directory created with mode 0700, so only the
//!   user Wharf runs as (who can write `data_dir` anyway) can connect: importing names images
//!   for every client, so it must be exactly as privileged as writing the cache.
//! - Paths are opened by the server, as given (the client makes them absolute); the running
//!   Wharf must be able to see them (same machine, same mount namespace).
//! - The operations are the offline commands' own (`import`, `export`), on blocking threads,
//!   one at a time: the same verification, the same naming.
//! - After an import the registry forgets hot tag resolutions and remembered 404s, so the
//!   imported tags are served at once.

use super::{export, import, ExportSummary, ImportSummary};
use crate::registry::Registry;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};

/// Request bodies are small JSON documents.
const MAX_REQUEST: usize = 64 * 1024;

/// Where the socket of the Wharf on `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("control.sock")
}

#[derive(Serialize, Deserialize)]
pub struct ImportRequest {
    pub path: PathBuf,
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct ExportRequest {
    pub images: Vec<String>,
    pub all: bool,
    pub output: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

/// Binds the socket (replacing a stale one: the caller holds the store, so no other Wharf
/// uses this `data_dir`) in a fresh 0700 directory.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = socket_path(data_dir);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(&path)
}

/// Serves the socket until `stop` resolves, then removes it.
pub async fn serve(
    listener: UnixListener,
    registry: Arc<Registry>,
    stop: impl std::future::Future<Output = ()>,
) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            },
        };
        let (registry, lock) = (registry.clone(), one_at_a_time.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (registry, lock) = (registry.clone(), lock.clone());
                async move {
                    // The operation runs detached, holding the lock to its end: a client that
                    // goes away (Ctrl-C) does not let a second operation start beside it, and
                    // an import still ends with the registry forgetting its hot lookups.
                    let task = tokio::spawn(async move {
                        let _one = lock.lock_owned().await;
                        answer(registry, req).await
                    });
                    let resp = task.await.unwrap_or_else(|e| {
                        fail(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("operation failed: {e}"),
                        )
                    });
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp
}

fn fail(status: StatusCode, error: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorBody {
            error: error.to_string(),
        },
    )
}

async fn answer(registry: Arc<Registry>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let op = req.uri().path().to_string();
    if !matches!(op.as_str(), "/import" | "/export") {
        return fail(StatusCode::NOT_FOUND, format!("no operation {op}"));
    }
    if req.method() != Method::POST {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let store = registry.store().clone();
    if op == "/import" {
        let r: ImportRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return fail(StatusCode::BAD_REQUEST, format!("request: {e}")),
        };
        tracing::info!(path = %r.path.display(), "import through the control socket");
        let reg = registry.clone();
        let resp = blocking(move || {
            let upstream_of = |host: &str| reg.upstream_name(host);
            import(&store, &r.path, r.name.as_deref(), &upstream_of)
        })
        .await;
        registry.forget_lookups();
        resp
    } else {
        let r: ExportRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return fail(StatusCode::BAD_REQUEST, format!("request: {e}")),
        };
        tracing::info!(output = %r.output.display(), "export through the control socket");
        blocking(move || export(&store, &r.images, r.all, &r.output, &mut |_, _, _, _| {})).await
    }
}

/// Runs an operation on a blocking thread: its summary (200) or its error (400).
async fn blocking<S: Serialize + Send + 'static>(
    op: impl FnOnce() -> crate::error::Result<S> + Send + 'static,
) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(op).await {
        Ok(Ok(summary)) => json(StatusCode::OK, &summary),
        Ok(Err(e)) => fail(StatusCode::BAD_REQUEST, e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Sends one operation to the Wharf running on `data_dir`; its answer or its error message.
async fn call<T: for<'de> Deserialize<'de>>(
    data_dir: &Path,
    op: &str,
    body: Vec<u8>,
) -> Result<T, String> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "a Wharf holds {} but its control socket {} does not answer: {e}",
            data_dir.display(),
            path.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    tokio::spawn(conn);
    let req = Request::post(format!("http://wharf{op}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("control socket: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("control socket: {e}"))?
        .to_bytes();
    if status.is_success() {
        serde_json::from_slice(&bytes).map_err(|e| format!("control socket answer: {e}"))
    } else {
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            error: format!("the running Wharf answered {status}"),
        });
        Err(e.error)
    }
}

/// `wharf import` against the Wharf running on `data_dir`.
pub async fn import_running(data_dir: &Path, r: &ImportRequest) -> Result<ImportSummary, String> {
    call(
        data_dir,
        "/import",
        serde_json::to_vec(r).map_err(|e| e.to_string())?,
    )
    .await
}

/// `wharf export` against the Wharf running on `data_dir`.
pub async fn export_running(data_dir: &Path, r: &ExportRequest) -> Result<ExportSummary, String> {
    call(
        data_dir,
        "/export",
        serde_json::to_vec(r).map_err(|e| e.to_string())?,
    )
    .await
}

//! An in-process fake upstream registry: serves what a test puts in it, counts every request
//! by kind, and injects faults on demand (wrong bytes, slow bodies, 5xx, refusal).

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// How a blob is served.
#[derive(Clone, Default)]
pub struct BlobBehavior {
    /// Bytes per body chunk (0 = one chunk).
    pub chunk: usize,
    /// Pause before each chunk.
    pub delay: Duration,
    /// Serve these bytes instead of the real ones (same length or not).
    pub corrupt: Option<Vec<u8>>,
    /// Break the connection after this many bytes.
    pub fail_after: Option<usize>,
}

#[derive(Default)]
pub struct State {
    /// (repo, tag) → manifest digest
    tags: HashMap<(String, String), String>,
    /// digest → (media type, bytes)
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    behavior: HashMap<String, BlobBehavior>,
    counts: HashMap<String, u64>,
}

pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Answer every request with 503.
    pub down: Arc<AtomicBool>,
    /// Require a bearer token from `/token` (Docker token spec).
    pub token_auth: Arc<AtomicBool>,
    pub tokens_issued: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let down = Arc::new(AtomicBool::new(false));
        let token_auth = Arc::new(AtomicBool::new(false));
        let tokens_issued = Arc::new(AtomicU64::new(0));
        let ctx = Ctx {
            state: state.clone(),
            down: down.clone(),
            token_auth: token_auth.clone(),
            tokens_issued: tokens_issued.clone(),
            addr,
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(ctx.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake {
            addr,
            state,
            down,
            token_auth,
            tokens_issued,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put_blob(&self, data: &[u8]) -> String {
        let d = digest_of(data);
        self.state
            .lock()
            .expect("lock")
            .blobs
            .insert(d.clone(), data.to_vec());
        d
    }

    pub fn set_behavior(&self, digest: &str, b: BlobBehavior) {
        self.state
            .lock()
            .expect("lock")
            .behavior
            .insert(digest.to_string(), b);
    }

    pub fn clear_behavior(&self, digest: &str) {
        self.state.lock().expect("lock").behavior.remove(digest);
    }

    /// Stores a manifest and points `tag` (if any) at it; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let d = digest_of(bytes);
        let mut s = self.state.lock().expect("lock");
        s.manifests
            .insert(d.clone(), (media_type.to_string(), bytes.to_vec()));
        if let Some(t) = tag {
            s.tags.insert((repo.to_string(), t.to_string()), d.clone());
        }
        d
    }

    /// Puts an OCI image (config + layers) under `repo:tag`; returns the manifest digest.
    pub fn put_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}"
        );
        let cd = self.put_blob(config.as_bytes());
        let layer_descs: Vec<String> = layers
            .iter()
            .map(|l| {
                let d = self.put_blob(l);
                format!(
                    "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{d}\",\"size\":{}}}",
                    l.len()
                )
            })
            .collect();
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{cd}\",\"size\":{}}},\"layers\":[{}]}}",
            config.len(),
            layer_descs.join(",")
        );
        let d = self.put_manifest(
            repo,
            Some(tag),
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        (d, manifest.into_bytes())
    }

    /// How many requests of `kind` ("GET blob", "HEAD manifest", "GET manifest", "GET tags",
    /// "GET token", "GET base") arrived.
    pub fn count(&self, kind: &str) -> u64 {
        *self
            .state
            .lock()
            .expect("lock")
            .counts
            .get(kind)
            .unwrap_or(&0)
    }

    pub fn total(&self) -> u64 {
        self.state.lock().expect("lock").counts.values().sum()
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    token_auth: Arc<AtomicBool>,
    tokens_issued: Arc<AtomicU64>,
    addr: SocketAddr,
}

const TOKEN: &str = "fake-token-123";

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, code: &str) -> Response<Body> {
    full(
        status,
        format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"fake\"}}]}}"),
    )
}

impl Ctx {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().to_string();
        let kind = if path == "/token" {
            "token"
        } else if path == "/v2/" {
            "base"
        } else if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/manifests/") {
            "manifest"
        } else if path.ends_with("/tags/list") {
            "tags"
        } else {
            "other"
        };
        *self
            .state
            .lock()
            .expect("lock")
            .counts
            .entry(format!("{method} {kind}"))
            .or_default() += 1;
        if self.down.load(Ordering::SeqCst) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
        }
        if kind == "token" {
            self.tokens_issued.fetch_add(1, Ordering::SeqCst);
            return full(
                StatusCode::OK,
                format!("{{\"token\":\"{TOKEN}\",\"expires_in\":300}}"),
            );
        }
        if self.token_auth.load(Ordering::SeqCst) {
            let ok = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {TOKEN}"));
            if !ok {
                let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
                let repo = repo_of(&path);
                let v = format!(
                    "Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:{repo}:pull\"",
                    self.addr
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&v).expect("header"),
                );
                return r;
            }
        }
        let head = req.method() == http::Method::HEAD;
        match kind {
            "base" => full(StatusCode::OK, "{}"),
            "manifest" => self.manifest(&path, head),
            "blob" => self.blob(&path, head),
            "tags" => {
                let repo = repo_of(&path);
                let s = self.state.lock().expect("lock");
                let mut tags: Vec<&str> = s
                    .tags
                    .keys()
                    .filter(|(r, _)| *r == repo)
                    .map(|(_, t)| t.as_str())
                    .collect();
                tags.sort();
                if tags.is_empty() {
                    return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
                }
                let body = serde_json::json!({"name": repo, "tags": tags}).to_string();
                full(StatusCode::OK, body)
            }
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND"),
        }
    }

    fn manifest(&self, path: &str, head: bool) -> Response<Body> {
        let repo = repo_of(path);
        let reference = path.rsplit('/').next().unwrap_or("");
        let s = self.state.lock().expect("lock");
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            match s.tags.get(&(repo.clone(), reference.to_string())) {
                Some(d) => d.clone(),
                None => return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            }
        };
        let Some((mt, bytes)) = s.manifests.get(&digest) else {
            return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        };
        let mut r = full(
            StatusCode::OK,
            if head { Vec::new() } else { bytes.clone() },
        );
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_str(mt).expect("mt"));
        h.insert(
            "docker-content-digest",
            HeaderValue::from_str(&digest).expect("d"),
        );
        h.insert("content-length", HeaderValue::from(bytes.len()));
        r
    }

    fn blob(&self, path: &str, head: bool) -> Response<Body> {
        let digest = path.rsplit('/').next().unwrap_or("").to_string();
        let s = self.state.lock().expect("lock");
        let Some(data) = s.blobs.get(&digest) else {
            return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        };
        let b = s.behavior.get(&digest).cloned().unwrap_or_default();
        let data = b.corrupt.clone().unwrap_or_else(|| data.clone());
        let len = data.len();
        if head {
            let mut r = full(StatusCode::OK, Vec::new());
            r.headers_mut()
                .insert("content-length", HeaderValue::from(len));
            return r;
        }
        let chunk = if b.chunk == 0 { len.max(1) } else { b.chunk };
        let chunks: Vec<Bytes> = data.chunks(chunk).map(Bytes::copy_from_slice).collect();
        let s = stream::unfold(
            (chunks.into_iter(), 0usize, b),
            |(mut it, sent, b)| async move {
                let c = it.next()?;
                if !b.delay.is_zero() {
                    tokio::time::sleep(b.delay).await;
                }
                if let Some(limit) = b.fail_after {
                    if sent + c.len() > limit {
                        return Some((
                            Err(std::io::Error::other("injected failure")),
                            (it, sent, b),
                        ));
                    }
                }
                let n = c.len();
                Some((Ok(Frame::data(c)), (it, sent + n, b)))
            },
        );
        let mut r = Response::new(StreamBody::new(s).boxed_unsync());
        r.headers_mut()
            .insert("content-length", HeaderValue::from(len));
        r.headers_mut().insert(
            "docker-content-digest",
            HeaderValue::from_str(&digest).expect("d"),
        );
        r
    }
}

fn repo_of(path: &str) -> String {
    let rest = path.trim_start_matches("/v2/");
    let mut it = rest.rsplitn(3, '/');
    let _ = it.next();
    let _ = it.next();
    it.next().unwrap_or("").to_string()
}

//! The fake's request handling: counting, faults, auth, then the registry API.

use super::faults::Answer;
use super::{BlobBehavior, Ctx, State};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::sync::atomic::Ordering;

pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub authorization: Option<String>,
}

pub(crate) fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

pub(crate) fn error(status: StatusCode, code: &str) -> Response<Body> {
    let mut r = full(
        status,
        format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"fake\"}}]}}"),
    );
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

impl Ctx {
    /// Counts the request, applies the fault rules, then answers; `Err` closes the
    /// connection without a response.
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> std::io::Result<Response<Body>> {
        let path = req.uri().path().to_string();
        let method = req.method().to_string();
        let kind = if path == "/token" {
            "token"
        } else if path == "/v2/" {
            "base"
        } else if path.contains("/blobs/uploads") {
            "upload"
        } else if path.contains("/referrers/") {
            "referrers"
        } else if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/manifests/") {
            "manifest"
        } else if path.ends_with("/tags/list") {
            "tags"
        } else {
            "other"
        };
        {
            let mut s = self.state.lock().expect("lock");
            *s.counts.entry(format!("{method} {kind}")).or_default() += 1;
            s.seen.push(Seen {
                method: method.clone(),
                uri: req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                authorization: req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            });
        }
        let fault = self.faults.lock().expect("lock").take(&method, kind);
        if let Some(f) = fault {
            if !f.delay.is_zero() {
                tokio::time::sleep(f.delay).await;
            }
            match f.answer {
                Answer::Normal => {}
                Answer::Drop => return Err(std::io::Error::other("injected: connection dropped")),
                Answer::Redirect(location) => {
                    let mut r = full(StatusCode::FOUND, Vec::new());
                    let v = HeaderValue::from_str(&location).expect("location");
                    r.headers_mut().insert("location", v);
                    return Ok(r);
                }
                Answer::Status(code) => {
                    let status = StatusCode::from_u16(code).expect("fault status");
                    let code = match code {
                        429 => "TOOMANYREQUESTS",
                        404 => "NOT_FOUND",
                        _ => "UNAVAILABLE",
                    };
                    let mut r = error(status, code);
                    if let Some(v) = f.retry_after {
                        let v = HeaderValue::from_str(&v).expect("retry-after");
                        r.headers_mut().insert("retry-after", v);
                    }
                    return Ok(r);
                }
            }
        }
        Ok(self.answer(req, &path, kind).await)
    }

    async fn answer(&self, req: Request<Incoming>, path: &str, kind: &str) -> Response<Body> {
        if self.down.load(Ordering::SeqCst) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
        }
        if kind == "token" {
            return self.token(req).await;
        }
        let repo = if kind == "base" {
            None
        } else {
            Some(repo_of(path))
        };
        let method = req.method().clone();
        let push = kind == "upload" || !matches!(method, http::Method::GET | http::Method::HEAD);
        if self.token_auth.load(Ordering::SeqCst) {
            if let Some(refusal) = self.refusal(req.headers(), repo.as_deref(), push) {
                return refusal;
            }
        }
        let head = method == http::Method::HEAD;
        let repo = repo.unwrap_or_default();
        match (kind, &method) {
            ("upload", _) => return self.upload(req, &repo, path).await,
            ("manifest", &http::Method::PUT) => return self.put_manifest(req, &repo, path).await,
            ("manifest", &http::Method::DELETE) => return self.delete_manifest(&repo, path),
            ("blob", &http::Method::DELETE) => return self.delete_blob(&repo, path),
            ("referrers", &http::Method::GET) => {
                return self.referrers(req.uri().query(), &repo, path)
            }
            _ if push => return error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            _ => {}
        }
        // `Range: bytes=<n>-`, the only form Wharf sends (to resume a broken fill).
        let from = req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.strip_suffix('-'))
            .and_then(|v| v.parse::<usize>().ok());
        let s = self.state.lock().expect("lock");
        match kind {
            "base" => full(StatusCode::OK, "{}"),
            "manifest" => manifest(&s, &repo, path, head),
            "blob" => blob(&s, &repo, path, head, from),
            "tags" => {
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
}

fn manifest(s: &State, repo: &str, path: &str, head: bool) -> Response<Body> {
    let reference = path.rsplit('/').next().unwrap_or("");
    let digest = if reference.starts_with("sha256:") {
        reference.to_string()
    } else {
        match s.tags.get(&(repo.to_string(), reference.to_string())) {
            Some(d) => d.clone(),
            None => return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        }
    };
    if !s
        .repo_manifests
        .contains(&(repo.to_string(), digest.clone()))
    {
        return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    }
    let Some((mt, bytes)) = s.manifests.get(&digest) else {
        return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    };
    let b = s.behavior.get(&digest).cloned().unwrap_or_default();
    let declared = b.content_length.unwrap_or(bytes.len() as u64);
    let b_chunked = b.chunked;
    let mut r = if head {
        full(StatusCode::OK, Vec::new())
    } else {
        body_response(bytes.clone(), b)
    };
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_str(mt).expect("mt"));
    h.insert(
        "docker-content-digest",
        HeaderValue::from_str(&digest).expect("d"),
    );
    if head || !b_chunked {
        h.insert("content-length", HeaderValue::from(declared));
    }
    r
}

fn blob(s: &State, repo: &str, path: &str, head: bool, from: Option<usize>) -> Response<Body> {
    let digest = path.rsplit('/').next().unwrap_or("").to_string();
    let present =
        s.unscoped.contains(&digest) || s.repo_blobs.contains(&(repo.to_string(), digest.clone()));
    let Some(data) = s.blobs.get(&digest).filter(|_| present) else {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    };
    let b = s.behavior.get(&digest).cloned().unwrap_or_default();
    let data = b.corrupt.clone().unwrap_or_else(|| data.clone());
    let len = b.content_length.unwrap_or(data.len() as u64);
    if head {
        let mut r = full(StatusCode::OK, Vec::new());
        r.headers_mut()
            .insert("content-length", HeaderValue::from(len));
        r.headers_mut().insert(
            "docker-content-digest",
            HeaderValue::from_str(&digest).expect("d"),
        );
        return r;
    }
    if let Some(at) = from.filter(|&at| at < data.len() && b.content_length.is_none()) {
        let total = data.len();
        let mut r = body_response(data[at..].to_vec(), b);
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes {at}-{}/{total}", total - 1);
        r.headers_mut().insert(
            "content-range",
            HeaderValue::from_str(&range).expect("range"),
        );
        return r;
    }
    let mut r = body_response(data, b);
    r.headers_mut().insert(
        "docker-content-digest",
        HeaderValue::from_str(&digest).expect("d"),
    );
    r
}

/// A 200 whose body is `data` served as `b` says (chunks, pauses, a break, a declared length).
fn body_response(data: Vec<u8>, b: BlobBehavior) -> Response<Body> {
    let len = b.content_length.unwrap_or(data.len() as u64);
    let chunked = b.chunked;
    let chunk = if b.chunk == 0 {
        data.len().max(1)
    } else {
        b.chunk
    };
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
    if !chunked {
        r.headers_mut()
            .insert("content-length", HeaderValue::from(len));
    }
    r
}

/// The repository of `/v2/<repo>/<kind>/<ref>` (or `/v2/<repo>/blobs/uploads/...`).
pub(crate) fn repo_of(path: &str) -> String {
    let rest = path.trim_start_matches("/v2/");
    if let Some((repo, _)) = rest.split_once("/blobs/uploads") {
        return repo.to_string();
    }
    let mut it = rest.rsplitn(3, '/');
    let _ = it.next();
    let _ = it.next();
    it.next().unwrap_or("").to_string()
}

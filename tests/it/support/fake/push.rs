//! The fake's push side, shaped like Distribution's: `POST` opens an upload session (or mounts,
//! or takes a monolithic upload with `?digest=`), `PATCH` appends (checking `Content-Range`),
//! `PUT ?digest=` closes and verifies, `GET` reports the `Range`; every session URL carries a
//! `_state` query that must come back. Manifest `PUT`s check that the referenced blobs exist
//! in the repository; `DELETE`s answer 202.

use super::auth::parse_query;
use super::serve::{error, full, Body};
use super::{digest_of, Ctx, State};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::Ordering;

fn header(r: &mut Response<Body>, name: &'static str, value: &str) {
    r.headers_mut()
        .insert(name, HeaderValue::from_str(value).expect("header value"));
}

fn has_blob(s: &State, repo: &str, digest: &str) -> bool {
    s.blobs.contains_key(digest)
        && (s.unscoped.contains(digest)
            || s.repo_blobs
                .contains(&(repo.to_string(), digest.to_string())))
}

/// `Range: 0-<last byte>` the way Distribution writes it (`0-0` when empty).
fn range(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

impl Ctx {
    fn location(&self, path: &str) -> String {
        if self.absolute_locations.load(Ordering::SeqCst) {
            format!("http://{}{path}", self.addr)
        } else {
            path.to_string()
        }
    }

    fn session_answer(
        &self,
        status: StatusCode,
        repo: &str,
        id: &str,
        len: usize,
    ) -> Response<Body> {
        let mut r = full(status, Vec::new());
        let loc = self.location(&format!("/v2/{repo}/blobs/uploads/{id}?_state={id}"));
        header(&mut r, "location", &loc);
        header(&mut r, "range", &range(len));
        header(&mut r, "docker-upload-uuid", id);
        r
    }

    fn blob_created(&self, repo: &str, digest: &str) -> Response<Body> {
        let mut r = full(StatusCode::CREATED, Vec::new());
        header(
            &mut r,
            "location",
            &self.location(&format!("/v2/{repo}/blobs/{digest}")),
        );
        header(&mut r, "docker-content-digest", digest);
        r
    }

    pub(crate) async fn upload(
        &self,
        req: Request<Incoming>,
        repo: &str,
        path: &str,
    ) -> Response<Body> {
        let method = req.method().clone();
        let params = parse_query(req.uri().query().unwrap_or(""));
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let session = path
            .split_once("/blobs/uploads")
            .map(|(_, t)| t.trim_start_matches('/').to_string())
            .filter(|t| !t.is_empty());
        let content_range = req
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('-').next()?.trim().parse::<usize>().ok());
        // Frame by frame, counting, so tests can see bytes arrive before the body ends.
        let mut incoming = req.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else {
                return error(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
            };
            if let Ok(d) = frame.into_data() {
                self.upload_bytes
                    .fetch_add(d.len() as u64, Ordering::SeqCst);
                body.extend_from_slice(&d);
            }
        }
        let mut s = self.state.lock().expect("lock");
        let Some(id) = session else {
            if method != Method::POST {
                return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
            }
            if let (Some(d), Some(from)) = (get("mount"), get("from")) {
                if has_blob(&s, &from, &d) {
                    s.repo_blobs.insert((repo.to_string(), d.clone()));
                    return self.blob_created(repo, &d);
                }
            }
            if let Some(d) = get("digest") {
                if digest_of(&body) != d {
                    return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
                }
                s.blobs.insert(d.clone(), body.to_vec());
                s.repo_blobs.insert((repo.to_string(), d.clone()));
                return self.blob_created(repo, &d);
            }
            s.next_upload += 1;
            let id = format!("u{}-{}", s.next_upload, self.addr.port());
            s.uploads.insert(id.clone(), (repo.to_string(), Vec::new()));
            return self.session_answer(StatusCode::ACCEPTED, repo, &id, 0);
        };
        if get("_state").as_deref() != Some(id.as_str()) {
            return error(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
        }
        let known = s.uploads.get(&id).is_some_and(|(r, _)| r == repo);
        if !known {
            return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        }
        match method {
            Method::GET => {
                let len = s.uploads.get(&id).map_or(0, |(_, d)| d.len());
                let mut r = self.session_answer(StatusCode::NO_CONTENT, repo, &id, len);
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Method::PATCH => {
                let Some((_, data)) = s.uploads.get_mut(&id) else {
                    return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
                };
                if content_range.is_some_and(|start| start != data.len()) {
                    let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
                    header(&mut r, "range", &range(data.len()));
                    return r;
                }
                data.extend_from_slice(&body);
                let len = data.len();
                self.session_answer(StatusCode::ACCEPTED, repo, &id, len)
            }
            Method::PUT => {
                let Some((_, mut data)) = s.uploads.remove(&id) else {
                    return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
                };
                data.extend_from_slice(&body);
                let Some(d) = get("digest").filter(|d| *d == digest_of(&data)) else {
                    return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
                };
                s.blobs.insert(d.clone(), data);
                s.repo_blobs.insert((repo.to_string(), d.clone()));
                self.blob_created(repo, &d)
            }
            Method::DELETE => {
                s.uploads.remove(&id);
                full(StatusCode::NO_CONTENT, Vec::new())
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        }
    }

    pub(crate) async fn put_manifest(
        &self,
        req: Request<Incoming>,
        repo: &str,
        path: &str,
    ) -> Response<Body> {
        let reference = path.rsplit('/').next().unwrap_or("").to_string();
        let media_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        let Ok(body) = req.into_body().collect().await else {
            return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
        };
        let bytes = body.to_bytes().to_vec();
        let d = digest_of(&bytes);
        if reference.starts_with("sha256:") && reference != d {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
        };
        let mut s = self.state.lock().expect("lock");
        let mut referenced: Vec<String> = v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();
        referenced.extend(v["config"]["digest"].as_str().map(str::to_string));
        if referenced.iter().any(|b| !has_blob(&s, repo, b)) {
            return error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        }
        s.manifests.insert(d.clone(), (media_type, bytes));
        s.repo_manifests.insert((repo.to_string(), d.clone()));
        if !reference.starts_with("sha256:") {
            s.tags.insert((repo.to_string(), reference), d.clone());
        }
        let mut r = full(StatusCode::CREATED, Vec::new());
        header(
            &mut r,
            "location",
            &self.location(&format!("/v2/{repo}/manifests/{d}")),
        );
        header(&mut r, "docker-content-digest", &d);
        r
    }

    pub(crate) fn delete_manifest(&self, repo: &str, path: &str) -> Response<Body> {
        let reference = path.rsplit('/').next().unwrap_or("").to_string();
        let mut s = self.state.lock().expect("lock");
        let repo = repo.to_string();
        let found = if reference.starts_with("sha256:") {
            let had = s.repo_manifests.remove(&(repo.clone(), reference.clone()));
            s.tags.retain(|(r, _), d| !(*r == repo && *d == reference));
            had
        } else {
            s.tags.remove(&(repo, reference)).is_some()
        };
        if found {
            full(StatusCode::ACCEPTED, Vec::new())
        } else {
            error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
        }
    }

    pub(crate) fn delete_blob(&self, repo: &str, path: &str) -> Response<Body> {
        let digest = path.rsplit('/').next().unwrap_or("").to_string();
        let mut s = self.state.lock().expect("lock");
        if s.repo_blobs.remove(&(repo.to_string(), digest)) {
            full(StatusCode::ACCEPTED, Vec::new())
        } else {
            error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
        }
    }
}

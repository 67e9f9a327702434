//! Pushes through the mirror: forwarded to the upstream with the client's own credentials;
//! what goes through is cached on the way (blobs here, manifests in `push_manifest`).
//!
//! Invariants:
//! - Pushes use the client's own credentials only: a client without any is anonymous
//!   upstream, never the upstream's configured `username` (that would let anyone push as the
//!   operator).
//! - The upstream's answers reach the client unchanged (status, headers, body); this module
//!   only looks at them.
//! - A teed blob is committed only after the upstream confirmed the final `PUT` (201) and the
//!   bytes hashed to the digest the client named (see `uploads` for when a tee exists).

use super::location::upload_session;
use super::tee::{tee_body, Slot};
use super::uploads::{range_agrees, SessionKey, Tee};
use super::{Registry, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::metrics::{StatusClass, TeeResult};
use crate::oci::{Digest, Reference, RepoName};
use crate::store::LinkKind;
use crate::upstream::client::PushBody;
use crate::upstream::Payload;
use http::header::{LOCATION, RANGE};
use http::{HeaderMap, Method, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

/// A push request, ready for the upstream.
pub struct PushRequest {
    pub method: Method,
    /// `/v2/<upstream repo>/...` with the query to forward.
    pub path_and_query: String,
    /// The client's headers worth forwarding.
    pub headers: HeaderMap,
    /// The client's body (with its read timeout).
    pub body: PushBody,
    pub what: Push,
}

/// What a push request does.
pub enum Push {
    /// Anything on `blobs/uploads/[<session>]`.
    Upload {
        session: Option<String>,
        /// `?digest=` of a final `PUT` or a monolithic `POST`.
        digest: Option<Digest>,
        /// Where the request's `Content-Range` says its bytes start.
        offset: Option<u64>,
        /// A cross-repository mount: the digest and the repository it comes from.
        mount: Option<(Digest, RepoName)>,
    },
    /// `PUT manifests/<reference>`.
    Manifest {
        reference: Reference,
        content_type: Option<String>,
    },
    DeleteManifest {
        reference: Reference,
    },
    DeleteBlob {
        digest: Digest,
    },
}

impl Registry {
    /// Forwards a push to the target's upstream; returns the upstream's answer as it is.
    pub async fn push(
        &self,
        t: &Target,
        client: &Client,
        req: PushRequest,
    ) -> Result<Response<Incoming>> {
        let repo = t.repo.as_str();
        let scope = match &req.what {
            Push::DeleteManifest { .. } | Push::DeleteBlob { .. } => {
                format!("repository:{repo}:delete")
            }
            Push::Upload {
                mount: Some((_, from)),
                ..
            } => format!("repository:{repo}:pull,push repository:{from}:pull"),
            _ => format!("repository:{repo}:pull,push"),
        };
        let PushRequest {
            method,
            path_and_query,
            headers,
            body,
            what,
        } = req;
        let path = path_and_query.as_str();
        let res = match what {
            Push::Upload {
                session,
                digest,
                offset,
                mount,
            } => {
                let u = Upload {
                    session,
                    digest,
                    offset,
                    mount: mount.map(|(d, _)| d),
                };
                self.push_upload(t, client, method, path, &headers, body, u, &scope)
                    .await
            }
            Push::Manifest {
                reference,
                content_type,
            } => {
                self.push_manifest(
                    t,
                    client,
                    path,
                    &headers,
                    body,
                    &reference,
                    content_type,
                    &scope,
                )
                .await
            }
            Push::DeleteManifest { reference } => {
                let resp = self
                    .send_push(t, client, method, path, &headers, Payload::Empty, &scope)
                    .await?;
                if resp.status().is_success() {
                    let forgotten = self.deleted_manifest(t, &reference).await;
                    warn_on(t, "forget a deleted manifest", forgotten);
                }
                Ok(resp)
            }
            Push::DeleteBlob { digest } => {
                let resp = self
                    .send_push(t, client, method, path, &headers, Payload::Empty, &scope)
                    .await?;
                if resp.status().is_success() {
                    let unlinked = self.store.delete_link(t.upstream.name(), repo, &digest);
                    warn_on(t, "unlink a deleted blob", unlinked);
                }
                Ok(resp)
            }
        };
        let class = match &res {
            Ok(r) => StatusClass::of(r.status().as_u16()),
            Err(_) => StatusClass::Error,
        };
        self.metrics.push_forwarded(t.upstream.name(), class);
        res
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_push(
        &self,
        t: &Target,
        client: &Client,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        payload: Payload,
        scope: &str,
    ) -> Result<Response<Incoming>> {
        t.upstream
            .send_push(method, path, headers, payload, &client.creds, scope)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_upload(
        &self,
        t: &Target,
        client: &Client,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: PushBody,
        u: Upload,
        scope: &str,
    ) -> Result<Response<Incoming>> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let key = u.session.as_deref().map(|id| SessionKey::new(up, repo, id));
        let has_body = !http_body::Body::is_end_stream(&body);
        let tee = match (&method, &key) {
            (&Method::PATCH | &Method::PUT, Some(k)) => self.uploads.take(k, u.offset),
            (&Method::POST, None) if u.digest.is_some() && has_body => self.uploads.new_tee(),
            _ => None,
        };
        let slot: Slot = Arc::default();
        let payload = match (tee, has_body) {
            (Some(tee), true) => {
                Payload::Stream(tee_body(body, tee, slot.clone(), self.uploads.max_size()))
            }
            (Some(tee), false) => {
                if let Ok(mut s) = slot.lock() {
                    *s = Some(tee);
                }
                Payload::Empty
            }
            (None, true) => Payload::Stream(body),
            (None, false) => Payload::Empty,
        };
        let resp = self
            .send_push(t, client, method.clone(), path, headers, payload, scope)
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if let Some(k) = &key {
                    self.uploads.forget(k);
                }
                return Err(e);
            }
        };
        let done = slot.lock().ok().and_then(|mut s| s.take());
        let status = resp.status();
        match (&method, &key) {
            (&Method::POST, _) if status == StatusCode::ACCEPTED => {
                let id = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok());
                let id = id.and_then(|l| upload_session(l, &t.upstream.cfg.url, repo));
                if let Some(id) = id {
                    self.uploads.started(SessionKey::new(up, repo, &id));
                }
            }
            (&Method::POST, _) if status == StatusCode::CREATED => match u.mount {
                Some(d) => {
                    // The upstream confirmed the mount: the blob is in the repository now,
                    // and these credentials may pull from it.
                    if self.store.files().exists(&d) {
                        warn_on(
                            t,
                            "link a mounted blob",
                            self.store.put_link(LinkKind::Blob, up, repo, &d),
                        );
                    }
                    warn_on(t, "record the pusher", self.record(t, client, true).await);
                }
                None => self.commit_upload(t, client, done, u.digest).await,
            },
            (&Method::PATCH, Some(k)) if status == StatusCode::ACCEPTED => match done {
                Some(tee)
                    if range_end(resp.headers()).is_none_or(|e| range_agrees(e, tee.len())) =>
                {
                    self.uploads.put_back(k.clone(), tee)
                }
                other => {
                    self.abandoned(t, other.is_some());
                    self.uploads.forget(k)
                }
            },
            (&Method::PUT, Some(k)) => {
                self.uploads.forget(k);
                if status == StatusCode::CREATED {
                    self.commit_upload(t, client, done, u.digest).await;
                } else {
                    self.abandoned(t, done.is_some());
                }
            }
            (&Method::GET | &Method::HEAD, Some(k)) if status.is_success() => {
                if let Some(end) = range_end(resp.headers()) {
                    self.uploads.check_range(k, end);
                }
            }
            (_, Some(k)) => {
                self.abandoned(t, done.is_some());
                self.uploads.forget(k);
            }
            (_, None) => self.abandoned(t, done.is_some()),
        }
        Ok(resp)
    }

    fn abandoned(&self, t: &Target, had_tee: bool) {
        if had_tee {
            self.metrics
                .upload_teed(t.upstream.name(), TeeResult::Abandoned);
        }
    }

    /// Commits a finished tee whose bytes hash to `expected` (the upstream accepted the
    /// upload). Problems are logged: the push itself succeeded.
    async fn commit_upload(
        &self,
        t: &Target,
        client: &Client,
        tee: Option<Tee>,
        expected: Option<Digest>,
    ) {
        let (Some(tee), Some(expected)) = (tee, expected) else {
            return;
        };
        let up = t.upstream.name();
        let (digest, len, temp) = tee.finish();
        let count = |result: TeeResult| self.metrics.upload_teed(up, result);
        if digest != expected {
            tracing::warn!(upstream = up, repo = t.repo.as_str(), expected = %expected, actual = %digest, "uploaded bytes seen by Wharf do not match the digest; not caching them");
            count(TeeResult::DigestMismatch);
            return;
        }
        let store = self.store.clone();
        let (up_s, repo_s) = (up.to_string(), t.repo.as_str().to_string());
        let busy = self.fills.in_progress(&digest).is_some();
        let res = tokio::task::spawn_blocking(move || -> Result<bool> {
            if busy || store.files().exists(&digest) {
                store.put_link(LinkKind::Blob, &up_s, &repo_s, &digest)?;
                return Ok(false);
            }
            store.commit_blob(&temp, &digest, len)?;
            store.put_link(LinkKind::Blob, &up_s, &repo_s, &digest)?;
            Ok(true)
        })
        .await
        .map_err(Error::internal)
        .and_then(|r| r);
        match res {
            Ok(true) => {
                tracing::info!(upstream = up, repo = t.repo.as_str(), digest = %digest, size = len, "pushed blob cached");
                count(TeeResult::Committed);
                self.evictor.maybe_evict();
            }
            Ok(false) => count(TeeResult::Committed),
            Err(e) => {
                tracing::warn!(upstream = up, digest = %digest, error = %e, "could not cache a pushed blob");
                count(TeeResult::Abandoned);
                return;
            }
        }
        if let Err(e) = self.record(t, client, true).await {
            tracing::warn!(error = %e, "could not record the pusher's authorization");
        }
    }
}

/// The parts of an upload request the tee needs.
struct Upload {
    session: Option<String>,
    digest: Option<Digest>,
    offset: Option<u64>,
    mount: Option<Digest>,
}

/// Logs what could not be noted after the upstream answered: the push itself went through,
/// and its answer reaches the client regardless.
fn warn_on(t: &Target, what: &str, res: Result<()>) {
    if let Err(e) = res {
        tracing::warn!(upstream = t.upstream.name(), repo = t.repo.as_str(), error = %e, "could not {what}");
    }
}

/// The end of an upstream's `Range: 0-<end>` answer.
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(RANGE)?.to_str().ok()?.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    (start.trim() == "0").then_some(())?;
    end.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(range_end(&h), None);
        h.insert(RANGE, http::HeaderValue::from_static("0-1023"));
        assert_eq!(range_end(&h), Some(1023));
        h.insert(RANGE, http::HeaderValue::from_static("bytes=0-7"));
        assert_eq!(range_end(&h), Some(7));
        h.insert(RANGE, http::HeaderValue::from_static("5-7"));
        assert_eq!(range_end(&h), None);
    }
}

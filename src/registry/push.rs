//! Pushes through the mirror: forwarded to the upstream with the client's own credentials;
//! what goes through is cached on the way.
//!
//! Invariants:
//! - Pushes use the client's own credentials only: a client without any is anonymous
//!   upstream, never the upstream's configured `username` (that would let anyone push as the
//!   operator).
//! - The upstream's answers reach the client unchanged (status, headers, body); this module
//!   only looks at them.
//! - A teed blob is committed only after the upstream confirmed the final `PUT` (201) and the
//!   bytes hashed to the digest the client named. A pushed manifest is cached only after the
//!   upstream accepted it (201) and its bytes hash to the digest the upstream reported; a tag
//!   pushed through Wharf then resolves to it at once, for every client the upstream lets
//!   pull the repository (the pusher is recorded as one).
//! - What the upstream confirms deleted (2xx) is unlinked here: the tag, or the digest from
//!   the repository and every cached tag pointing at it.

use super::manifest::{is_manifest_type, linkable_refs, DIGEST_HEADER};
use super::uploads::{range_agrees, tee_body, SessionKey, Slot, Tee, ABANDONED};
use super::{Registry, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::manifest::{parse_refs, MAX_MANIFEST_SIZE};
use crate::oci::{media, Digest, ErrorCode, Reference, RepoName};
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use crate::upstream::client::BoxError;
use crate::upstream::Payload;
use http::header::{LOCATION, RANGE};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::sync::Arc;

/// A push request, ready for the upstream.
pub struct PushRequest {
    pub method: Method,
    /// `/v2/<upstream repo>/...` with the query to forward.
    pub path_and_query: String,
    /// The client's headers worth forwarding.
    pub headers: HeaderMap,
    pub body: Incoming,
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
                    self.deleted_manifest(t, &reference).await?;
                }
                Ok(resp)
            }
            Push::DeleteBlob { digest } => {
                let resp = self
                    .send_push(t, client, method, path, &headers, Payload::Empty, &scope)
                    .await?;
                if resp.status().is_success() {
                    self.store
                        .delete_link(t.upstream.name(), t.repo.as_str(), &digest)?;
                }
                Ok(resp)
            }
        };
        let class = match &res {
            Ok(r) => crate::metrics::Metrics::status_class(r.status().as_u16()),
            Err(_) => "error",
        };
        self.metrics
            .push_requests
            .with_label_values(&[t.upstream.name(), class])
            .inc();
        res
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_push(
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
        body: Incoming,
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
            (None, true) => Payload::Stream(body.map_err(BoxError::from).boxed_unsync()),
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
                        self.store.put_link(up, repo, &d)?;
                    }
                    self.record(t, client, true).await?;
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
                .upload_tees
                .with_label_values(&[t.upstream.name(), ABANDONED])
                .inc();
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
        let count = |result: &str| {
            self.metrics
                .upload_tees
                .with_label_values(&[up, result])
                .inc()
        };
        if digest != expected {
            tracing::warn!(upstream = up, repo = t.repo.as_str(), expected = %expected, actual = %digest, "uploaded bytes seen by Wharf do not match the digest; not caching them");
            count("digest_mismatch");
            return;
        }
        let store = self.store.clone();
        let (up_s, repo_s) = (up.to_string(), t.repo.as_str().to_string());
        let busy = self.fills.in_progress(&digest).is_some();
        let res = tokio::task::spawn_blocking(move || -> Result<bool> {
            if busy || store.files().exists(&digest) {
                store.put_link(&up_s, &repo_s, &digest)?;
                return Ok(false);
            }
            store.commit_blob(&temp, &digest, len)?;
            store.put_link(&up_s, &repo_s, &digest)?;
            Ok(true)
        })
        .await
        .map_err(Error::internal)
        .and_then(|r| r);
        match res {
            Ok(true) => {
                tracing::info!(upstream = up, repo = t.repo.as_str(), digest = %digest, size = len, "pushed blob cached");
                count("committed");
                self.evictor.maybe_evict();
            }
            Ok(false) => count("committed"),
            Err(e) => {
                tracing::warn!(upstream = up, digest = %digest, error = %e, "could not cache a pushed blob");
                count(ABANDONED);
                return;
            }
        }
        if let Err(e) = self.record(t, client, true).await {
            tracing::warn!(error = %e, "could not record the pusher's authorization");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_manifest(
        &self,
        t: &Target,
        client: &Client,
        path: &str,
        headers: &HeaderMap,
        body: Incoming,
        reference: &Reference,
        content_type: Option<String>,
        scope: &str,
    ) -> Result<Response<Incoming>> {
        let declared = http_body::Body::size_hint(&body).exact();
        let small = declared.is_some_and(|n| n <= MAX_MANIFEST_SIZE as u64);
        let (payload, bytes) = if small {
            let bytes = Limited::new(body, MAX_MANIFEST_SIZE)
                .collect()
                .await
                .map_err(|e| {
                    Error::client(ErrorCode::ManifestInvalid, format!("manifest body: {e}"))
                })?
                .to_bytes();
            (Payload::Bytes(bytes.clone()), Some(bytes))
        } else {
            // Too large (or of unknown length) to cache: streamed, the upstream decides.
            let stream = body.map_err(BoxError::from).boxed_unsync();
            (Payload::Stream(stream), None)
        };
        let resp = self
            .send_push(t, client, Method::PUT, path, headers, payload, scope)
            .await?;
        if resp.status() == StatusCode::CREATED {
            if let Some(bytes) = bytes {
                let ct = content_type.as_deref();
                if let Err(e) = self
                    .pushed_manifest(t, client, reference, bytes, ct, resp.headers())
                    .await
                {
                    tracing::warn!(upstream = t.upstream.name(), error = %e, "could not cache a pushed manifest");
                }
            }
        }
        Ok(resp)
    }

    /// Caches a manifest the upstream just accepted, and the tag it was pushed as.
    async fn pushed_manifest(
        &self,
        t: &Target,
        client: &Client,
        reference: &Reference,
        bytes: bytes::Bytes,
        content_type: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let digest = Digest::of(&bytes);
        let reported = headers
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        if reported.is_some_and(|r| r != digest)
            || reference.as_digest().is_some_and(|d| *d != digest)
        {
            tracing::warn!(upstream = up, repo, digest = %digest, "the upstream reported another digest for a pushed manifest; not caching it");
            return Ok(());
        }
        let Ok(refs) = parse_refs(&bytes) else {
            return Ok(());
        };
        let media_type = refs
            .media_type
            .clone()
            .or(content_type
                .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
                .filter(|c| is_manifest_type(c)))
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        let m = Arc::new(StoredManifest {
            digest,
            media_type,
            bytes,
        });
        let tag = reference.as_tag().map(|tag| {
            let rec = TagRecord {
                digest,
                checked_at_ms: now_ms(),
            };
            (tag.as_str().to_string(), rec)
        });
        let store = self.store.clone();
        let (up_s, repo_s, m2, tag2) = (up.to_string(), repo.to_string(), m.clone(), tag.clone());
        tokio::task::spawn_blocking(move || {
            let linked = linkable_refs(&m2.bytes);
            let tag = tag2.as_ref().map(|(t, r)| (t.as_str(), *r));
            store.put_manifest(&up_s, &repo_s, &m2, &linked, tag)
        })
        .await
        .map_err(Error::internal)??;
        self.manifests.insert(digest, m).await;
        self.forget_negative(t, &digest.to_string());
        if let Some((tag, rec)) = &tag {
            self.tags.insert(tag_key(up, repo, tag), *rec).await;
            self.forget_negative(t, tag);
            if let Some(d) = referrers_tag_digest(tag) {
                self.invalidate_referrers(t, &d).await;
            }
        }
        if let Some(subject) = refs.subject {
            self.invalidate_referrers(t, &subject).await;
        }
        tracing::info!(upstream = up, repo, digest = %digest, tag = tag.as_ref().map(|(t, _)| t.as_str()).unwrap_or("-"), "pushed manifest cached");
        self.record(t, client, true).await
    }

    /// Forgets what the upstream confirmed deleted.
    async fn deleted_manifest(&self, t: &Target, reference: &Reference) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let tags = match reference {
            Reference::Tag(tag) => vec![tag.as_str().to_string()],
            Reference::Digest(d) => {
                self.store.delete_link(up, repo, d)?;
                if let Some(subject) = self
                    .cached_manifest(d)
                    .await?
                    .and_then(|m| parse_refs(&m.bytes).ok()?.subject)
                {
                    self.invalidate_referrers(t, &subject).await;
                }
                self.store.tags_pointing_at(up, repo, d)?
            }
        };
        for tag in tags {
            self.store.delete_tag(up, repo, &tag)?;
            self.tags.invalidate(&tag_key(up, repo, &tag)).await;
            self.forget_negative(t, &tag);
        }
        Ok(())
    }

    /// Drops every client's remembered upstream 404 for `reference` in `t`.
    fn forget_negative(&self, t: &Target, reference: &str) {
        let suffix = tag_key(t.upstream.name(), t.repo.as_str(), reference);
        // Keys are a 32-byte credential hash followed by the tag key (see `negative_key`).
        let res = self
            .negative
            .invalidate_entries_if(move |k, _| k.get(32..) == Some(suffix.as_slice()));
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not drop remembered 404s");
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

/// The end of an upstream's `Range: 0-<end>` answer.
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(RANGE)?.to_str().ok()?.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    (start.trim() == "0").then_some(())?;
    end.trim().parse().ok()
}

/// The digest a referrers-tag-schema tag (`sha256-<hex>`) stands for.
pub fn referrers_tag_digest(tag: &str) -> Option<Digest> {
    Digest::parse(&tag.replacen('-', ":", 1))
        .ok()
        .filter(|_| tag.starts_with("sha256-"))
}

/// What follows `/v2/<repo>/` in a `Location` the upstream sent (absolute on its own origin,
/// or absolute-path), query included; `None` for another origin or another path.
pub fn upstream_relative(location: &str, upstream: &Uri, repo: &str) -> Option<String> {
    let path_and_query = if location.starts_with("http://") || location.starts_with("https://") {
        let uri: Uri = location.parse().ok()?;
        let same = uri
            .scheme_str()
            .zip(upstream.scheme_str())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            && uri
                .authority()
                .zip(upstream.authority())
                .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
        if !same {
            return None;
        }
        uri.path_and_query()?.as_str().to_string()
    } else if location.starts_with('/') && !location.starts_with("//") {
        location.to_string()
    } else {
        return None;
    };
    path_and_query
        .strip_prefix(&format!("/v2/{repo}/"))
        .map(str::to_string)
}

/// The upload session id in an upstream's `Location` for an upload of `repo`.
pub fn upload_session(location: &str, upstream: &Uri, repo: &str) -> Option<String> {
    let rest = upstream_relative(location, upstream, repo)?;
    let path = rest.split('?').next().unwrap_or("");
    let id = path.strip_prefix("blobs/uploads/")?;
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_locations_are_read_relative_to_the_upstream() {
        let up: Uri = "https://reg.example:5000/".parse().expect("uri");
        let loc = "/v2/org/app/blobs/uploads/abc-1?_state=xyz";
        assert_eq!(
            upstream_relative(loc, &up, "org/app").as_deref(),
            Some("blobs/uploads/abc-1?_state=xyz")
        );
        assert_eq!(
            upload_session(loc, &up, "org/app").as_deref(),
            Some("abc-1")
        );
        let abs = "https://REG.example:5000/v2/org/app/blobs/uploads/abc-1";
        assert_eq!(
            upload_session(abs, &up, "org/app").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            upload_session(
                "https://cdn.example/v2/org/app/blobs/uploads/x",
                &up,
                "org/app"
            ),
            None
        );
        assert_eq!(
            upload_session(
                "http://reg.example:5000/v2/org/app/blobs/uploads/x",
                &up,
                "org/app"
            ),
            None,
            "another scheme is another origin"
        );
        assert_eq!(
            upload_session("/v2/org/other/blobs/uploads/x", &up, "org/app"),
            None
        );
        assert_eq!(
            upload_session("/v2/org/app/blobs/uploads/", &up, "org/app"),
            None
        );
        assert_eq!(
            upload_session("//evil/v2/org/app/blobs/uploads/x", &up, "org/app"),
            None
        );
    }

    #[test]
    fn ranges_and_referrers_tags() {
        let mut h = HeaderMap::new();
        assert_eq!(range_end(&h), None);
        h.insert(RANGE, http::HeaderValue::from_static("0-1023"));
        assert_eq!(range_end(&h), Some(1023));
        h.insert(RANGE, http::HeaderValue::from_static("bytes=0-7"));
        assert_eq!(range_end(&h), Some(7));
        h.insert(RANGE, http::HeaderValue::from_static("5-7"));
        assert_eq!(range_end(&h), None);
        let d = Digest::of(b"x");
        assert_eq!(
            referrers_tag_digest(&format!("sha256-{}", d.hex())),
            Some(d)
        );
        assert_eq!(referrers_tag_digest("latest"), None);
        assert_eq!(referrers_tag_digest(&format!("sha512-{}", d.hex())), None);
    }
}

//! Blob uploads forwarded upstream, teed into the cache on the way.
//!
//! Invariant: a teed blob is committed only after the upstream confirmed the final `PUT`
//! (201) and the bytes hashed to the digest the client named (see `uploads` for when a tee
//! exists).

use super::tee::{tee_body, Slot};
use super::uploads::{range_agrees, SessionKey, Tee};
use super::{warn_on, Forward, Pushes};
use crate::error::{Error, Result};
use crate::metrics::TeeResult;
use crate::oci::Digest;
use crate::registry::location::upload_session;
use crate::registry::target::Target;
use crate::store::LinkKind;
use crate::upstream::client::PushBody;
use crate::upstream::Payload;
use http::header::{LOCATION, RANGE};
use http::{HeaderMap, Method, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

/// The parts of an upload request the tee needs.
pub(super) struct Upload {
    pub session: Option<String>,
    pub digest: Option<Digest>,
    pub offset: Option<u64>,
    pub mount: Option<Digest>,
}

impl Pushes {
    pub(super) async fn upload(
        &self,
        fwd: &Forward<'_>,
        body: PushBody,
        u: Upload,
    ) -> Result<http::Response<Incoming>> {
        let (up, repo) = (fwd.t.upstream.name(), fwd.t.repo.as_str());
        let key = u.session.as_deref().map(|id| SessionKey::new(up, repo, id));
        let slot: Slot = Arc::default();
        let payload = self.payload(&fwd.method, key.as_ref(), &u, body, &slot);
        let resp = match fwd.send(payload).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(k) = &key {
                    self.uploads.forget(k);
                }
                return Err(e);
            }
        };
        let done = slot.lock().ok().and_then(|mut s| s.take());
        self.answered(fwd, key, &u, &resp, done).await;
        Ok(resp)
    }

    /// The request's body for the upstream: teed into `slot` when this upload is being
    /// cached.
    fn payload(
        &self,
        method: &Method,
        key: Option<&SessionKey>,
        u: &Upload,
        body: PushBody,
        slot: &Slot,
    ) -> Payload {
        let has_body = !http_body::Body::is_end_stream(&body);
        let tee = match (method, key) {
            (&Method::PATCH | &Method::PUT, Some(k)) => self.uploads.take(k, u.offset),
            (&Method::POST, None) if u.digest.is_some() && has_body => self.uploads.new_tee(),
            _ => None,
        };
        match (tee, has_body) {
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
        }
    }

    /// What the upstream's answer means for the session's tee.
    async fn answered(
        &self,
        fwd: &Forward<'_>,
        key: Option<SessionKey>,
        u: &Upload,
        resp: &http::Response<Incoming>,
        done: Option<Tee>,
    ) {
        let (t, client) = (fwd.t, fwd.client);
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let status = resp.status();
        match (&fwd.method, &key) {
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
                    let recorded = self.access.record(t, client, true).await;
                    warn_on(t, "record the pusher", recorded);
                }
                None => self.commit(fwd, done, u.digest).await,
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
                    self.commit(fwd, done, u.digest).await;
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
    }

    fn abandoned(&self, t: &Target, had_tee: bool) {
        if had_tee {
            self.metrics
                .upload_teed(t.upstream.name(), TeeResult::Abandoned);
        }
    }

    /// Commits a finished tee whose bytes hash to `expected` (the upstream accepted the
    /// upload). Problems are logged: the push itself succeeded.
    async fn commit(&self, fwd: &Forward<'_>, tee: Option<Tee>, expected: Option<Digest>) {
        let (Some(tee), Some(expected)) = (tee, expected) else {
            return;
        };
        let t = fwd.t;
        let up = t.upstream.name();
        let (digest, len, temp) = tee.finish();
        let count = |result| self.metrics.upload_teed(up, result);
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
        if let Err(e) = self.access.record(t, fwd.client, true).await {
            tracing::warn!(error = %e, "could not record the pusher's authorization");
        }
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

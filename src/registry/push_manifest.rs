//! Manifest pushes and deletes: what the upstream accepted is cached at once, what it
//! deleted is forgotten.
//!
//! Invariants:
//! - A pushed manifest is cached only after the upstream accepted it (201) and its bytes hash
//!   to the digest the upstream reported (and the one the client named); a tag pushed through
//!   Wharf then resolves to it at once, for every client the upstream lets pull the
//!   repository (the pusher is recorded as one), and remembered 404s for it are dropped.
//! - What the upstream confirms deleted (2xx) is unlinked: the tag, or the digest from the
//!   repository and every cached tag pointing at it. Nothing else is removed.
//! - A referrer (a manifest with a `subject`, or a `sha256-<hex>` tag) pushed or deleted
//!   through Wharf drops the cached referrers list of its subject.

use super::manifest::{accept_manifest, DIGEST_HEADER};
use super::{Registry, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{Digest, ErrorCode, Reference};
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use crate::upstream::client::{BoxError, PushBody};
use crate::upstream::Payload;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn push_manifest(
        &self,
        t: &Target,
        client: &Client,
        path: &str,
        headers: &HeaderMap,
        body: PushBody,
        reference: &Reference,
        content_type: Option<String>,
        scope: &str,
    ) -> Result<Response<Incoming>> {
        let declared = http_body::Body::size_hint(&body).exact();
        let small = declared.is_some_and(|n| n <= MAX_MANIFEST_SIZE as u64);
        let (payload, bytes) = if small {
            let bytes = read_small(body).await.map_err(|e| {
                Error::client(ErrorCode::ManifestInvalid, format!("manifest body: {e}"))
            })?;
            (Payload::Bytes(bytes.clone()), Some(bytes))
        } else {
            // Too large (or of unknown length) to cache: streamed, the upstream decides.
            (Payload::Stream(body), None)
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
        let (media_type, refs) = match accept_manifest(&bytes, content_type) {
            Ok(accepted) => accepted,
            Err(why) => {
                // Pulls refuse such a manifest; a lenient upstream's acceptance must not cache it.
                tracing::warn!(upstream = up, repo, digest = %digest, why, "not caching a pushed manifest");
                return Ok(());
            }
        };
        let (links, subject) = (refs.links(), refs.subject);
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
            let tag = tag2.as_ref().map(|(t, r)| (t.as_str(), *r));
            store.put_manifest(&up_s, &repo_s, &m2, &links, tag)?;
            store.note_manifest(&m2.digest, m2.bytes.len() as u64)
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
        if let Some(subject) = subject {
            self.invalidate_referrers(t, &subject).await;
        }
        tracing::info!(upstream = up, repo, digest = %digest, tag = tag.as_ref().map(|(t, _)| t.as_str()).unwrap_or("-"), "pushed manifest cached");
        self.record(t, client, true).await
    }

    /// Forgets what the upstream confirmed deleted.
    pub(super) async fn deleted_manifest(&self, t: &Target, reference: &Reference) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let tags = match reference {
            Reference::Tag(tag) => vec![tag.as_str().to_string()],
            Reference::Digest(d) => {
                self.store.delete_link(up, repo, d)?;
                if let Some(subject) = self
                    .cached_manifest(d)
                    .await?
                    .and_then(|m| m.refs().ok()?.subject)
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

/// The digest a referrers-tag-schema tag (`sha256-<hex>`) stands for.
pub fn referrers_tag_digest(tag: &str) -> Option<Digest> {
    Digest::parse(&tag.replacen('-', ":", 1))
        .ok()
        .filter(|_| tag.starts_with("sha256-"))
}

/// The whole body, at most [`MAX_MANIFEST_SIZE`] bytes. (A loop rather than `Limited`: with a
/// boxed error type, `Limited`'s bounds make the handler's future fail the `Send` check.)
async fn read_small(mut body: PushBody) -> std::result::Result<Bytes, BoxError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            if buf.len() + d.len() > MAX_MANIFEST_SIZE {
                return Err("length limit exceeded".into());
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tags() {
        let d = Digest::of(b"x");
        assert_eq!(
            referrers_tag_digest(&format!("sha256-{}", d.hex())),
            Some(d)
        );
        assert_eq!(referrers_tag_digest("latest"), None);
        assert_eq!(referrers_tag_digest(&format!("sha512-{}", d.hex())), None);
    }
}

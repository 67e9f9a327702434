//! What a push or delete through Wharf changes in the manifest caches: what the upstream
//! accepted is cached at once, what it deleted is forgotten (the forwarding itself is
//! `pushes`).
//!
//! Invariants:
//! - A pushed manifest is cached only after the upstream accepted it (201) and its bytes hash
//!   to the digest the upstream reported (and the one the client named); a tag pushed through
//!   Wharf then resolves to it at once, for every client the upstream lets pull the
//!   repository (the pusher is recorded as one, by `pushes`), and remembered 404s for it are
//!   dropped.
//! - What the upstream confirms deleted (2xx) is unlinked: the tag, or the digest from the
//!   repository and every cached tag pointing at it. Nothing else is removed.
//! - A referrer (a manifest with a `subject`, or a `sha256-<hex>` tag) pushed or deleted
//!   through Wharf names its subject, whose cached referrers list the caller drops.

use super::{Manifests, DIGEST_HEADER};
use crate::error::Result;
use crate::oci::{Digest, Reference};
use crate::registry::target::Target;
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use http::HeaderMap;
use std::sync::Arc;

impl Manifests {
    /// Caches a manifest the upstream just accepted (`headers`: its answer), and the tag it
    /// was pushed as. `Some(subjects)` when it was cached: the digests whose referrers lists
    /// it changed.
    pub async fn pushed(
        &self,
        t: &Target,
        reference: &Reference,
        bytes: bytes::Bytes,
        content_type: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Option<Vec<Digest>>> {
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
            return Ok(None);
        }
        let (media_type, refs) = match crate::oci::manifest::accept(&bytes, content_type) {
            Ok(accepted) => accepted,
            Err(why) => {
                // Pulls refuse such a manifest; a lenient upstream's acceptance must not cache it.
                tracing::warn!(upstream = up, repo, digest = %digest, why, "not caching a pushed manifest");
                return Ok(None);
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
        self.keep(t, &m, links, tag.clone()).await?;
        self.forget_negative(t, &digest.to_string());
        let mut subjects = Vec::new();
        if let Some((tag, rec)) = &tag {
            self.tags.insert(tag_key(up, repo, tag), *rec).await;
            self.forget_negative(t, tag);
            subjects.extend(referrers_tag_digest(tag));
        }
        subjects.extend(subject);
        tracing::info!(upstream = up, repo, digest = %digest, tag = tag.as_ref().map(|(t, _)| t.as_str()).unwrap_or("-"), "pushed manifest cached");
        Ok(Some(subjects))
    }

    /// Forgets what the upstream confirmed deleted; the subject whose referrers list that
    /// changed, if any.
    pub async fn deleted(&self, t: &Target, reference: &Reference) -> Result<Option<Digest>> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let mut subject = None;
        let tags = match reference {
            Reference::Tag(tag) => vec![tag.as_str().to_string()],
            Reference::Digest(d) => {
                self.store.delete_link(up, repo, d)?;
                subject = self.cached(d).await?.and_then(|m| m.refs().ok()?.subject);
                self.store.tags_pointing_at(up, repo, d)?
            }
        };
        for tag in tags {
            self.store.delete_tag(up, repo, &tag)?;
            self.tags.invalidate(&tag_key(up, repo, &tag)).await;
            self.forget_negative(t, &tag);
        }
        Ok(subject)
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

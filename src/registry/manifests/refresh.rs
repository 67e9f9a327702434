//! `wharf cache refresh`: a tag revalidated now, whatever its `tag_ttl` and an
//! `immutable_tags` rule, as Wharf itself (the upstream's configured credentials, or
//! anonymously): the shared `HEAD` of a client's revalidation (coalesced with concurrent
//! pulls, an unchanged tag recorded as confirmed), then, if the tag moved, a `GET` of its
//! new manifest, stored and recorded as the tag's resolution as a pull would.

use super::Manifests;
use crate::auth::Client;
use crate::error::Result;
use crate::oci::{Digest, Tag};
use crate::registry::target::Target;
use crate::store::keys::TagRecord;
use crate::store::now_ms;
use std::sync::Arc;

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The upstream's tag still points at the cached digest (now confirmed).
    Unchanged(Digest),
    /// It points elsewhere (or was not cached): the new manifest is cached and the tag moved.
    Moved { from: Option<Digest>, to: Digest },
}

impl Manifests {
    /// Revalidates `tag` of `t` now.
    pub async fn refresh(self: &Arc<Self>, t: &Target, tag: &Tag) -> Result<Refreshed> {
        // As the upstream sees Wharf: its configured credentials, or anonymous (so decisions
        // are recorded for the identity that was actually used).
        let client = t.upstream.effective_client(&Client::anonymous());
        let rec = self.get_tag(t, tag.as_str()).await?;
        let cached = match rec {
            Some(r) => self.cached(&r.digest).await?.map(|_| r),
            None => None,
        };
        if let Some(rec) = cached {
            let head = self.shared_head(t, &client, tag, &rec).await?;
            if head.value == Some(rec.digest) {
                return Ok(Refreshed::Unchanged(rec.digest));
            }
        }
        // Not through `shared_get`: a resolution confirmed within `tag_ttl` would answer it.
        let m = self.fetch(t, &client, tag.as_str(), None, &[]).await?;
        let to = m.digest;
        let rec = TagRecord {
            digest: to,
            checked_at_ms: now_ms(),
        };
        self.put_tag(t, tag.as_str(), rec).await?;
        Ok(match cached.map(|r| r.digest) {
            Some(from) if from == to => Refreshed::Unchanged(to),
            from => Refreshed::Moved { from, to },
        })
    }
}

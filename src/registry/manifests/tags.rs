//! Manifests by tag: a cached resolution is served while it is younger than the upstream's
//! `tag_ttl` (or the tag is immutable), then revalidated with an upstream `HEAD` and
//! re-fetched only if the digest moved; with a shared bucket, a resolution another replica
//! confirmed more recently is taken first. The upstream requests themselves are shared by
//! concurrent callers (`tag_flight`).
//!
//! Invariants: see `manifest` (stored bytes are verified, never re-serialized); a failed
//! revalidation serves the cached resolution only when the upstream is down or answers 5xx
//! (stale-if-error), never after a 404 or an auth refusal.

use super::{acceptable, stale, Manifests};
use crate::auth::Client;
use crate::error::Result;
use crate::oci::{ErrorCode, Tag};
use crate::registry::served::{Outcome, Served};
use crate::registry::target::Target;
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use std::sync::Arc;

/// A manifest as served.
type ServedManifest = Served<Arc<StoredManifest>>;

impl Manifests {
    pub(super) async fn by_tag(
        self: &Arc<Self>,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
    ) -> Result<ServedManifest> {
        let mut rec = self.get_tag(t, tag.as_str()).await?;
        // Missing or due for revalidation here: another replica may have confirmed it since.
        let due = |r: &TagRecord| {
            u128::from(now_ms().saturating_sub(r.checked_at_ms))
                >= t.upstream.cfg.tag_ttl.as_millis()
        };
        if self.bucket.is_some() && rec.as_ref().is_none_or(due) {
            let newer_than = rec.map(|r| r.checked_at_ms);
            if let Some(r) = self.tag_from_bucket(t, tag.as_str(), newer_than).await {
                rec = Some(r);
            }
        }
        let cached = match rec {
            Some(r) => self.cached(&r.digest).await?.map(|m| (r, m)),
            None => None,
        };
        let Some((rec, m)) = cached else {
            return self.fetch_tag(t, client, tag, accept).await;
        };
        if !acceptable(accept, &m.media_type) {
            // The tag resolves to a type this client does not take: ask with its own Accept
            // at once (one upstream GET, not a full-Accept GET first).
            return self.shared_get(t, client, tag, accept).await;
        }
        let age_ms = u128::from(now_ms().saturating_sub(rec.checked_at_ms));
        let cfg = &t.upstream.cfg;
        if age_ms < cfg.tag_ttl.as_millis() || t.upstream.is_immutable(tag.as_str()) {
            let tail = format!("manifests/{}", tag.as_str());
            self.access
                .ensure_authorized(
                    t,
                    client,
                    Some(&m.digest),
                    &tail,
                    ErrorCode::ManifestUnknown,
                )
                .await?;
            return Ok(Served::hit(m));
        }
        if cfg.policy.stale_while_revalidate && self.access.is_fresh(client, t).await {
            self.revalidate_in_background(t, client, tag, rec);
            return Ok(Served::new(m, Outcome::Stale));
        }
        let within_window = age_ms <= (cfg.tag_ttl + cfg.policy.stale_if_error).as_millis();
        self.revalidate(t, client, tag, accept, rec, m, within_window)
            .await
    }

    /// Starts a background revalidation of `tag` unless one is running already.
    fn revalidate_in_background(
        self: &Arc<Self>,
        t: &Target,
        client: &Client,
        tag: &Tag,
        rec: TagRecord,
    ) {
        let key = tag_key(t.upstream.name(), t.repo.as_str(), tag.as_str());
        match self.revalidating.lock() {
            Ok(mut set) => {
                if !set.insert(key.clone()) {
                    return;
                }
            }
            Err(_) => return,
        }
        let (me, t, client, tag) = (self.clone(), t.clone(), client.clone(), tag.clone());
        tokio::spawn(async move {
            let res = match me.cached(&rec.digest).await {
                Ok(Some(m)) => me
                    .revalidate(&t, &client, &tag, &[], rec, m, false)
                    .await
                    .map(|_| ()),
                Ok(None) => me.fetch_tag(&t, &client, &tag, &[]).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                tracing::info!(upstream = t.upstream.name(), repo = t.repo.as_str(), tag = tag.as_str(), error = %e, "background tag revalidation failed");
            }
            if let Ok(mut set) = me.revalidating.lock() {
                set.remove(&key);
            }
        });
    }

    /// Revalidates a stale tag with a `HEAD`; re-fetches if it moved. When the upstream fails
    /// and `stale_ok`, the cached manifest is served (under the offline authorization rule).
    #[allow(clippy::too_many_arguments)]
    async fn revalidate(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
        rec: TagRecord,
        m: Arc<StoredManifest>,
        stale_ok: bool,
    ) -> Result<ServedManifest> {
        let head = self.shared_head(t, client, tag, &rec).await;
        let offline = |m: Arc<StoredManifest>, e: crate::error::Error| {
            self.access
                .offline(t, client, Some(&m.digest), e.clone())
                .map(|()| stale(m, &e))
        };
        match head {
            Ok(d) if d.value == Some(rec.digest) => Ok(Served::new(m, d.outcome)),
            Ok(d) => match self.fetch_tag(t, client, tag, accept).await {
                Err(e) if stale_ok && e.is_upstream_failure() => offline(m, e),
                other => other.map(|s| s.after(d.outcome)),
            },
            Err(e) if stale_ok && e.is_upstream_failure() => offline(m, e),
            Err(e) => Err(e),
        }
    }

    /// Fetches a tag's manifest and records the resolution (with the proxy's full `Accept`;
    /// again with the client's own if that type is not one it takes). Concurrent callers
    /// share each request (`tag_flight`).
    async fn fetch_tag(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
    ) -> Result<ServedManifest> {
        let m = self.shared_get(t, client, tag, &[]).await?;
        if acceptable(accept, &m.value.media_type) {
            return Ok(m);
        }
        let again = self.shared_get(t, client, tag, accept).await?;
        Ok(again.after(m.outcome))
    }
}

//! Manifests by tag: a cached resolution is served while it is younger than the upstream's
//! `tag_ttl` (or the tag is immutable), then revalidated with an upstream `HEAD` and
//! re-fetched only if the digest moved; with a shared bucket, a resolution another replica
//! confirmed more recently is taken first. The upstream requests themselves are shared by
//! concurrent callers (`tag_flight`).
//!
//! Invariants: see `manifest` (stored bytes are verified, never re-serialized); a failed
//! revalidation serves the cached resolution only when the upstream is down or answers 5xx
//! (stale-if-error), never after a 404 or an auth refusal.

use super::manifest::{acceptable, stale, DIGEST_HEADER};
use super::{Registry, Target};
use crate::auth::Client;
use crate::error::Result;
use crate::oci::{media, Digest, ErrorCode, Tag};
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue, Method};
use std::sync::Arc;

impl Registry {
    pub(super) async fn manifest_by_tag(
        self: &Arc<Self>,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
    ) -> Result<Arc<StoredManifest>> {
        let up = t.upstream.name();
        let repo = t.repo.as_str();
        let mut rec = self.get_tag(up, repo, tag.as_str()).await?;
        // Missing or due for revalidation here: another replica may have confirmed it since.
        let due = |r: &TagRecord| {
            u128::from(now_ms().saturating_sub(r.checked_at_ms))
                >= t.upstream.cfg.tag_ttl.as_millis()
        };
        if self.shared.is_some() && rec.as_ref().is_none_or(due) {
            let newer_than = rec.map(|r| r.checked_at_ms);
            if let Some(r) = self.shared_tag(t, tag.as_str(), newer_than).await {
                rec = Some(r);
            }
        }
        let cached = match rec {
            Some(r) => self.cached_manifest(&r.digest).await?.map(|m| (r, m)),
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
            self.ensure_authorized(
                t,
                client,
                Some(&m.digest),
                &tail,
                ErrorCode::ManifestUnknown,
            )
            .await?;
            return Ok(m);
        }
        if cfg.policy.stale_while_revalidate && self.authz.is_fresh(client, up, repo).await {
            self.revalidate_in_background(t, client, tag, rec);
            super::mark(crate::metrics::RequestResult::Stale);
            return Ok(m);
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
            let res = match me.cached_manifest(&rec.digest).await {
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
    ) -> Result<Arc<StoredManifest>> {
        let head = self.shared_head(t, client, tag, &rec).await;
        match head {
            Ok(Some(d)) if d == rec.digest => Ok(m),
            Ok(_) => match self.fetch_tag(t, client, tag, accept).await {
                Err(e) if stale_ok && e.is_upstream_failure() => self
                    .offline(t, client, Some(&m.digest), e.clone())
                    .map(|()| stale(m, &e)),
                other => other,
            },
            Err(e) if stale_ok && e.is_upstream_failure() => self
                .offline(t, client, Some(&m.digest), e.clone())
                .map(|()| stale(m, &e)),
            Err(e) => Err(e),
        }
    }

    /// The digest the upstream's tag points at now, from a `HEAD` with the client's
    /// credentials (Docker Hub does not count HEADs against its pull limit); `None` if the
    /// upstream did not say. A success is also an authorization decision.
    pub(super) async fn head_tag(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
    ) -> Result<Option<Digest>> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media::MANIFEST_ACCEPT));
        let tail = format!("manifests/{}", tag.as_str());
        let resp = self
            .send_as(
                t,
                client,
                Method::HEAD,
                &tail,
                &headers,
                ErrorCode::ManifestUnknown,
            )
            .await?;
        Ok(resp
            .headers()
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok()))
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
    ) -> Result<Arc<StoredManifest>> {
        let m = self.shared_get(t, client, tag, &[]).await?;
        if acceptable(accept, &m.media_type) {
            return Ok(m);
        }
        self.shared_get(t, client, tag, accept).await
    }

    /// A tag resolution: moka first, then RocksDB.
    pub(super) async fn get_tag(
        &self,
        up: &str,
        repo: &str,
        tag: &str,
    ) -> Result<Option<TagRecord>> {
        let key = tag_key(up, repo, tag);
        if let Some(r) = self.tags.get(&key).await {
            return Ok(Some(r));
        }
        let rec = self.store.get_tag(up, repo, tag)?;
        if let Some(r) = rec {
            self.tags.insert(key, r).await;
        }
        Ok(rec)
    }

    pub(super) async fn put_tag(
        &self,
        up: &str,
        repo: &str,
        tag: &str,
        rec: TagRecord,
    ) -> Result<()> {
        self.store.put_tag(up, repo, tag, rec)?;
        self.tags.insert(tag_key(up, repo, tag), rec).await;
        self.share_tag(up, repo, tag, &rec);
        Ok(())
    }
}

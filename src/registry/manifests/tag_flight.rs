//! Tag requests to the upstream in single flight: concurrent misses of one tag share one
//! `GET`, concurrent revalidations one `HEAD` (per upstream, repository, tag and, for a `GET`,
//! the `Accept` it narrows to), so a burst of clients costs one request against the
//! upstream's pull limit.
//!
//! Invariants:
//! - The shared request is made with the credentials of the client that started it; every
//!   other client is authorized for itself before it gets the result (a fresh decision, else
//!   an upstream `HEAD` with its own credentials, else the offline rule): a private tag
//!   fetched for alice never reaches an anonymous client the upstream would refuse.
//! - A shared request that failed is passed on only to clients with the same credentials, or
//!   when the upstream could not be reached at all; any other client makes its own request
//!   (a refusal, a rate limit or a refused document may say what the first client's
//!   credentials can see).
//! - A request that starts just after another one ended first looks for that one's answer
//!   (a resolution confirmed within `tag_ttl`), so a burst does not become two.

use super::flight::Flights;
use super::Manifests;
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::metrics::Revalidation;
use crate::oci::{Digest, ErrorCode, Tag};
use crate::registry::served::{Outcome, Served};
use crate::registry::target::Target;
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{now_ms, StoredManifest};
use std::sync::Arc;

/// What a shared tag request produced, and for which credentials.
#[derive(Clone)]
pub(super) struct Shared<T> {
    res: Result<T>,
    by: [u8; 32],
}

pub(super) type TagGets = Flights<Vec<u8>, Shared<Served<Arc<StoredManifest>>>>;
pub(super) type TagHeads = Flights<Vec<u8>, Shared<Served<Option<Digest>>>>;

fn flight_key(t: &Target, tag: &Tag, what: &str) -> Vec<u8> {
    let mut k = tag_key(t.upstream.name(), t.repo.as_str(), tag.as_str());
    k.push(0);
    k.extend_from_slice(what.as_bytes());
    k
}

impl Manifests {
    /// The tag's manifest from the upstream, one `GET` shared by concurrent callers. With
    /// `accept` empty (the proxy's full list) the resolution is recorded.
    pub(super) async fn shared_get(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
    ) -> Result<Served<Arc<StoredManifest>>> {
        let key = flight_key(t, tag, &format!("GET {}", accept.join(",")));
        let op = || async {
            Shared {
                res: self.get_once(t, client, tag, accept).await,
                by: client.id,
            }
        };
        let (shared, ran) = self.tag_gets.run(key, op).await;
        match self.joined(t, client, tag, shared, ran)? {
            Some(m) => {
                self.authorize_tag(t, client, tag, Some(&m.value.digest))
                    .await?;
                Ok(m)
            }
            None => Ok(self
                .get_once(t, client, tag, accept)
                .await?
                .after(Outcome::Coalesced)),
        }
    }

    /// The digest the upstream's tag points at now (a `HEAD`), one request shared by
    /// concurrent revalidations of `rec`; an unchanged tag is recorded as confirmed.
    pub(super) async fn shared_head(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        rec: &TagRecord,
    ) -> Result<Served<Option<Digest>>> {
        let key = flight_key(t, tag, "HEAD");
        let op = || async {
            Shared {
                res: self.head_once(t, client, tag, rec).await,
                by: client.id,
            }
        };
        let (shared, ran) = self.tag_heads.run(key, op).await;
        match self.joined(t, client, tag, shared, ran)? {
            Some(d) => {
                let digest = d.value.as_ref().or(Some(&rec.digest));
                self.authorize_tag(t, client, tag, digest).await?;
                Ok(d)
            }
            None => Ok(self
                .head_once(t, client, tag, rec)
                .await?
                .after(Outcome::Coalesced)),
        }
    }

    /// What a caller does with a shared result: `Ok(Some)` to authorize and use (coalesced),
    /// `Ok(None)` to make its own request, `Err` to pass on. A result this caller produced
    /// itself is passed on as it is.
    fn joined<T>(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        shared: Shared<Served<T>>,
        ran: bool,
    ) -> Result<Option<Served<T>>> {
        if ran {
            return shared.res.map(Some);
        }
        match shared.res {
            Ok(v) => Ok(Some(Served::new(v.value, Outcome::Coalesced))),
            // Another client's error is passed on only when it says nothing about the tag: a
            // transport failure (the upstream unreachable). Anything else (a 502 for a bad
            // document, a 429 for that account, a 401) could tell this client what the other
            // credentials may see: it asks with its own.
            Err(e) if shared.by == client.id || matches!(e, Error::Unreachable { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(upstream = t.upstream.name(), repo = t.repo.as_str(), tag = tag.as_str(), error = %e, "shared tag request failed for other credentials; asking with this client's own");
                Ok(None)
            }
        }
    }

    /// Whether `r` was confirmed upstream within the upstream's `tag_ttl`.
    fn confirmed_lately(&self, t: &Target, r: &TagRecord) -> bool {
        u128::from(now_ms().saturating_sub(r.checked_at_ms)) < t.upstream.cfg.tag_ttl.as_millis()
    }

    async fn authorize_tag(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        digest: Option<&Digest>,
    ) -> Result<()> {
        let tail = format!("manifests/{}", tag.as_str());
        self.access
            .ensure_authorized(t, client, digest, &tail, ErrorCode::ManifestUnknown)
            .await
    }

    /// One `GET` of the tag (unless a fresh resolution is at hand: another request just
    /// made it).
    async fn get_once(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        accept: &[String],
    ) -> Result<Served<Arc<StoredManifest>>> {
        if accept.is_empty() {
            if let Some(r) = self.get_tag(t, tag.as_str()).await? {
                if self.confirmed_lately(t, &r) {
                    if let Some(m) = self.cached(&r.digest).await? {
                        self.authorize_tag(t, client, tag, Some(&m.digest)).await?;
                        return Ok(Served::hit(m));
                    }
                }
            }
        }
        let m = self.fetch(t, client, tag.as_str(), None, accept).await?;
        if accept.is_empty() {
            let rec = TagRecord {
                digest: m.digest,
                checked_at_ms: now_ms(),
            };
            self.put_tag(t, tag.as_str(), rec).await?;
        }
        Ok(Served::new(m, Outcome::Miss))
    }

    /// One revalidation `HEAD` of the tag (unless another request just confirmed it).
    async fn head_once(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
        rec: &TagRecord,
    ) -> Result<Served<Option<Digest>>> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        if let Some(r) = self.get_tag(t, tag.as_str()).await? {
            if r.checked_at_ms > rec.checked_at_ms && self.confirmed_lately(t, &r) {
                self.authorize_tag(t, client, tag, Some(&r.digest)).await?;
                return Ok(Served::hit(Some(r.digest)));
            }
        }
        let head = self.head_tag(t, client, tag).await;
        let outcome = match &head {
            Ok(Some(d)) if *d == rec.digest => Revalidation::Unchanged,
            Ok(_) => Revalidation::Changed,
            Err(_) => Revalidation::Error,
        };
        self.metrics.tag_revalidated(up, outcome);
        if let Ok(Some(d)) = &head {
            if *d == rec.digest {
                tracing::debug!(
                    upstream = up,
                    repo,
                    tag = tag.as_str(),
                    "tag unchanged upstream"
                );
                let fresh = TagRecord {
                    digest: *d,
                    checked_at_ms: now_ms(),
                };
                self.put_tag(t, tag.as_str(), fresh).await?;
            }
        }
        head.map(Served::hit)
    }
}

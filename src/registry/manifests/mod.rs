//! [`Manifests`]: manifests by digest (immutable) and by tag (fresh for `tag_ttl`, then
//! revalidated: `tags`), the in-memory caches in front of RocksDB (hot manifests, tag
//! resolutions, remembered upstream 404s), and what a push or delete through Wharf changes in
//! them (`pushed`).
//!
//! Inside the folder, each file leans only on those before it: `records` (the local caches)
//! ← `fetch` (upstream requests) ← `tag_flight` (shared tag requests) ← `tags` (tag policy) ←
//! this file (the entry point, by digest) and `pushed`.
//!
//! Invariants:
//! - A manifest is stored only after its bytes hashed to its digest (for a by-digest request,
//!   the requested digest; for a tag, the digest the bytes have).
//! - Stored and served bytes are the upstream's bytes, never re-serialized.
//! - A cached manifest is served only if the client's `Accept` admits its media type;
//!   otherwise the upstream is asked with the client's own `Accept`.
//! - A tag revalidation that fails because the upstream is down or answers 5xx serves the
//!   cached resolution (stale-if-error); a 404 or an auth refusal is passed on.
//! - Nothing cached is returned before [`Access`] authorized the client for the repository.

mod fetch;
mod flight;
mod pushed;
mod records;
pub mod refresh;
mod tag_flight;
mod tags;

pub use pushed::referrers_tag_digest;

use super::access::Access;
use super::bucket::Bucket;
use super::capacity::Evictor;
use super::served::{Outcome, Served};
use super::target::Target;
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::oci::{media, Digest, ErrorCode, Reference};
use crate::store::keys::{tag_key, TagRecord};
use crate::store::{LinkKind, Store, StoredManifest};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The header that carries a manifest's digest.
pub const DIGEST_HEADER: &str = "docker-content-digest";

/// Manifests and tag resolutions, cached and fetched.
pub struct Manifests {
    store: Arc<Store>,
    access: Arc<Access>,
    bucket: Option<Arc<Bucket>>,
    evictor: Arc<Evictor>,
    metrics: Arc<Metrics>,
    /// Told of each manifest fetched from an upstream and stored (`fill`).
    notify: Arc<crate::notify::Notifier>,
    /// The longest gap between two chunks of an upstream's body (`fill.idle_timeout`).
    idle: Duration,
    /// Hot manifests by digest (bounded by bytes).
    hot: moka::future::Cache<Digest, Arc<StoredManifest>>,
    /// Upstream 404s for manifests, remembered for the upstream's `negative_ttl`.
    negative: moka::future::Cache<Vec<u8>, Duration>,
    /// Hot tag resolutions, keyed like the `tags` column family; RocksDB stays the truth.
    tags: moka::future::Cache<Vec<u8>, TagRecord>,
    /// Tags being revalidated in the background.
    revalidating: Mutex<HashSet<Vec<u8>>>,
    /// Tag `GET`s and revalidation `HEAD`s under way upstream (single flight).
    tag_gets: tag_flight::TagGets,
    tag_heads: tag_flight::TagHeads,
}

impl Manifests {
    pub fn new(
        store: Arc<Store>,
        access: Arc<Access>,
        bucket: Option<Arc<Bucket>>,
        evictor: Arc<Evictor>,
        metrics: Arc<Metrics>,
        idle: Duration,
        notify: Arc<crate::notify::Notifier>,
    ) -> Manifests {
        Manifests {
            hot: evictor.hot_manifests(),
            negative: moka::future::Cache::builder()
                .max_capacity(100_000)
                .expire_after(TtlIsValue)
                .support_invalidation_closures()
                .build(),
            tags: moka::future::Cache::new(100_000),
            revalidating: Mutex::new(HashSet::new()),
            tag_gets: Default::default(),
            tag_heads: Default::default(),
            store,
            access,
            bucket,
            evictor,
            metrics,
            notify,
            idle,
        }
    }

    /// The manifest for `reference` in `t`, acceptable to a client that sent `accept`, if the
    /// upstream lets `client` pull it.
    /// An upstream 404 is remembered for the upstream's `negative_ttl` (per credentials), so
    /// a crash-looping client does not hammer the upstream.
    pub async fn manifest(
        self: &Arc<Self>,
        t: &Target,
        client: &Client,
        reference: &Reference,
        accept: &[String],
    ) -> Result<Served<Arc<StoredManifest>>> {
        let client = &t.upstream.effective_client(client);
        let neg_key = negative_key(t, client, reference);
        if self.negative.contains_key(&neg_key) {
            return Err(Error::client(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest unknown upstream (remembered): {}:{reference}",
                    t.repo
                ),
            ));
        }
        let res = match reference {
            Reference::Digest(d) => self.by_digest(t, client, d, accept).await,
            Reference::Tag(tag) => self.by_tag(t, client, tag, accept).await,
        };
        let ttl = t.upstream.cfg.policy.negative_ttl;
        if let Err(e) = &res {
            if e.is_not_found() && !ttl.is_zero() {
                self.negative.insert(neg_key, ttl).await;
            }
        }
        res
    }

    async fn by_digest(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        accept: &[String],
    ) -> Result<Served<Arc<StoredManifest>>> {
        let reference = digest.to_string();
        let tail = format!("manifests/{reference}");
        let m = match self.cached(digest).await? {
            Some(m) => Served::hit(m),
            None => {
                // Concurrent misses share one fetch (made with the first client's
                // credentials); everyone is authorized below. If the shared fetch failed
                // for another client, this one tries with its own request.
                let ran = AtomicBool::new(false);
                let load = async {
                    ran.store(true, Ordering::SeqCst);
                    self.fetch(t, client, &reference, Some(digest), &[]).await
                };
                match self.hot.try_get_with(*digest, load).await {
                    Ok(m) if ran.load(Ordering::SeqCst) => Served::new(m, Outcome::Miss),
                    Ok(m) => Served::new(m, Outcome::Coalesced),
                    Err(e) if ran.load(Ordering::SeqCst) => return Err((*e).clone()),
                    Err(_) => {
                        let m = self.fetch(t, client, &reference, Some(digest), &[]).await?;
                        Served::new(m, Outcome::Miss)
                    }
                }
            }
        };
        let linked = self
            .access
            .authorize_linked(t, client, LinkKind::Manifest, digest, &tail)
            .await?;
        if linked {
            self.link(t, &m.value)?;
        }
        if acceptable(accept, &m.value.media_type) {
            Ok(m)
        } else {
            let m = self
                .fetch(t, client, &reference, Some(digest), accept)
                .await?;
            Ok(Served::new(m, Outcome::Miss))
        }
    }

    /// Forgets hot tag resolutions and remembered upstream 404s (after an import changed
    /// the store underneath); RocksDB stays the truth.
    pub fn forget_lookups(&self) {
        self.tags.invalidate_all();
        self.negative.invalidate_all();
    }

    /// [`Self::forget_lookups`], and the hot manifests too (after a purge).
    pub fn forget_all(&self) {
        self.forget_lookups();
        self.hot.invalidate_all();
    }
}

/// Per-entry expiry: the value is the entry's time to live.
struct TtlIsValue;

// moka's clock is std's: the trait names its `Instant`.
#[allow(clippy::disallowed_types)]
impl moka::Expiry<Vec<u8>, Duration> for TtlIsValue {
    fn expire_after_create(
        &self,
        _k: &Vec<u8>,
        v: &Duration,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(*v)
    }
}

/// Key of the negative cache: credentials, upstream, repository, reference.
fn negative_key(t: &Target, client: &Client, reference: &Reference) -> Vec<u8> {
    let mut k = client.id.to_vec();
    k.extend_from_slice(&tag_key(
        t.upstream.name(),
        t.repo.as_str(),
        &reference.to_string(),
    ));
    k
}

fn acceptable(accept: &[String], media_type: &str) -> bool {
    media::accepts_any(accept.iter().map(String::as_str), media_type)
}

/// The cached manifest, served while the upstream fails.
fn stale(m: Arc<StoredManifest>, e: &Error) -> Served<Arc<StoredManifest>> {
    tracing::warn!(digest = %m.digest, error = %e, "upstream failing; serving cached tag resolution");
    Served::new(m, Outcome::Stale)
}

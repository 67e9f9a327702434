//! The pull-through policy: what is served from the cache, what goes upstream, and when.
//!
//! - Blobs and manifests by digest are immutable: served from the cache when present, fetched
//!   once otherwise (blobs through a single-flight [`fill::Fills`], manifests through a
//!   coalescing moka load).
//! - Manifests by tag are served from the cache while the tag's resolution is younger than the
//!   upstream's `tag_ttl`; after that they are revalidated with an upstream `HEAD` and
//!   re-fetched only if the digest moved. When the upstream is unreachable or answers 5xx, the
//!   cached resolution is served (stale-if-error). Concurrent requests for one tag share one
//!   upstream request (`tag_flight`), each client authorized for itself.
//! - Nothing here re-serializes a manifest: bytes out are bytes in. Tags lists are parsed
//!   and re-emitted, never passed through ([`listing`]).
//! - Nothing cached is returned to a client before [`authz::Authz`] (or the upstream, just
//!   now, with that client's credentials) said the client may pull the repository, and a
//!   blob is returned under a repository only if it is linked to it.

mod access;
pub mod authz;
mod blob;
pub mod body;
pub mod capacity;
pub mod fill;
mod fill_state;
mod flight;
pub mod listing;
pub mod location;
mod manifest;
pub mod origin;
pub mod push;
mod push_manifest;
pub mod referrers;
mod resolve;
mod shared;
mod sink;
mod slots;
mod tag_flight;
mod tags;
mod tee;
pub mod uploads;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::{Metrics, RequestResult};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::store::{Store, StoredManifest};
use crate::upstream::Upstream;
use fill::{Fill, Fills};
use http::{HeaderMap, StatusCode};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    /// How the current request was answered (`hit`, `miss`, `stale`, `coalesced`), for the
    /// `wharf_requests_total` metric; set by the code paths that know.
    pub static OUTCOME: std::cell::Cell<RequestResult>;
}

/// Marks the current request's outcome (no-op outside a request scope).
pub(crate) fn mark(outcome: RequestResult) {
    let _ = OUTCOME.try_with(|c| c.set(outcome));
}

/// Marks a blob request's outcome from how it is answered.
pub fn mark_blob(b: &Blob) {
    mark(match b {
        Blob::Cached { .. } | Blob::Redirect { .. } => RequestResult::Hit,
        Blob::Filling { leader: true, .. } | Blob::Head { .. } => RequestResult::Miss,
        Blob::Filling { leader: false, .. } => RequestResult::Coalesced,
    });
}

pub struct Registry {
    store: Arc<Store>,
    upstreams: Vec<Arc<Upstream>>,
    default_upstream: Option<usize>,
    fills: Arc<Fills>,
    /// Hot manifests by digest (bounded by bytes).
    manifests: moka::future::Cache<Digest, Arc<StoredManifest>>,
    authz: authz::Authz,
    pub metrics: Arc<Metrics>,
    /// Upstream 404s for manifests, remembered for the upstream's `negative_ttl`.
    negative: moka::future::Cache<Vec<u8>, Duration>,
    /// Tags being revalidated in the background.
    revalidating: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Hot tag resolutions, keyed like the `tags` column family; RocksDB stays the truth.
    tags: moka::future::Cache<Vec<u8>, crate::store::keys::TagRecord>,
    /// Tag `GET`s and revalidation `HEAD`s under way upstream (single flight).
    tag_gets: tag_flight::TagGets,
    tag_heads: tag_flight::TagHeads,
    /// Blob uploads being teed into the cache.
    uploads: uploads::Uploads,
    evictor: Arc<capacity::Evictor>,
    /// Referrers lists, keyed like tags with the subject digest as the tag.
    referrers: moka::future::Cache<Vec<u8>, Arc<referrers::Cached>>,
    /// The bucket shared with other replicas (`[storage] backend = "s3"`).
    shared: Option<Arc<crate::store::s3::S3Store>>,
    /// Answer GETs of blobs in the bucket with a pre-signed URL.
    redirect: bool,
    /// Until when (ms since the epoch) the bucket is not asked, after a failure.
    bucket_down_until: std::sync::atomic::AtomicU64,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Where a request goes: an upstream and the repository name as that upstream knows it.
#[derive(Debug, Clone)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
    /// The request came from a peer replica: never forward it to another.
    pub via_peer: bool,
    /// The upstream was chosen by the request's `Host` (`upstream.hosts`): names are not
    /// prefixed with an upstream there.
    pub by_host: bool,
}

/// How a blob request will be answered.
pub enum Blob {
    /// From a committed file.
    Cached { file: Arc<File>, len: u64 },
    /// From a fill in progress (`size` when the upstream sent `Content-Length`).
    Filling {
        fill: Arc<Fill>,
        size: Option<u64>,
        leader: bool,
    },
    /// A `HEAD` answered without a body.
    Head { size: Option<u64> },
    /// A `307` to a pre-signed URL of the shared bucket.
    Redirect { url: String },
}

impl Registry {
    pub fn new(
        cfg: &Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> std::result::Result<Registry, String> {
        let mut upstreams = Vec::new();
        for u in &cfg.upstreams {
            upstreams.push(Arc::new(Upstream::new(
                u.clone(),
                cfg.offline,
                metrics.clone(),
            )?));
        }
        let default_upstream = cfg.upstreams.iter().position(|u| u.default);
        let (shared, redirect) = match &cfg.storage {
            crate::config::StorageConfig::Filesystem => (None, false),
            crate::config::StorageConfig::S3(s) => (
                Some(Arc::new(crate::store::s3::S3Store::new(s)?)),
                s.redirect,
            ),
        };
        let cluster = match &cfg.cluster {
            Some(c) => Some(crate::cluster::Cluster::start(c)?),
            None => None,
        };
        let evictor = Arc::new(capacity::Evictor::new(
            store.clone(),
            cfg.cache.clone(),
            metrics.clone(),
        ));
        let manifests = evictor.hot_manifests();
        Ok(Registry {
            authz: authz::Authz::new(&cfg.auth, store.clone()),
            negative: moka::future::Cache::builder()
                .max_capacity(100_000)
                .expire_after(TtlIsValue)
                .support_invalidation_closures()
                .build(),
            revalidating: std::sync::Mutex::new(std::collections::HashSet::new()),
            fills: Fills::new(
                store.clone(),
                cfg.fill.clone(),
                metrics.clone(),
                evictor.clone(),
                shared.clone(),
                cluster.clone(),
            ),
            uploads: uploads::Uploads::new(store.clone(), cfg.cache.max_size),
            evictor,
            referrers: moka::future::Cache::builder()
                .max_capacity(referrers::CACHE_BYTES)
                .weigher(|_, c: &Arc<referrers::Cached>| c.weight())
                .build(),
            metrics,
            store,
            upstreams,
            default_upstream,
            manifests,
            tags: moka::future::Cache::new(100_000),
            tag_gets: Default::default(),
            tag_heads: Default::default(),
            shared,
            redirect,
            bucket_down_until: Default::default(),
            cluster,
        })
    }

    /// Sets the gauges that mirror live state; called at scrape time.
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        m.fills_in_progress
            .set(i64::try_from(self.fills.count()).unwrap_or(i64::MAX));
        let (bytes, count) = self.store.blob_totals();
        m.cache_size_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.cache_blobs.set(i64::try_from(count).unwrap_or(i64::MAX));
        let (bytes, count) = self.store.manifest_totals();
        m.cache_manifest_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        m.cache_manifests
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        for u in &self.upstreams {
            m.upstream_up
                .with_label_values(&[u.name()])
                .set(i64::from(!u.breaker_open()));
        }
    }

    /// Prunes the authorization decisions no rule uses any more (blocking).
    pub fn prune_authz(&self) {
        self.authz.prune_logged();
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Whether a request's `wharf-peer` value says this replica sent it (it reached itself
    /// under an address it did not know as its own).
    pub fn from_itself(&self, peer_header: &[u8]) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.is_own(peer_header))
    }

    /// At shutdown: lets fills in flight finish (at most `limit`).
    pub async fn drain_fills(&self, limit: std::time::Duration) {
        self.fills.drain(limit).await;
    }

    /// Forgets hot tag resolutions and remembered upstream 404s (after an import changed
    /// the store underneath); RocksDB stays the truth.
    pub fn forget_lookups(&self) {
        self.tags.invalidate_all();
        self.negative.invalidate_all();
    }
}

/// How long a pre-signed blob URL stays valid.
pub const REDIRECT_TTL: Duration = Duration::from_secs(300);

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

/// Maps an upstream's non-success status to our error: 404 keeps its meaning (`not_found`
/// says which code), 401/403/429 pass through, anything else is a bad gateway.
pub(crate) fn upstream_error(
    upstream: &str,
    status: StatusCode,
    headers: &HeaderMap,
    not_found: ErrorCode,
) -> Error {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (not_found, "not found upstream".to_string()),
        StatusCode::UNAUTHORIZED => (
            ErrorCode::Unauthorized,
            "the upstream requires authentication".to_string(),
        ),
        StatusCode::FORBIDDEN => (ErrorCode::Denied, "the upstream denied access".to_string()),
        StatusCode::TOO_MANY_REQUESTS => (
            ErrorCode::TooManyRequests,
            "the upstream is rate-limiting".to_string(),
        ),
        s => (ErrorCode::Unavailable, format!("the upstream answered {s}")),
    };
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Error::Upstream {
        upstream: upstream.to_string(),
        status,
        code,
        message,
        retry_after,
    }
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

//! The pull-through policy: what is served from the cache, what goes upstream, and when.
//!
//! [`Registry`] is a thin facade: its methods are what `http` needs (resolve, manifest, blob,
//! tags, referrers, push) and each hands the request to the part that owns it:
//!
//! - [`Routes`] (`resolve`): which upstream and repository a request is for.
//! - [`Access`] (`access/`): authorization decisions, links, the offline rule, imports.
//! - [`Manifests`] (`manifests/`): the manifest cache, tag resolution and revalidation,
//!   remembered 404s, what pushes change.
//! - [`Blobs`] (`blobs`) over [`Fills`] (`fill/`: one download per digest, verified).
//! - [`Referrers`] (`referrers`), tags lists (`listing`), [`Pushes`] (`pushes/`).
//! - [`Bucket`] (`bucket`): the bucket shared with other replicas, which the parts read
//!   through and write behind.
//!
//! Parts talk through their methods, never each other's fields; results come back as domain
//! types ([`Served`] says how a read was answered), never as hyper bodies from an upstream.
//!
//! - Blobs and manifests by digest are immutable: served from the cache when present, fetched
//!   once otherwise (blobs through a single-flight [`Fills`], manifests through a coalescing
//!   moka load).
//! - Manifests by tag are served from the cache while the tag's resolution is younger than the
//!   upstream's `tag_ttl`; after that they are revalidated with an upstream `HEAD` and
//!   re-fetched only if the digest moved. When the upstream is unreachable or answers 5xx, the
//!   cached resolution is served (stale-if-error). Concurrent requests for one tag share one
//!   upstream request (`manifests::tag_flight`), each client authorized for itself.
//! - Nothing here re-serializes a manifest: bytes out are bytes in. Tags lists are parsed
//!   and re-emitted, never passed through ([`listing`]).
//! - Nothing cached is returned to a client before [`Access`] (or the upstream, just now,
//!   with that client's credentials) said the client may pull the repository, and a blob is
//!   returned under a repository only if it is linked to it.

pub mod access;
pub mod blobs;
pub mod body;
pub mod bucket;
pub mod capacity;
pub mod control;
pub mod fill;
pub mod listing;
pub mod location;
pub mod manifests;
pub mod overview;
pub mod pushes;
pub mod referrers;
mod resolve;
pub mod rules;
pub mod served;
pub mod target;

pub use access::Access;
pub use blobs::{Blob, Blobs};
pub use bucket::Bucket;
pub use fill::Fills;
pub use manifests::Manifests;
pub use pushes::Pushes;
pub use referrers::Referrers;
pub use resolve::Routes;
pub use served::{Outcome, Served};
pub use target::Target;

use crate::auth::Client;
use crate::cluster::Cluster;
use crate::config::{Config, StorageConfig};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::oci::{Digest, Reference};
use crate::store::{Store, StoredManifest};
use crate::upstream::Upstream;
use std::sync::Arc;
use std::time::Duration;

pub struct Registry {
    store: Arc<Store>,
    routes: Routes,
    access: Arc<Access>,
    manifests: Arc<Manifests>,
    blobs: Blobs,
    referrers: Arc<Referrers>,
    lister: listing::Lister,
    pushes: Pushes,
    control: control::Control,
    pub metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(
        cfg: &Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        notify: Arc<Notifier>,
    ) -> std::result::Result<Registry, String> {
        let routes = routes(cfg, &metrics, &notify)?;
        let (bucket, cluster) = shared(cfg, &metrics)?;
        let evictor = Arc::new(capacity::Evictor::new(
            store.clone(),
            cfg.cache.clone(),
            metrics.clone(),
            quotas(cfg, &metrics),
            notify.clone(),
        ));
        let idle = cfg.fill.idle_timeout;
        let access = Arc::new(Access::new(
            &cfg.auth,
            store.clone(),
            metrics.clone(),
            bucket.clone(),
        ));
        let manifests = Arc::new(Manifests::new(
            store.clone(),
            access.clone(),
            bucket.clone(),
            evictor.clone(),
            metrics.clone(),
            idle,
            notify.clone(),
        ));
        let fills = Fills::new(
            store.clone(),
            cfg.fill.clone(),
            metrics.clone(),
            evictor.clone(),
            bucket.clone(),
            cluster.clone(),
            notify.clone(),
        );
        let referrers = Arc::new(Referrers::new(access.clone(), idle));
        let pushes = Pushes::new(pushes::Parts {
            store: store.clone(),
            access: access.clone(),
            manifests: manifests.clone(),
            referrers: referrers.clone(),
            fills: fills.clone(),
            evictor,
            metrics: metrics.clone(),
            max_size: cfg.cache.max_size,
        });
        let lister = listing::Lister::new(access.clone(), idle);
        let control = control::Control::new(control::Parts {
            store: store.clone(),
            fills: fills.clone(),
            manifests: manifests.clone(),
            shared_bucket: bucket.is_some(),
            metrics: metrics.clone(),
            notify,
        });
        let blobs = Blobs::new(store.clone(), access.clone(), fills, bucket, cluster);
        Ok(Registry {
            store,
            routes,
            access,
            manifests,
            blobs,
            referrers,
            lister,
            pushes,
            control,
            metrics,
        })
    }

    /// [`Self::route_at`] for a request without `Host` routing (operator tools: imports and
    /// exports; the repository rules govern what clients are served).
    pub fn resolve(&self, name: &str, ns: Option<&str>) -> Result<Target> {
        self.routes.resolve_at(None, name, ns)
    }

    /// Picks the upstream and the repository for a name as the client wrote it (see
    /// `resolve`; Docker Hub's single-segment names get `library/`), and refuses it, before
    /// anything else happens, if the upstream's repository rules do (`rules`).
    pub fn resolve_at(&self, host: Option<&str>, name: &str, ns: Option<&str>) -> Result<Target> {
        let t = self.routes.resolve_at(host, name, ns)?;
        self.routes.admit(&t)?;
        Ok(t)
    }

    /// [`Self::resolve_at`] without the repository rules: for naming a scope in a challenge,
    /// which serves nothing.
    pub fn route_at(&self, host: Option<&str>, name: &str, ns: Option<&str>) -> Result<Target> {
        self.routes.resolve_at(host, name, ns)
    }

    /// The upstream a request without a repository (a `/token` without scope) is about.
    pub fn default_for(&self, host: Option<&str>) -> Result<Arc<Upstream>> {
        self.routes.default_for(host)
    }

    /// The configured name of the upstream called `name` (its name or an alias).
    pub fn upstream_name(&self, name: &str) -> Option<String> {
        self.routes.upstream_name(name)
    }

    /// The manifest for `reference` in `t`, acceptable to a client that sent `accept`, if the
    /// upstream lets `client` pull it.
    pub async fn manifest(
        &self,
        t: &Target,
        client: &Client,
        reference: &Reference,
        accept: &[String],
    ) -> Result<Served<Arc<StoredManifest>>> {
        self.manifests.manifest(t, client, reference, accept).await
    }

    /// A blob: from the cache, from a fill in progress, or from a fill this call starts.
    pub async fn blob(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        head: bool,
    ) -> Result<Blob> {
        self.blobs.blob(t, client, digest, head).await
    }

    /// The upstream's tag list for `t` (`query` carries `n` and `last`), checked.
    pub async fn tags_list(
        &self,
        t: &Target,
        client: &Client,
        query: Option<&str>,
    ) -> Result<listing::TagsList> {
        self.lister.tags(t, client, query).await
    }

    /// The referrers of `digest` in `t`, filtered by `artifact_types` (any; none: all).
    pub async fn referrers(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        artifact_types: &[String],
    ) -> Result<Served<referrers::ReferrersList>> {
        self.referrers.list(t, client, digest, artifact_types).await
    }

    /// Forwards a push to the target's upstream; returns the upstream's answer as it is.
    pub async fn push(
        &self,
        t: &Target,
        client: &Client,
        req: pushes::PushRequest,
    ) -> Result<pushes::Answer> {
        self.pushes.push(t, client, req).await
    }

    /// Revalidates a tag now, whatever its `tag_ttl` (an operator's `wharf cache refresh`).
    pub async fn refresh_tag(
        &self,
        t: &Target,
        tag: &crate::oci::Tag,
    ) -> Result<manifests::refresh::Refreshed> {
        self.manifests.refresh(t, tag).await
    }

    /// Purges cached content (an operator's `wharf cache purge`; see `control`).
    pub async fn purge(
        &self,
        r: &crate::oci::CacheRef,
    ) -> Result<Option<crate::store::purge::Purged>> {
        self.control.purge(r).await
    }

    /// Sets the gauges that mirror live state; called at scrape time.
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        m.fills_in_progress
            .set(gauge(self.blobs.fills().count() as u64));
        let (bytes, count) = self.store.blob_totals();
        m.cache_size_bytes.set(gauge(bytes));
        m.cache_blobs.set(gauge(count));
        let (bytes, count) = self.store.manifest_totals();
        m.cache_manifest_bytes.set(gauge(bytes));
        m.cache_manifests.set(gauge(count));
        for u in self.routes.all() {
            m.upstream_up
                .with_label_values(&[u.name()])
                .set(i64::from(!u.breaker_open()));
        }
    }

    /// Removes what `cache.max_idle` expired (blocking).
    pub fn sweep_idle(&self) {
        if let Err(e) = self.blobs.fills().evictor().sweep_idle() {
            tracing::warn!(error = %e, "idle sweep failed");
        }
    }

    /// Holds upstreams under their `max_size` and measures what each holds (blocking).
    pub fn check_quotas(&self) {
        self.blobs.fills().evictor().check_quotas();
    }

    /// Prunes the authorization decisions no rule uses any more (blocking).
    pub fn prune_authz(&self) {
        self.access.prune();
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Whether a request's `wharf-peer` value says this replica sent it (it reached itself
    /// under an address it did not know as its own).
    pub fn from_itself(&self, peer_header: &[u8]) -> bool {
        self.blobs.from_itself(peer_header)
    }

    /// At shutdown: lets fills in flight finish (at most `limit`).
    pub async fn drain_fills(&self, limit: Duration) {
        self.blobs.fills().drain(limit).await;
    }

    /// Forgets hot tag resolutions and remembered upstream 404s (after an import changed
    /// the store underneath); RocksDB stays the truth.
    pub fn forget_lookups(&self) {
        self.manifests.forget_lookups();
    }
}

/// The upstreams' `max_size`s (exported as `wharf_upstream_max_bytes`).
fn quotas(cfg: &Config, metrics: &Metrics) -> Vec<(String, u64)> {
    let quotas: Vec<(String, u64)> = cfg
        .upstreams
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.max_size?)))
        .collect();
    for (up, max) in &quotas {
        let max = i64::try_from(*max).unwrap_or(i64::MAX);
        metrics.upstream_max_bytes.with_label_values(&[up]).set(max);
    }
    quotas
}

/// The bucket shared with other replicas and the cluster of replicas, when configured.
type Shared = (Option<Arc<Bucket>>, Option<Arc<Cluster>>);

fn shared(cfg: &Config, metrics: &Arc<Metrics>) -> std::result::Result<Shared, String> {
    let bucket = match &cfg.storage {
        StorageConfig::Filesystem => None,
        StorageConfig::S3(s) => Some(Bucket::new(
            Arc::new(crate::store::s3::S3Store::new(s)?),
            s.redirect,
            metrics.clone(),
        )),
    };
    let cluster = match &cfg.cluster {
        Some(c) => Some(Cluster::start(c)?),
        None => None,
    };
    Ok((bucket, cluster))
}

/// The configured upstreams, built, and their repository rules.
fn routes(
    cfg: &Config,
    metrics: &Arc<Metrics>,
    notify: &Arc<Notifier>,
) -> std::result::Result<Routes, String> {
    let mut upstreams = Vec::new();
    for u in &cfg.upstreams {
        upstreams.push(Arc::new(Upstream::new(
            u.clone(),
            cfg.offline,
            metrics.clone(),
        )?));
    }
    let default = cfg.upstreams.iter().position(|u| u.default);
    Ok(Routes::new(
        upstreams,
        default,
        metrics.clone(),
        notify.clone(),
    ))
}

//! `Control`: an operator's changes to the cache through the admin API (purge).
//!
//! Invariants:
//! - A purge never removes a blob that a fill in flight is writing. If one of the blobs it
//!   would delete is being filled, the purge changes nothing and fails as busy (the API's
//!   `409`); the fill and its clients go on as usual (they get every byte, verified, and the
//!   blob is cached and linked as by any pull), and the operator purges again once it is done
//!   (`GET /admin/v1/fills`). A fill that starts after the purge is a new pull: it fetches
//!   from the upstream and links what it fetched, as any pull does. So nothing is ever left
//!   half-linked: links go in one batch before records and files (see `store::purge`).
//! - After a purge, no in-memory cache answers for what it removed: the hot manifests, the
//!   hot tag resolutions and the remembered upstream 404s of `Manifests` are dropped.
//! - What a purge removed is counted (`wharf_cache_removals_total{reason="purge"}`) and told:
//!   one `purge` event per manifest it unlinked from the repository.
//! - With a shared bucket (`storage.backend = "s3"`) purging is refused: the bucket's
//!   records (which other replicas also wrote) would serve the content again, and deciding
//!   which of its blobs no replica links is not implemented yet.

use super::{Fills, Manifests};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Removal};
use crate::notify::{Event, Notifier};
use crate::oci::{CacheRef, ErrorCode};
use crate::store::purge::Purged;
use crate::store::Store;
use std::sync::Arc;

pub struct Control {
    store: Arc<Store>,
    fills: Arc<Fills>,
    manifests: Arc<Manifests>,
    shared_bucket: bool,
    metrics: Arc<Metrics>,
    notify: Arc<Notifier>,
}

/// What [`Control`] works with.
pub struct Parts {
    pub store: Arc<Store>,
    pub fills: Arc<Fills>,
    pub manifests: Arc<Manifests>,
    /// `storage.backend = "s3"`: purging is refused.
    pub shared_bucket: bool,
    pub metrics: Arc<Metrics>,
    pub notify: Arc<Notifier>,
}

impl Control {
    pub fn new(p: Parts) -> Control {
        Control {
            store: p.store,
            fills: p.fills,
            manifests: p.manifests,
            shared_bucket: p.shared_bucket,
            metrics: p.metrics,
            notify: p.notify,
        }
    }

    /// Purges `r` (its upstream the configured name); `None` when nothing of it is cached.
    pub async fn purge(&self, r: &CacheRef) -> Result<Option<Purged>> {
        if self.shared_bucket {
            return Err(Error::client(
                ErrorCode::Unsupported,
                "purge is not supported with storage.backend = \"s3\" yet (the bucket would serve it again)",
            ));
        }
        let store = self.store.clone();
        let plan_ref = r.clone();
        let plan = tokio::task::spawn_blocking(move || store.purge_plan(&plan_ref))
            .await
            .map_err(Error::internal)??;
        let Some(plan) = plan else {
            return Ok(None);
        };
        if let Some(busy) = plan
            .blobs
            .iter()
            .find(|d| self.fills.in_progress(d).is_some())
        {
            return Err(Error::client(
                ErrorCode::Denied,
                format!("{busy} is being filled; purge {r} again once the fill is done"),
            ));
        }
        let (store, r2) = (self.store.clone(), r.clone());
        let purged = tokio::task::spawn_blocking(move || store.purge(&r2))
            .await
            .map_err(Error::internal)??;
        self.manifests.forget_all();
        if let Some(p) = &purged {
            let removed = (p.blobs.len() + p.manifests.len()) as u64;
            self.metrics.removed(Removal::Purge, removed, p.bytes);
            for d in &p.unlinked_manifests {
                let (up, repo) = (r.upstream.as_str(), r.repo.as_str());
                self.notify.emit(Event::purge(up, repo, &d.to_string(), 0));
            }
        }
        Ok(purged)
    }
}

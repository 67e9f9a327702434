//! Keeping the cache under `cache.max_size`: an eviction pass runs in the background when a
//! commit takes the stored bytes (blobs and manifests) over the high watermark, and brings
//! them under the low one. One pass at a time; pinned images are kept (see `store::evict` and
//! `store::usage` for the invariants). Evicted manifests also leave the in-memory cache, so
//! the next request fetches them again.
//!
//! Beside the size bound, the evictor keeps each upstream's `max_size` (a quota pass after a
//! commit, at most once a second, and on every maintenance tick; same watermarks) and
//! removes what was not asked for within `cache.max_idle` ([`Evictor::sweep_idle`], run by
//! the maintenance task). Pins are never removed by any of them; pins that alone exceed a
//! quota are logged, and visible as `wharf_upstream_cache_bytes` above
//! `wharf_upstream_max_bytes` (see `store::expiry` for the bookkeeping).

use crate::config::CacheConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::metrics::Removal;
use crate::notify::{Event, Notifier};
use crate::oci::Digest;
use crate::store::usage::Evicted;
use crate::store::{Store, StoredManifest};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Told the digests of the manifests a pass evicted.
type Forget = Box<dyn Fn(Vec<Digest>) + Send + Sync>;

pub struct Evictor {
    store: Arc<Store>,
    cfg: CacheConfig,
    running: AtomicBool,
    metrics: Arc<Metrics>,
    forget: OnceLock<Forget>,
    /// `upstream.max_size` of the upstreams that have one.
    quotas: Vec<(String, u64)>,
    /// When (ms since the epoch) quotas were last checked after a commit.
    quotas_checked: AtomicU64,
    /// A quota check is scheduled.
    quota_pending: AtomicBool,
    /// Told of each pass that evicted something (one event per pass).
    notify: Arc<Notifier>,
}

impl Evictor {
    pub fn new(
        store: Arc<Store>,
        cfg: CacheConfig,
        metrics: Arc<Metrics>,
        quotas: Vec<(String, u64)>,
        notify: Arc<Notifier>,
    ) -> Evictor {
        Evictor {
            store,
            cfg,
            running: AtomicBool::new(false),
            metrics,
            forget: OnceLock::new(),
            quotas,
            quotas_checked: AtomicU64::new(0),
            quota_pending: AtomicBool::new(false),
            notify,
        }
    }

    /// Sets what to tell about evicted manifests (the registry's in-memory caches).
    pub fn on_manifests_evicted(&self, f: impl Fn(Vec<Digest>) + Send + Sync + 'static) {
        let _ = self.forget.set(Box::new(f));
    }

    /// The registry's in-memory cache of hot manifests (64 MiB of them), from which evicted
    /// manifests are removed after each pass.
    pub fn hot_manifests(&self) -> moka::future::Cache<Digest, Arc<StoredManifest>> {
        let hot: moka::future::Cache<Digest, Arc<StoredManifest>> = moka::future::Cache::builder()
            .max_capacity(64 * 1024 * 1024)
            .weigher(|_, m: &Arc<StoredManifest>| u32::try_from(m.bytes.len()).unwrap_or(u32::MAX))
            .build();
        let gone_from = hot.clone();
        self.on_manifests_evicted(move |gone| {
            let cache = gone_from.clone();
            tokio::spawn(async move {
                for d in gone {
                    cache.invalidate(&d).await;
                }
            });
        });
        hot
    }

    pub fn max(&self) -> u64 {
        self.cfg.max_size
    }

    fn mark(&self, fraction: f64) -> u64 {
        (self.cfg.max_size as f64 * fraction) as u64
    }

    /// Starts a background pass if the cache is over its high watermark (and a quota
    /// check, at most once a second, if any upstream has a quota).
    pub fn maybe_evict(self: &Arc<Self>) {
        if !self.quotas.is_empty() && !self.quota_pending.swap(true, Ordering::SeqCst) {
            // One check pending at a time, at most one a second; a commit during a check
            // schedules the next.
            let wait = (self.quotas_checked.load(Ordering::SeqCst) + 1000)
                .saturating_sub(crate::store::now_ms());
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                me.quota_pending.store(false, Ordering::SeqCst);
                me.quotas_checked
                    .store(crate::store::now_ms(), Ordering::SeqCst);
                let _ = tokio::task::spawn_blocking(move || me.check_quotas()).await;
            });
        }
        if self.store.cache_bytes() <= self.mark(self.cfg.high_watermark) {
            return;
        }
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let target = me.mark(me.cfg.low_watermark);
            if let Err(e) = me.run_pass(target) {
                tracing::warn!(error = %e, "eviction pass failed");
            }
            me.running.store(false, Ordering::SeqCst);
        });
    }

    /// Counts what left the cache for `reason`, and tells the notifier (one `evict` event
    /// per pass that removed something, its reason in `wharf.result`).
    fn removed(&self, reason: Removal, blobs: u64, manifests: u64, bytes: u64) {
        self.metrics.removed(reason, blobs + manifests, bytes);
        if blobs + manifests > 0 {
            let mut event = Event::evict(blobs, manifests, bytes);
            event.wharf.result = reason.as_str().to_string();
            self.notify.emit(event);
        }
    }

    /// After a pass that removed `e` for `reason`: counted, told, and its manifests dropped
    /// from the in-memory caches.
    fn settled(&self, reason: Removal, e: &Evicted) {
        let (_, bytes) = e.totals();
        self.removed(reason, e.blobs, e.manifests.len() as u64, bytes);
        if let (Some(f), false) = (self.forget.get(), e.manifests.is_empty()) {
            f(e.manifests.clone());
        }
    }

    /// One eviction pass down to `target` bytes (blocking): what it freed.
    pub fn run_pass(&self, target: u64) -> Result<Evicted> {
        let keep = self.store.pinned_digests(&self.cfg.pin)?;
        let e = self.store.evict_lru(target, &keep)?;
        let (count, bytes) = e.totals();
        self.metrics.evictions.inc_by(count);
        self.metrics.evicted_bytes.inc_by(bytes);
        self.settled(Removal::Size, &e);
        if count > 0 {
            tracing::info!(
                blobs = e.blobs,
                manifests = e.manifests.len(),
                tags = e.tags,
                bytes,
                target,
                "evicted least recently used blobs and manifests"
            );
        }
        Ok(e)
    }

    /// Removes what was not asked for within `cache.max_idle` (blocking; none: nothing).
    pub fn sweep_idle(&self) -> Result<Evicted> {
        let Some(max_idle) = self.cfg.max_idle else {
            return Ok(Evicted::default());
        };
        let cutoff = (crate::store::now_ms() / 1000).saturating_sub(max_idle.as_secs());
        let keep = self.store.pinned_digests(&self.cfg.pin)?;
        let e = self.store.evict_idle(cutoff, &keep)?;
        let (count, bytes) = e.totals();
        self.settled(Removal::Idle, &e);
        if count > 0 {
            tracing::info!(
                blobs = e.blobs,
                manifests = e.manifests.len(),
                tags = e.tags,
                bytes,
                "removed blobs and manifests idle for longer than cache.max_idle"
            );
        }
        Ok(e)
    }

    /// Holds every upstream with a quota under it (blocking), and sets the per-upstream
    /// usage gauges. Failures are logged: a quota is a bound, not a request's concern.
    pub fn check_quotas(&self) {
        let usage = match self.store.upstream_usage() {
            Ok(u) => u,
            Err(e) => return tracing::warn!(error = %e, "cannot measure upstream usage"),
        };
        let keep = match self.store.pinned_digests(&self.cfg.pin) {
            Ok(k) => k,
            Err(e) => return tracing::warn!(error = %e, "cannot read pins"),
        };
        for (up, used) in &usage {
            self.metrics.upstream_usage(up, used.bytes, used.blobs);
        }
        for (up, max) in &self.quotas {
            let used = usage.get(up).copied().unwrap_or_default();
            let frac = |f: f64| (*max as f64 * f) as u64;
            if used.bytes <= frac(self.cfg.high_watermark) {
                continue;
            }
            match self
                .store
                .evict_upstream(up, frac(self.cfg.low_watermark), &keep)
            {
                Ok(q) => {
                    self.removed(Removal::Quota, q.released, 0, q.released_bytes);
                    let left = used.bytes - q.released_bytes;
                    self.metrics
                        .upstream_usage(up, left, used.blobs - q.released);
                    tracing::info!(upstream = %up, released = q.released, bytes = q.released_bytes, deleted = q.deleted, "held an upstream under its max_size");
                    if left > *max {
                        tracing::warn!(upstream = %up, bytes = left, max_size = max, "pinned images alone exceed this upstream's max_size");
                    }
                }
                Err(e) => tracing::warn!(upstream = %up, error = %e, "quota pass failed"),
            }
        }
    }
}

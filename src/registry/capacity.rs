//! Keeping the cache under `cache.max_size`: an eviction pass runs in the background when a
//! commit takes the stored bytes (blobs and manifests) over the high watermark, and brings
//! them under the low one. One pass at a time; pinned images are kept (see `store::evict` and
//! `store::usage` for the invariants). Evicted manifests also leave the in-memory cache, so
//! the next request fetches them again.

use crate::config::CacheConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::notify::{Event, Notifier};
use crate::oci::Digest;
use crate::store::usage::Evicted;
use crate::store::{Store, StoredManifest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Told the digests of the manifests a pass evicted.
type Forget = Box<dyn Fn(Vec<Digest>) + Send + Sync>;

pub struct Evictor {
    store: Arc<Store>,
    cfg: CacheConfig,
    running: AtomicBool,
    metrics: Arc<Metrics>,
    forget: OnceLock<Forget>,
    /// Told of each pass that evicted something (one event per pass).
    notify: Arc<Notifier>,
}

impl Evictor {
    pub fn new(
        store: Arc<Store>,
        cfg: CacheConfig,
        metrics: Arc<Metrics>,
        notify: Arc<Notifier>,
    ) -> Evictor {
        Evictor {
            store,
            cfg,
            running: AtomicBool::new(false),
            metrics,
            forget: OnceLock::new(),
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

    /// Starts a background pass if the cache is over its high watermark.
    pub fn maybe_evict(self: &Arc<Self>) {
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

    /// One eviction pass down to `target` bytes (blocking): what it freed.
    pub fn run_pass(&self, target: u64) -> Result<Evicted> {
        let keep = self.store.pinned_digests(&self.cfg.pin)?;
        let e = self.store.evict_lru(target, &keep)?;
        let (count, bytes) = (
            e.blobs + e.manifests.len() as u64,
            e.blob_bytes + e.manifest_bytes,
        );
        self.metrics.evictions.inc_by(count);
        self.metrics.evicted_bytes.inc_by(bytes);
        if count > 0 {
            tracing::info!(
                blobs = e.blobs,
                manifests = e.manifests.len(),
                tags = e.tags,
                bytes,
                target,
                "evicted least recently used blobs and manifests"
            );
            let manifests = e.manifests.len() as u64;
            self.notify.emit(Event::evict(e.blobs, manifests, bytes));
        }
        if let (Some(f), false) = (self.forget.get(), e.manifests.is_empty()) {
            f(e.manifests.clone());
        }
        Ok(e)
    }
}

//! Keeping the cache under `cache.max_size`: an eviction pass runs in the background when a
//! commit takes the stored bytes over the high watermark, and brings them under the low one.
//! One pass at a time; pinned images are kept (see `store::evict` for the invariants).

use crate::config::CacheConfig;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Evictor {
    store: Arc<Store>,
    cfg: CacheConfig,
    running: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Evictor {
    pub fn new(store: Arc<Store>, cfg: CacheConfig, metrics: Arc<Metrics>) -> Evictor {
        Evictor {
            store,
            cfg,
            running: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn max(&self) -> u64 {
        self.cfg.max_size
    }

    fn mark(&self, fraction: f64) -> u64 {
        (self.cfg.max_size as f64 * fraction) as u64
    }

    /// Starts a background pass if the cache is over its high watermark.
    pub fn maybe_evict(self: &Arc<Self>) {
        if self.store.blob_totals().0 <= self.mark(self.cfg.high_watermark) {
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

    /// One eviction pass down to `target` bytes (blocking). Returns (blobs, bytes) freed.
    pub fn run_pass(&self, target: u64) -> Result<(u64, u64)> {
        let keep = self.store.pinned_digests(&self.cfg.pin)?;
        let (count, bytes) = self.store.evict_to(target, &keep)?;
        self.metrics.evictions.inc_by(count);
        self.metrics.evicted_bytes.inc_by(bytes);
        if count > 0 {
            tracing::info!(
                blobs = count,
                bytes,
                target,
                "evicted least recently used blobs"
            );
        }
        Ok((count, bytes))
    }
}

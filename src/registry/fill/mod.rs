//! Fills: one upstream GET per blob digest, shared by every client that wants it meanwhile.
//!
//! The folder is a one-way chain: `state` (what readers see) ← `sink` (writes and hashes)
//! ← `source` (where bytes come from) ← `run` (download → verify → commit) ← `share` (what the
//! bucket is owed) ← this coordinator ([`Fills`]: the in-flight map, the task per fill, slots).
//!
//! Invariants:
//! - At most one fill per digest runs at a time (the `inflight` map, whose lock is held only
//!   to look up or insert, never across I/O).
//! - A fill runs in its own task: a client that disconnects does not stop it. It is bounded by
//!   the fill timeout and by the idle timeout between body chunks.
//! - At most `fill.max_concurrent` fills download at once (`slots`: taken by the fill's
//!   task, never by the clients that join it). A fill that gets no slot within the idle
//!   timeout fails with `429 TOOMANYREQUESTS` and a `Retry-After`, before any byte is read.
//! - Bytes reach readers only after they are written to the temp file; `written` in
//!   [`FillState::Streaming`] never runs ahead of the file.
//! - The blob is committed (fsync, rename, fsync dir, metadata) only if the byte count matches
//!   the upstream's `Content-Length` (when given) and the SHA-256 matches the digest. Commit
//!   happens before the fill leaves the in-flight map, so a new request sees either the fill or
//!   the committed file, never neither.
//! - On any failure before verification the temp file is removed, nothing is recorded, and the
//!   state becomes [`FillState::Failed`]; if the task dies, its sender drops, which readers
//!   treat the same. Readers withhold the last byte of their response until the digest is
//!   verified ([`FillState::Verified`], published before the commit's fsyncs, or `Committed`),
//!   so no client ever receives a complete body of unverified bytes, and no client waits for
//!   the disk to make the cache durable. A commit that fails after verification leaves the
//!   blob uncached; its readers still finish (their file handles stay valid).

pub mod run;
mod share;
mod sink;
pub mod slots;
pub mod source;
pub mod state;

use crate::cluster::Cluster;
use crate::config::FillConfig;
use crate::error::{Error, Result};
use crate::metrics::{FillResult, Metrics};
use crate::notify::{Event, Notifier};
use crate::oci::{Digest, ErrorCode};
use crate::registry::bucket::Bucket;
use crate::registry::capacity::Evictor;
use crate::store::Store;
use run::{Filled, Kept, Pipeline};
use share::Sharer;
use slots::Slots;
use source::Origins;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

pub use source::{Origin, Source};
pub use state::{Fill, FillState};

pub struct Fills {
    inflight: Mutex<HashMap<Digest, Arc<Fill>>>,
    pipeline: Pipeline,
    sharer: Arc<Sharer>,
    /// Download slots (`fill.max_concurrent`).
    slots: Slots,
    /// Told of every fill that commits.
    notify: Arc<Notifier>,
}

impl Fills {
    pub fn new(
        store: Arc<Store>,
        cfg: FillConfig,
        metrics: Arc<Metrics>,
        evictor: Arc<Evictor>,
        bucket: Option<Arc<Bucket>>,
        cluster: Option<Arc<Cluster>>,
        notify: Arc<Notifier>,
    ) -> Arc<Fills> {
        let origins = Origins {
            bucket: bucket.clone(),
            cluster: cluster.clone(),
            metrics: metrics.clone(),
            idle: cfg.idle_timeout,
        };
        Arc::new(Fills {
            inflight: Mutex::new(HashMap::new()),
            slots: Slots::new(cfg.max_concurrent, cfg.idle_timeout),
            notify,
            sharer: Arc::new(Sharer {
                bucket,
                cluster,
                store: store.clone(),
                metrics: metrics.clone(),
            }),
            pipeline: Pipeline {
                store,
                cfg,
                metrics,
                evictor,
                origins,
            },
        })
    }

    /// Waits (at most `limit`) until no fill is in flight: at shutdown, so that a fill whose
    /// clients already have their verified bytes still becomes durable in the cache.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let uploads = self.sharer.bucket.as_ref().map_or(0, |b| b.pending());
            let busy = self.count() + uploads;
            if busy == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    fills = busy,
                    "shutting down with fills still running; they are abandoned"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The evictor the fills report their commits to.
    pub fn evictor(&self) -> &Arc<Evictor> {
        &self.pipeline.evictor
    }

    pub fn in_progress(&self, digest: &Digest) -> Option<Arc<Fill>> {
        self.inflight.lock().ok()?.get(digest).cloned()
    }

    /// The fills in flight (for the admin API).
    pub fn all(&self) -> Vec<Arc<Fill>> {
        self.inflight
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Joins the fill for `digest`, or starts one from `source`. The flag is true when this
    /// call started it. Returns `None` when the blob got committed meanwhile (serve the file).
    pub fn join_or_start(
        self: &Arc<Self>,
        digest: Digest,
        source: Source,
    ) -> Result<Option<(Arc<Fill>, bool)>> {
        let mut map = self
            .inflight
            .lock()
            .map_err(|_| Error::internal("fill map poisoned"))?;
        if let Some(f) = map.get(&digest) {
            return Ok(Some((f.clone(), false)));
        }
        // A fill may have committed between the caller's cache check and this lock.
        if self.pipeline.store.files().exists(&digest) {
            return Ok(None);
        }
        let (tx, rx) = watch::channel(FillState::Starting);
        let fill = Arc::new(Fill {
            digest,
            file: OnceLock::new(),
            state: rx,
            spill: Mutex::new(Default::default()),
            from: OnceLock::new(),
        });
        map.insert(digest, fill.clone());
        drop(map);
        let (fills, task_fill) = (self.clone(), fill.clone());
        tokio::spawn(async move { fills.task(task_fill, tx, source).await });
        Ok(Some((fill, true)))
    }

    /// A fill's own task: a slot, the pipeline, the bucket's due, the published end.
    async fn task(self: Arc<Self>, fill: Arc<Fill>, tx: watch::Sender<FillState>, src: Source) {
        let digest = fill.digest;
        let guard = Inflight {
            fills: self.clone(),
            digest,
        };
        let res = match self.slots.take(src.upstream.name()).await {
            Ok(_slot) => self
                .pipeline
                .run(&fill, &tx, &src)
                .await
                .map_err(Failed::Fill),
            Err(e) => Err(Failed::Busy(e)),
        };
        let result = self.finished(digest, &src, &res);
        self.pipeline.metrics.fill_done(result);
        let up = src.upstream.name();
        match res {
            Ok(f) => {
                tracing::info!(digest = %digest, size = f.size, upstream = up, result = result.as_str(), "fill done");
                if result == FillResult::Committed {
                    let d = digest.to_string();
                    self.notify
                        .emit(Event::fill(up, src.repo.as_str(), &d, f.size));
                }
                drop(guard);
                tx.send_replace(FillState::Committed { size: f.size });
            }
            Err(Failed::Busy(e) | Failed::Fill(e)) => {
                tracing::warn!(digest = %digest, upstream = up, error = %e, "fill failed");
                drop(guard);
                tx.send_replace(FillState::Failed(e));
            }
        }
    }

    /// After the pipeline: the bucket's due and eviction for a verified blob; the fill's
    /// result label.
    fn finished(
        &self,
        digest: Digest,
        src: &Source,
        res: &std::result::Result<Filled, Failed>,
    ) -> FillResult {
        match res {
            Ok(f) => {
                self.sharer.after(digest, src, f);
                match f.kept {
                    Kept::Cached => {
                        self.pipeline.evictor.maybe_evict();
                        FillResult::Committed
                    }
                    Kept::Oversized(_) | Kept::Not => FillResult::Uncacheable,
                }
            }
            Err(Failed::Busy(_)) => FillResult::Busy,
            Err(Failed::Fill(Error::Upstream {
                code: ErrorCode::DigestInvalid,
                ..
            })) => FillResult::DigestMismatch,
            Err(Failed::Fill(Error::Internal(_))) => FillResult::Aborted,
            Err(Failed::Fill(_)) => FillResult::UpstreamError,
        }
    }
}

/// Why a fill ended without a verified blob.
enum Failed {
    /// No download slot within the idle timeout.
    Busy(Error),
    Fill(Error),
}

/// Removes the fill from the in-flight map when the task ends, however it ends.
struct Inflight {
    fills: Arc<Fills>,
    digest: Digest,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.fills.inflight.lock() {
            m.remove(&self.digest);
        }
    }
}

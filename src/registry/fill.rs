//! Fills: one upstream GET per blob digest, shared by every client that wants it meanwhile.
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

use super::origin::Origin;
use super::sink::Sink;
use crate::config::FillConfig;
use crate::error::{Error, Result};
use crate::metrics::FillResult;
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::store::{LinkKind, Store};
use crate::upstream::{Credentials, Upstream};
use http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

pub use super::fill_state::{Fill, FillState};

pub struct Fills {
    inflight: Mutex<HashMap<Digest, Arc<Fill>>>,
    pub(super) store: Arc<Store>,
    pub(super) cfg: FillConfig,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    evictor: Arc<super::capacity::Evictor>,
    /// The bucket shared with other replicas (`[storage] backend = "s3"`).
    pub(super) shared: Option<Arc<crate::store::s3::S3Store>>,
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Uploads to the bucket under way (see `origin`).
    pub(super) sharing: std::sync::atomic::AtomicUsize,
    /// Download slots (`fill.max_concurrent`, see `slots`).
    pub(super) slots: Arc<tokio::sync::Semaphore>,
}

/// What a fill needs to fetch its blob.
pub struct Source {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
    pub creds: Credentials,
    /// Where to read first (the upstream is always the fallback).
    pub via: super::origin::Via,
    /// What the client presented, for the owner replica (which maps it to upstream
    /// credentials itself): `creds` may be Wharf's own upstream credentials.
    pub peer_creds: Credentials,
}

impl Fills {
    /// Waits (at most `limit`) until no fill is in flight: at shutdown, so that a fill whose
    /// clients already have their verified bytes still becomes durable in the cache.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let busy = self.inflight.lock().map(|m| m.len()).unwrap_or(0)
                + self.sharing.load(std::sync::atomic::Ordering::SeqCst);
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

    pub fn new(
        store: Arc<Store>,
        cfg: FillConfig,
        metrics: Arc<crate::metrics::Metrics>,
        evictor: Arc<super::capacity::Evictor>,
        shared: Option<Arc<crate::store::s3::S3Store>>,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Arc<Fills> {
        Arc::new(Fills {
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent as usize)),
            inflight: Mutex::new(HashMap::new()),
            store,
            cfg,
            metrics,
            evictor,
            shared,
            cluster,
            sharing: Default::default(),
        })
    }

    pub fn in_progress(&self, digest: &Digest) -> Option<Arc<Fill>> {
        self.inflight.lock().ok()?.get(digest).cloned()
    }

    pub fn count(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The longest gap allowed between two body chunks from an upstream.
    pub fn idle_timeout(&self) -> std::time::Duration {
        self.cfg.idle_timeout
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
        if self.store.files().exists(&digest) {
            return Ok(None);
        }
        let (tx, rx) = watch::channel(FillState::Starting);
        let fill = Arc::new(Fill {
            digest,
            file: OnceLock::new(),
            state: rx,
            spill: Mutex::new(Default::default()),
        });
        map.insert(digest, fill.clone());
        drop(map);
        let fills = self.clone();
        let task_fill = fill.clone();
        tokio::spawn(async move {
            let guard = Inflight {
                fills: fills.clone(),
                digest,
            };
            let (res, busy) = match fills.slot(&source).await {
                Ok(_slot) => (fills.run(&task_fill, &tx, &source).await, false),
                Err(e) => (Err(e), true),
            };
            let result = match &res {
                _ if busy => FillResult::Busy,
                Ok(f) => fills.finished(digest, &source, f),
                Err(Error::Upstream {
                    code: ErrorCode::DigestInvalid,
                    ..
                }) => FillResult::DigestMismatch,
                Err(Error::Internal(_)) => FillResult::Aborted,
                Err(_) => FillResult::UpstreamError,
            };
            fills.metrics.fill_done(result);
            if res.as_ref().is_ok_and(|f| f.cached) {
                fills.evictor.maybe_evict();
            }
            match res.map(|f| f.size) {
                Ok(size) => {
                    tracing::info!(digest = %digest, size, upstream = source.upstream.name(), result = result.as_str(), "fill done");
                    drop(guard);
                    tx.send_replace(FillState::Committed { size });
                }
                Err(e) => {
                    tracing::warn!(digest = %digest, upstream = source.upstream.name(), error = %e, "fill failed");
                    drop(guard);
                    tx.send_replace(FillState::Failed(e));
                }
            }
        });
        Ok(Some((fill, true)))
    }

    /// Fetches, writes, verifies and commits; a verified blob larger than the whole cache is
    /// not kept. The temp file is removed on every error.
    async fn run(
        &self,
        fill: &Fill,
        tx: &watch::Sender<FillState>,
        src: &Source,
    ) -> Result<Filled> {
        let digest = fill.digest;
        // The fill timeout bounds the download; verification and commit are not cut short
        // (a commit abandoned half-way could land after the failure was published).
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let timed_out =
            || Error::unreachable(src.upstream.name(), "blob fetch exceeded the fill timeout");
        let (size, body, origin) = self.open_source(&digest, src, deadline).await?;
        let from = match &origin {
            Origin::Upstream => src.upstream.name().to_string(),
            Origin::Shared => "the shared bucket".to_string(),
            Origin::Peer(_) => "the owner replica".to_string(),
        };
        let store = self.store.clone();
        let temp = tokio::task::spawn_blocking(move || store.create_temp(&digest))
            .await
            .map_err(Error::internal)??;
        let temp = Arc::new(temp);
        let _ = fill.file.set(temp.file.clone());
        tx.send_replace(FillState::Streaming { size, written: 0 });
        let mut sink = Sink::new(fill, &temp.file, &self.metrics);
        let mut res = tokio::time::timeout_at(
            deadline,
            self.stream_to_file(&mut sink, body, size, tx, &from),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        // A bucket or peer that breaks off mid-blob: the upstream sends the rest.
        let mut resumed_at = None;
        if let Err(e @ Error::Unreachable { .. }) = &res {
            if origin != Origin::Upstream {
                let at = sink.written;
                tracing::warn!(digest = %digest, error = %e, at, "{from} broke off; resuming from the upstream");
                match self.resume(&digest, src, deadline, at).await {
                    Ok((total, body)) => {
                        resumed_at = Some(at);
                        res = tokio::time::timeout_at(
                            deadline,
                            self.stream_to_file(
                                &mut sink,
                                body,
                                total.or(size),
                                tx,
                                src.upstream.name(),
                            ),
                        )
                        .await
                        .unwrap_or_else(|_| Err(timed_out()));
                    }
                    Err(e2) => {
                        tracing::warn!(digest = %digest, error = %e2, "cannot resume from the upstream")
                    }
                }
            }
        }
        let discard = || {
            let (store, t) = (self.store.clone(), temp.clone());
            async move {
                let _ = tokio::task::spawn_blocking(move || store.files().discard(&t.path)).await;
            }
        };
        if let Err(e) = res {
            discard().await;
            return Err(e);
        }
        let (hasher, written, on_disk) = (sink.hasher, sink.written, sink.disk_ok);
        let upstream_bytes = match (&origin, resumed_at) {
            (Origin::Upstream, _) => written,
            (_, Some(at)) => written - at,
            _ => 0,
        };
        let from_peer = match (&origin, resumed_at) {
            (Origin::Peer(p), None) => Some(p.clone()),
            _ => None,
        };
        let filled = |cached| Filled {
            size: written,
            cached,
            upstream_bytes,
            from_peer: from_peer.clone(),
            oversized: None,
        };
        let actual = hasher.finish();
        if actual != digest {
            discard().await;
            if origin == Origin::Shared {
                // A corrupt object must not fail this digest for good: the next fill goes
                // to the owner or the upstream, and uploads it again.
                if let Some(b) = &self.shared {
                    use crate::store::backend::BlobBackend;
                    tracing::error!(digest = %digest, actual = %actual, "the bucket's copy does not match its digest; deleting it");
                    if let Err(e) = b.delete(&digest).await {
                        tracing::warn!(digest = %digest, error = %e, "cannot delete the bucket's corrupt copy");
                    }
                }
            }
            return Err(Error::Upstream {
                upstream: src.upstream.name().to_string(),
                status: StatusCode::BAD_GATEWAY,
                code: ErrorCode::DigestInvalid,
                message: format!("{from} sent content with digest {actual}, not {digest}"),
                retry_after: None,
            });
        }
        // The upstream served these verified bytes under this repository: link them first, so
        // that a request joining during the commit is authorized like one after it.
        let (store, upstream, repo) = (
            self.store.clone(),
            src.upstream.name().to_string(),
            src.repo.as_str().to_string(),
        );
        let linked = tokio::task::spawn_blocking(move || {
            store.put_link(LinkKind::Blob, &upstream, &repo, &digest)
        })
        .await
        .map_err(Error::internal)
        .and_then(|r| r);
        if let Err(e) = linked {
            discard().await;
            return Err(e);
        }
        // Verified: readers may finish now, while the commit makes the cache durable.
        tx.send_replace(FillState::Verified { size: written });
        if written > self.evictor.max() || !on_disk {
            // Too large to keep, or not all on disk (the temp file goes when the last handle
            // on it is dropped). A verified file too large for this disk's cache may still
            // go to the bucket.
            return Ok(Filled {
                oversized: on_disk.then(|| temp.clone()),
                ..filled(false)
            });
        }
        let store = self.store.clone();
        let t = temp.clone();
        let committed = tokio::task::spawn_blocking(move || {
            store.commit_blob(&t, &digest, written).inspect_err(|_| {
                store.files().discard(&t.path);
            })
        })
        .await
        .map_err(Error::internal)
        .and_then(|r| r);
        match committed {
            Ok(()) => Ok(filled(true)),
            Err(e) => {
                // The clients got verified bytes; only the cache misses out.
                tracing::error!(digest = %digest, error = %e, "verified blob not cached: commit failed");
                self.metrics.disk_write_errors.inc();
                Ok(filled(false))
            }
        }
    }
}

/// What a fill that verified its blob did.
pub(super) struct Filled {
    pub size: u64,
    /// Committed to the local cache.
    pub cached: bool,
    /// How many of its bytes came from the upstream (not a peer or the bucket).
    pub upstream_bytes: u64,
    /// The peer that sent every byte (none came from the upstream): its upload to the
    /// bucket is watched for ([`Fills::backstop`]).
    pub from_peer: Option<String>,
    /// The verified temp file of a blob too large for the local cache (kept until shared).
    pub oversized: Option<Arc<crate::store::blobs::TempBlob>>,
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

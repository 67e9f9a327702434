//! One fill, start to end: download (from the chosen origin, resumed from the upstream if
//! that origin breaks off) → verify (the byte count and the SHA-256 against the digest) →
//! commit (link, publish `Verified`, make the blob durable in the cache). See the folder's
//! `mod.rs` for the invariants this pipeline keeps.

use super::sink::Sink;
use super::source::{Origin, Origins, Source};
use super::state::{Fill, FillState};
use crate::config::FillConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::oci::{Digest, ErrorCode};
use crate::registry::capacity::Evictor;
use crate::store::blobs::TempBlob;
use crate::store::{LinkKind, Store};
use http::StatusCode;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a fill that verified its blob left in the local cache.
pub enum Kept {
    /// Committed.
    Cached,
    /// Too large for the local cache: the verified temp file, kept until it is shared.
    Oversized(Arc<TempBlob>),
    /// Not kept (the disk refused a write, or the commit failed).
    Not,
}

/// What a fill that verified its blob did.
pub struct Filled {
    pub size: u64,
    pub kept: Kept,
    /// How many of its bytes came from the upstream (not a peer or the bucket).
    pub upstream_bytes: u64,
    /// The peer that sent every byte (none came from the upstream): its upload to the
    /// bucket is watched for (`share`).
    pub from_peer: Option<String>,
}

/// The bytes of a finished download, not yet verified.
struct Downloaded {
    temp: Arc<TempBlob>,
    /// The digest the bytes have.
    actual: Digest,
    written: u64,
    /// False when the disk refused a write (the rest went to memory only).
    on_disk: bool,
    origin: Origin,
    /// Where the upstream took over from a bucket or peer that broke off.
    resumed_at: Option<u64>,
}

impl Downloaded {
    fn upstream_bytes(&self) -> u64 {
        match (&self.origin, self.resumed_at) {
            (Origin::Upstream, _) => self.written,
            (_, Some(at)) => self.written - at,
            _ => 0,
        }
    }

    fn sole_peer(&self) -> Option<String> {
        match (&self.origin, self.resumed_at) {
            (Origin::Peer(p), None) => Some(p.clone()),
            _ => None,
        }
    }
}

/// What a fill runs with.
pub struct Pipeline {
    pub store: Arc<Store>,
    pub cfg: FillConfig,
    pub metrics: Arc<Metrics>,
    pub evictor: Arc<Evictor>,
    pub origins: Origins,
}

impl Pipeline {
    /// Downloads, verifies and commits; a verified blob larger than the whole cache is not
    /// kept. The temp file is removed on every error.
    pub async fn run(
        &self,
        fill: &Fill,
        tx: &watch::Sender<FillState>,
        src: &Source,
    ) -> Result<Filled> {
        // The fill timeout bounds the download; verification and commit are not cut short
        // (a commit abandoned half-way could land after the failure was published).
        let deadline = Instant::now() + self.cfg.timeout;
        let d = self.download(fill, tx, src, deadline).await?;
        if let Err(e) = self.verify(&d, fill.digest, src).await {
            self.discard(&d.temp).await;
            return Err(e);
        }
        self.commit(d, fill.digest, src, tx).await
    }

    async fn download(
        &self,
        fill: &Fill,
        tx: &watch::Sender<FillState>,
        src: &Source,
        deadline: Instant,
    ) -> Result<Downloaded> {
        let digest = fill.digest;
        let opened = self.origins.open(&digest, src, deadline).await?;
        let from = opened.origin.describe(src.upstream.name());
        let _ = fill.from.set(from.clone());
        let store = self.store.clone();
        let temp = tokio::task::spawn_blocking(move || store.create_temp(&digest))
            .await
            .map_err(Error::internal)??;
        let temp = Arc::new(temp);
        let _ = fill.file.set(temp.file.clone());
        tx.send_replace(FillState::Streaming {
            size: opened.size,
            written: 0,
        });
        let mut sink = Sink::new(fill, &temp.file, &self.metrics);
        let size = opened.size;
        let mut res = self
            .stream(&mut sink, opened.body, size, tx, &from, src, deadline)
            .await;
        // A bucket or peer that breaks off mid-blob: the upstream sends the rest.
        let mut resumed_at = None;
        if let Err(e @ Error::Unreachable { .. }) = &res {
            if opened.origin != Origin::Upstream {
                let at = sink.written;
                tracing::warn!(digest = %digest, error = %e, at, "{from} broke off; resuming from the upstream");
                match self.origins.resume(&digest, src, deadline, at).await {
                    Ok((total, body)) => {
                        resumed_at = Some(at);
                        let up = src.upstream.name();
                        res = self
                            .stream(&mut sink, body, total.or(size), tx, up, src, deadline)
                            .await;
                    }
                    Err(e2) => {
                        tracing::warn!(digest = %digest, error = %e2, "cannot resume from the upstream")
                    }
                }
            }
        }
        if let Err(e) = res {
            self.discard(&temp).await;
            return Err(e);
        }
        let (hasher, written, on_disk) = (sink.hasher, sink.written, sink.disk_ok);
        Ok(Downloaded {
            temp,
            actual: hasher.finish(),
            written,
            on_disk,
            origin: opened.origin,
            resumed_at,
        })
    }

    /// Streams `body` into the sink within the fill's deadline.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        sink: &mut Sink<'_>,
        body: super::source::FillBody,
        size: Option<u64>,
        tx: &watch::Sender<FillState>,
        from: &str,
        src: &Source,
        deadline: Instant,
    ) -> Result<()> {
        let streamed = sink.stream(body, size, tx, from, self.cfg.idle_timeout);
        tokio::time::timeout_at(deadline, streamed)
            .await
            .unwrap_or_else(|_| {
                Err(Error::unreachable(
                    src.upstream.name(),
                    "blob fetch exceeded the fill timeout",
                ))
            })
    }

    /// The downloaded bytes must hash to the digest. A corrupt copy in the bucket is deleted
    /// (the next fill goes to the owner or the upstream, and uploads it again).
    async fn verify(&self, d: &Downloaded, digest: Digest, src: &Source) -> Result<()> {
        let actual = d.actual;
        if actual == digest {
            return Ok(());
        }
        if d.origin == Origin::Shared {
            if let Some(b) = &self.origins.bucket {
                use crate::store::backend::BlobBackend;
                tracing::error!(digest = %digest, actual = %actual, "the bucket's copy does not match its digest; deleting it");
                if let Err(e) = b.s3().delete(&digest).await {
                    tracing::warn!(digest = %digest, error = %e, "cannot delete the bucket's corrupt copy");
                }
            }
        }
        let from = d.origin.describe(src.upstream.name());
        Err(Error::Upstream {
            upstream: src.upstream.name().to_string(),
            status: StatusCode::BAD_GATEWAY,
            code: ErrorCode::DigestInvalid,
            message: format!("{from} sent content with digest {actual}, not {digest}"),
            retry_after: None,
        })
    }

    /// Links the verified blob, lets readers finish, and commits it to the cache (unless it
    /// is too large or not all on disk). A failed commit costs the cache only.
    async fn commit(
        &self,
        d: Downloaded,
        digest: Digest,
        src: &Source,
        tx: &watch::Sender<FillState>,
    ) -> Result<Filled> {
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
            self.discard(&d.temp).await;
            return Err(e);
        }
        let written = d.written;
        // Verified: readers may finish now, while the commit makes the cache durable.
        tx.send_replace(FillState::Verified { size: written });
        let filled = |kept| Filled {
            size: written,
            kept,
            upstream_bytes: d.upstream_bytes(),
            from_peer: d.sole_peer(),
        };
        if written > self.evictor.max() || !d.on_disk {
            // Too large to keep, or not all on disk (the temp file goes when the last handle
            // on it is dropped). A verified file too large for this disk's cache may still
            // go to the bucket.
            let kept = match d.on_disk {
                true => Kept::Oversized(d.temp.clone()),
                false => Kept::Not,
            };
            return Ok(filled(kept));
        }
        let (store, t) = (self.store.clone(), d.temp.clone());
        let committed = tokio::task::spawn_blocking(move || {
            store.commit_blob(&t, &digest, written).inspect_err(|_| {
                store.files().discard(&t.path);
            })
        })
        .await
        .map_err(Error::internal)
        .and_then(|r| r);
        match committed {
            Ok(()) => Ok(filled(Kept::Cached)),
            Err(e) => {
                // The clients got verified bytes; only the cache misses out.
                tracing::error!(digest = %digest, error = %e, "verified blob not cached: commit failed");
                self.metrics.disk_write_errors.inc();
                Ok(filled(Kept::Not))
            }
        }
    }

    async fn discard(&self, temp: &Arc<TempBlob>) {
        let (store, t) = (self.store.clone(), temp.clone());
        let _ = tokio::task::spawn_blocking(move || store.files().discard(&t.path)).await;
    }
}

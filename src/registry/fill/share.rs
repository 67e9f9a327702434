//! What a fill owes the shared bucket once its blob is verified ([`Sharer`]).
//!
//! Invariants:
//! - Only a fill whose bytes (some of them) came from the upstream writes to the bucket
//!   (the blob, after its local commit, and its repository link), so a blob is uploaded
//!   once per cluster, by the replica that fetched it.
//! - A blob that reached a live replica ends up in the bucket even when the replica that
//!   fetched it dies before its upload (which runs after the clients got their bytes): a
//!   replica that filled a blob wholly from its owner watches the bucket
//!   ([`Sharer::backstop`]) and uploads the blob and its link itself once the owner stops
//!   answering, or once the owner's upload is overdue ([`backstop_after`]). Several replicas
//!   may then upload the same verified bytes under the same key: that costs bucket traffic,
//!   never correctness.

use super::run::{Filled, Kept};
use super::source::Source;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::oci::Digest;
use crate::registry::bucket::Bucket;
use crate::store::blobs::TempBlob;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Uploads verified blobs to the bucket, or watches that their owner does.
pub struct Sharer {
    pub bucket: Option<Arc<Bucket>>,
    pub cluster: Option<Arc<Cluster>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

impl Sharer {
    /// After a fill verified its blob: counts the upstream bytes and owes the bucket its
    /// copy (an upload, or a watch on the owner's).
    pub fn after(self: &Arc<Self>, digest: Digest, source: &Source, f: &Filled) {
        if f.upstream_bytes > 0 {
            self.metrics
                .upstream_bytes
                .with_label_values(&[source.upstream.name()])
                .inc_by(f.upstream_bytes);
        }
        let oversized = match &f.kept {
            Kept::Cached => None,
            Kept::Oversized(t) => Some(t.clone()),
            Kept::Not => return,
        };
        let (up, repo) = (source.upstream.name(), source.repo.as_str());
        if f.upstream_bytes > 0 {
            self.share(digest, up, repo, oversized);
        } else if let Some(owner) = &f.from_peer {
            self.backstop(digest, f.size, up, repo, owner, oversized);
        }
    }

    /// The repository link and the blob go to the bucket, in the background (counted, so
    /// shutdown can wait for them). The blob is read from the local cache, or from
    /// `oversized`, the verified temp file of a blob too large for it (removed once the
    /// upload is done).
    fn share(&self, digest: Digest, up: &str, repo: &str, oversized: Option<Arc<TempBlob>>) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        let pending = bucket.track();
        let path = match &oversized {
            Some(t) => t.path.clone(),
            None => self.store.files().path(&digest),
        };
        let (up, repo) = (up.to_string(), repo.to_string());
        tokio::spawn(async move {
            bucket.upload_blob(&digest, &up, &repo, &path).await;
            drop(oversized);
            drop(pending);
        });
    }

    /// After a fill that `owner` served whole (see the module's invariants): waits, in the
    /// background, until the bucket holds the blob; uploads it (and its link) itself when
    /// the owner stops answering or [`backstop_after`] passes first. The wait is not counted
    /// as pending (shutdown does not wait for it), and holds the sharer only weakly (a
    /// replica shut down meanwhile does not keep its store open); the upload is counted.
    fn backstop(
        self: &Arc<Self>,
        digest: Digest,
        size: u64,
        up: &str,
        repo: &str,
        owner: &str,
        oversized: Option<Arc<TempBlob>>,
    ) {
        let (Some(bucket), Some(cluster)) = (self.bucket.clone(), self.cluster.clone()) else {
            return;
        };
        let (me, up, repo, owner) = (
            Arc::downgrade(self),
            up.to_string(),
            repo.to_string(),
            owner.to_string(),
        );
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + backstop_after(size);
            let mut pause = BACKSTOP_POLL;
            let why = loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BACKSTOP_POLL_MAX);
                if me.strong_count() == 0 || bucket.holds(&digest).await {
                    return;
                }
                if !cluster.alive(&owner).await {
                    break "the owner replica stopped answering";
                }
                if tokio::time::Instant::now() >= deadline {
                    break "the owner replica's upload is overdue";
                }
            };
            // Replicas that saw the owner die at once need not all upload: a random pause,
            // then one more look.
            let jitter = crate::upstream::jitter() - 0.5;
            tokio::time::sleep((BACKSTOP_POLL * 2).mul_f64(jitter)).await;
            if bucket.holds(&digest).await {
                return;
            }
            let Some(me) = me.upgrade() else { return };
            tracing::info!(digest = %digest, owner = %owner, "{why}; uploading the blob to the bucket from this replica");
            me.metrics.shared_backstops.inc();
            me.share(digest, &up, &repo, oversized);
        });
    }
}

/// How long a backstop first waits before it looks at the bucket and the owner; the pause
/// doubles after each look, up to [`BACKSTOP_POLL_MAX`].
const BACKSTOP_POLL: Duration = Duration::from_secs(1);
const BACKSTOP_POLL_MAX: Duration = Duration::from_secs(16);

/// How long a replica that got a blob of `size` bytes from its owner gives the owner's
/// upload before uploading it too: a minute, plus the time the blob takes at 8 MiB/s.
pub fn backstop_after(size: u64) -> Duration {
    Duration::from_secs(60 + size / (8 << 20))
}

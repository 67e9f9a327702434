//! [`Bucket`]: the registry's side of the shared bucket: metadata that lets a replica which
//! never saw an image serve it (tag resolutions, manifests, repository links, anonymous
//! decisions), the blobs fills read and upload, and the down-window after a failure.
//!
//! Invariants:
//! - The bucket is read through, never trusted blindly: a manifest read from it is served
//!   only if its bytes hash to its digest, a blob only after the fill verified it, and
//!   nothing from it is served before the usual authorization (`access`), for which a link
//!   in the bucket counts as a link, and an anonymous decision as a decision.
//! - Writes to the bucket happen in the background and only after the local write; a
//!   failing bucket costs sharing, never a pull. Reads have a short deadline, and a bucket
//!   that failed is left alone for [`BUCKET_DOWN_FOR`].
//! - RocksDB stays a cache: whatever is read from the bucket is written locally as if this
//!   replica had fetched it.

use crate::metrics::{BucketOp, Metrics};
use crate::oci::Digest;
use crate::store::backend::BlobBackend;
use crate::store::keys::TagRecord;
use crate::store::s3::S3Store;
use crate::store::{now_ms, LinkKind, StoredManifest};
use bytes::Bytes;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest a lookup in the bucket may delay a request.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a bucket that failed a lookup is skipped.
pub const BUCKET_DOWN_FOR: Duration = Duration::from_secs(10);

/// `links/<upstream>/<repo>/sha256/<hex>` for blob links, `manifest-links/...` for manifest
/// links. (Replicas before the split wrote manifests' own links under `links/` too: such a
/// record lets a replica serve only bytes with that digest, the manifest's own, as a blob.)
pub fn link_key(kind: LinkKind, up: &str, repo: &str, d: &Digest) -> Vec<String> {
    let prefix = match kind {
        LinkKind::Blob => "links",
        LinkKind::Manifest => "manifest-links",
    };
    vec![
        prefix.into(),
        up.into(),
        repo.into(),
        "sha256".into(),
        d.hex(),
    ]
}

fn parts(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn tag_key(up: &str, repo: &str, tag: &str) -> Vec<String> {
    vec!["tags".into(), up.into(), repo.into(), tag.into()]
}

fn manifest_key(d: &Digest) -> Vec<String> {
    vec!["manifests".into(), "sha256".into(), d.hex()]
}

fn authz_key(up: &str, repo: &str) -> Vec<String> {
    vec!["authz".into(), up.into(), repo.into()]
}

/// `<digest> <ms>` or `<0|1> <ms>`.
fn two_fields(b: &[u8]) -> Option<(&str, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (a, ms) = s.trim().split_once(' ')?;
    Some((a, ms.parse().ok()?))
}

/// The shared bucket (`[storage] backend = "s3"`), as the registry's parts use it.
pub struct Bucket {
    s3: Arc<S3Store>,
    /// Answer GETs of blobs in the bucket with a pre-signed URL.
    redirect: bool,
    /// Until when (ms since the epoch) the bucket is not asked, after a failure.
    down_until: AtomicU64,
    /// Writes under way in the background (shutdown waits for them: [`Bucket::pending`]).
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// Counts one background write of the bucket for as long as it lives.
pub struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bucket {
    pub fn new(s3: Arc<S3Store>, redirect: bool, metrics: Arc<Metrics>) -> Arc<Bucket> {
        Arc::new(Bucket {
            s3,
            redirect,
            down_until: AtomicU64::new(0),
            pending: Arc::default(),
            metrics,
        })
    }

    /// The bucket itself, whatever its down-window (fills read it with their own deadline).
    pub fn s3(&self) -> &Arc<S3Store> {
        &self.s3
    }

    /// Whether blob GETs are answered with a pre-signed URL.
    pub fn redirects(&self) -> bool {
        self.redirect
    }

    /// Background writes still under way.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Marks one background write as under way until the guard drops.
    pub fn track(&self) -> Pending {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending(self.pending.clone())
    }

    /// Counts a failed bucket operation.
    pub fn count_error(&self, op: BucketOp) {
        self.metrics.shared_store_error(op);
    }

    /// The bucket, unless it failed a moment ago.
    fn available(&self) -> Option<&Arc<S3Store>> {
        let down_until = self.down_until.load(Ordering::Relaxed);
        (now_ms() >= down_until).then_some(&self.s3)
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        self.count_error(BucketOp::Get);
        tracing::warn!(error = %e, "bucket lookup of {what} failed; not asking it for {BUCKET_DOWN_FOR:?}");
        self.down_until.store(
            now_ms() + BUCKET_DOWN_FOR.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// Runs a bucket lookup with the lookup deadline, unless the bucket is in its
    /// down-window; `None` on any failure.
    async fn lookup<T, F, Fut>(&self, what: &str, f: F) -> Option<T>
    where
        F: FnOnce(Arc<S3Store>) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<T>>,
    {
        let s3 = self.available()?.clone();
        match tokio::time::timeout(LOOKUP_TIMEOUT, f(s3)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(what, &e);
                None
            }
            Err(_) => {
                self.failed(what, &"timed out");
                None
            }
        }
    }

    /// Writes a record to the bucket in the background.
    fn share_record(&self, key: Vec<String>, value: Bytes) {
        let (s3, metrics, pending) = (self.s3.clone(), self.metrics.clone(), self.track());
        tokio::spawn(async move {
            if let Err(e) = s3.put_record(&parts(&key), value).await {
                metrics.shared_store_error(BucketOp::Put);
                tracing::warn!(key = key.join("/"), error = %e, "cannot write to the bucket");
            }
            drop(pending);
        });
    }

    /// The size of `digest` when the bucket holds it.
    pub async fn blob_size(&self, digest: &Digest) -> Option<u64> {
        let d = *digest;
        self.lookup("a blob", |b| async move { b.stat(&d).await })
            .await
            .flatten()
    }

    /// Whether the bucket holds `digest` (its own deadline, no down-window: for backstops).
    pub async fn holds(&self, digest: &Digest) -> bool {
        matches!(
            tokio::time::timeout(LOOKUP_TIMEOUT, self.s3.stat(digest)).await,
            Ok(Ok(Some(_)))
        )
    }

    /// Whether the bucket links `digest` to `up`'s repository `repo` as `kind`.
    pub async fn has_link(&self, kind: LinkKind, up: &str, repo: &str, digest: &Digest) -> bool {
        let key = link_key(kind, up, repo, digest);
        self.lookup(
            "a link",
            |b| async move { b.has_record(&parts(&key)).await },
        )
        .await
        .unwrap_or(false)
    }

    /// A manifest from the bucket, if it is there and its bytes hash to `digest`.
    pub async fn manifest(&self, digest: &Digest) -> Option<StoredManifest> {
        let key = manifest_key(digest);
        let raw = self
            .lookup(
                "a manifest",
                |b| async move { b.get_record(&parts(&key)).await },
            )
            .await??;
        let nl = raw.iter().position(|&c| c == b'\n')?;
        let media_type = std::str::from_utf8(&raw[..nl]).ok()?.to_string();
        let bytes = raw.slice(nl + 1..);
        let parsed = crate::oci::manifest::accept(&bytes, Some(&media_type));
        if Digest::of(&bytes) != *digest || !parsed.is_ok_and(|(mt, _)| mt == media_type) {
            tracing::error!(digest = %digest, "the bucket holds a manifest that does not match its digest; ignored");
            return None;
        }
        Some(StoredManifest {
            digest: *digest,
            media_type,
            bytes,
        })
    }

    /// A tag resolution from the bucket confirmed after `newer_than` (ms), with its manifest
    /// (the caller records both locally, as if this replica had fetched them).
    pub async fn tag(
        &self,
        up: &str,
        repo: &str,
        tag: &str,
        newer_than: Option<u64>,
    ) -> Option<(TagRecord, StoredManifest)> {
        let key = tag_key(up, repo, tag);
        let raw = self
            .lookup("a tag", |b| async move { b.get_record(&parts(&key)).await })
            .await??;
        let (d, checked_at_ms) = two_fields(&raw)?;
        // Another replica's clock: never later than ours.
        let checked_at_ms = checked_at_ms.min(now_ms());
        let rec = TagRecord {
            digest: Digest::parse(d).ok()?,
            checked_at_ms,
        };
        if newer_than.is_some_and(|n| checked_at_ms <= n) {
            return None;
        }
        let m = self.manifest(&rec.digest).await?;
        Some((rec, m))
    }

    /// Shares a tag resolution this replica just confirmed upstream.
    pub fn share_tag(&self, up: &str, repo: &str, tag: &str, rec: &TagRecord) {
        self.share_record(
            tag_key(up, repo, tag),
            Bytes::from(format!("{} {}", rec.digest, rec.checked_at_ms)),
        );
    }

    /// Shares a verified manifest fetched from `up`'s repository `repo`, and its link.
    pub fn share_manifest(&self, up: &str, repo: &str, m: &StoredManifest) {
        let mut v = Vec::with_capacity(m.media_type.len() + 1 + m.bytes.len());
        v.extend_from_slice(m.media_type.as_bytes());
        v.push(b'\n');
        v.extend_from_slice(&m.bytes);
        self.share_record(manifest_key(&m.digest), Bytes::from(v));
        self.share_record(
            link_key(LinkKind::Manifest, up, repo, &m.digest),
            Bytes::new(),
        );
    }

    /// An anonymous decision from the bucket: `Some(checked_at_ms)` if anonymous clients may
    /// pull `up`'s repository `repo`.
    pub async fn anonymous(&self, up: &str, repo: &str) -> Option<u64> {
        let key = authz_key(up, repo);
        let raw = self
            .lookup(
                "a decision",
                |b| async move { b.get_record(&parts(&key)).await },
            )
            .await??;
        match two_fields(&raw)? {
            ("1", at) => Some(at.min(now_ms())),
            _ => None,
        }
    }

    /// Shares what the upstream said about anonymous pulls of a repository.
    pub fn share_anonymous(&self, up: &str, repo: &str, allowed: bool) {
        self.share_record(
            authz_key(up, repo),
            Bytes::from(format!("{} {}", u8::from(allowed), now_ms())),
        );
    }

    /// Uploads a verified blob (read from `path`) and its repository link, unless the bucket
    /// has the blob already. Failures are counted and logged: they cost sharing only.
    pub async fn upload_blob(&self, digest: &Digest, up: &str, repo: &str, path: &Path) {
        let link = link_key(LinkKind::Blob, up, repo, digest);
        if let Err(e) = self.s3.put_record(&parts(&link), Bytes::new()).await {
            self.count_error(BucketOp::Put);
            tracing::warn!(digest = %digest, error = %e, "cannot write the blob's link to the bucket");
        }
        if let Ok(Some(_)) = self.s3.stat(digest).await {
            return;
        }
        match self.s3.put_file(digest, path).await {
            Err(e) => {
                self.count_error(BucketOp::Put);
                tracing::warn!(digest = %digest, error = %e, "cannot upload the blob to the bucket; other replicas will fetch it themselves");
            }
            Ok(()) => tracing::debug!(digest = %digest, "blob uploaded to the bucket"),
        }
    }
}

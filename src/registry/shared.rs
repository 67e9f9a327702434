//! The registry's side of the shared bucket: metadata that lets a replica which never saw an
//! image serve it (tag resolutions, manifests, repository links, anonymous decisions), and
//! the choice of a blob fill's source.
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

use super::origin::Via;
use super::{Registry, Target};
use crate::metrics::BucketOp;
use crate::oci::Digest;
use crate::store::backend::BlobBackend;
use crate::store::keys::TagRecord;
use crate::store::s3::S3Store;
use crate::store::{now_ms, LinkKind, StoredManifest};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// The longest a lookup in the bucket may delay a request.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a bucket that failed a lookup is skipped.
pub const BUCKET_DOWN_FOR: Duration = Duration::from_secs(10);

/// `links/<upstream>/<repo>/sha256/<hex>` for blob links, `manifest-links/...` for manifest
/// links. (Replicas before the split wrote manifests' own links under `links/` too: such a
/// record lets a replica serve only bytes with that digest, the manifest's own, as a blob.)
pub(super) fn link_key(kind: LinkKind, up: &str, repo: &str, d: &Digest) -> Vec<String> {
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

impl Registry {
    /// The bucket, unless there is none or it failed a moment ago.
    fn bucket(&self) -> Option<&Arc<S3Store>> {
        let down_until = self
            .bucket_down_until
            .load(std::sync::atomic::Ordering::Relaxed);
        self.shared.as_ref().filter(|_| now_ms() >= down_until)
    }

    fn bucket_failed(&self, what: &str, e: &dyn std::fmt::Display) {
        self.metrics.shared_store_error(BucketOp::Get);
        tracing::warn!(error = %e, "bucket lookup of {what} failed; not asking it for {BUCKET_DOWN_FOR:?}");
        self.bucket_down_until.store(
            now_ms() + BUCKET_DOWN_FOR.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Runs a bucket lookup with the lookup deadline; `None` on any failure.
    async fn lookup<T, F>(&self, what: &str, f: F) -> Option<T>
    where
        F: std::future::Future<Output = std::io::Result<T>>,
    {
        match tokio::time::timeout(LOOKUP_TIMEOUT, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.bucket_failed(what, &e);
                None
            }
            Err(_) => {
                self.bucket_failed(what, &"timed out");
                None
            }
        }
    }

    /// Writes a record to the bucket in the background.
    fn share_record(&self, key: Vec<String>, value: Bytes) {
        let Some(b) = self.shared.clone() else { return };
        let (metrics, fills) = (self.metrics.clone(), self.fills.clone());
        fills
            .sharing
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = b.put_record(&parts(&key), value).await {
                metrics.shared_store_error(BucketOp::Put);
                tracing::warn!(key = key.join("/"), error = %e, "cannot write to the bucket");
            }
            fills
                .sharing
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// Where a fill of `digest` should read first, and the size when the bucket has it.
    pub(super) async fn blob_source(&self, t: &Target, digest: &Digest) -> (Via, Option<u64>) {
        if let Some(b) = self.bucket() {
            if let Some(Some(size)) = self.lookup("a blob", b.stat(digest)).await {
                return (Via::Shared, Some(size));
            }
        }
        if !t.via_peer {
            if let Some(owner) = self.cluster.as_ref().and_then(|c| c.owner(digest)) {
                return (Via::Peer(owner), None);
            }
        }
        (Via::Upstream, None)
    }

    /// Whether the bucket links `digest` to `t`'s repository as `kind`.
    pub(super) async fn shared_link(&self, t: &Target, kind: LinkKind, digest: &Digest) -> bool {
        let Some(b) = self.bucket() else { return false };
        let key = link_key(kind, t.upstream.name(), t.repo.as_str(), digest);
        self.lookup("a link", b.has_record(&parts(&key)))
            .await
            .unwrap_or(false)
    }

    /// A manifest from the bucket, if it is there and its bytes hash to `digest`.
    pub(super) async fn shared_manifest(&self, digest: &Digest) -> Option<StoredManifest> {
        let b = self.bucket()?;
        let raw = self
            .lookup("a manifest", b.get_record(&parts(&manifest_key(digest))))
            .await??;
        let nl = raw.iter().position(|&c| c == b'\n')?;
        let media_type = std::str::from_utf8(&raw[..nl]).ok()?.to_string();
        let bytes = raw.slice(nl + 1..);
        let parsed = super::manifest::accept_manifest(&bytes, Some(&media_type));
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

    /// A tag resolution from the bucket confirmed after `newer_than` (ms), with its
    /// manifest, recorded locally (manifest, links, tag) as if this replica had fetched them.
    pub(super) async fn shared_tag(
        &self,
        t: &Target,
        tag: &str,
        newer_than: Option<u64>,
    ) -> Option<TagRecord> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let b = self.bucket()?;
        let raw = self
            .lookup("a tag", b.get_record(&parts(&tag_key(up, repo, tag))))
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
        let m = self.shared_manifest(&rec.digest).await?;
        let refs = m.refs().ok()?.links();
        let (store, up_s, repo_s, tag_s) = (
            self.store.clone(),
            up.to_string(),
            repo.to_string(),
            tag.to_string(),
        );
        let m2 = m.clone();
        let stored = tokio::task::spawn_blocking(move || {
            store.put_manifest(&up_s, &repo_s, &m2, &refs, Some((&tag_s, rec)))?;
            store.note_manifest(&m2.digest, m2.bytes.len() as u64)
        })
        .await;
        if !matches!(stored, Ok(Ok(()))) {
            return None;
        }
        self.manifests.insert(m.digest, Arc::new(m)).await;
        self.tags
            .insert(crate::store::keys::tag_key(up, repo, tag), rec)
            .await;
        Some(rec)
    }

    /// Shares a tag resolution this replica just confirmed upstream.
    pub(super) fn share_tag(&self, up: &str, repo: &str, tag: &str, rec: &TagRecord) {
        self.share_record(
            tag_key(up, repo, tag),
            Bytes::from(format!("{} {}", rec.digest, rec.checked_at_ms)),
        );
    }

    /// Shares a verified manifest fetched from the upstream under `t`, and its link.
    pub(super) fn share_manifest(&self, t: &Target, m: &StoredManifest) {
        if self.shared.is_none() {
            return;
        }
        let mut v = Vec::with_capacity(m.media_type.len() + 1 + m.bytes.len());
        v.extend_from_slice(m.media_type.as_bytes());
        v.push(b'\n');
        v.extend_from_slice(&m.bytes);
        self.share_record(manifest_key(&m.digest), Bytes::from(v));
        self.share_record(
            link_key(
                LinkKind::Manifest,
                t.upstream.name(),
                t.repo.as_str(),
                &m.digest,
            ),
            Bytes::new(),
        );
    }

    /// An anonymous decision from the bucket: `Some(checked_at_ms)` if anonymous clients may
    /// pull `t`'s repository.
    pub(super) async fn shared_anonymous(&self, up: &str, repo: &str) -> Option<u64> {
        let b = self.bucket()?;
        let raw = self
            .lookup("a decision", b.get_record(&parts(&authz_key(up, repo))))
            .await??;
        match two_fields(&raw)? {
            ("1", at) => Some(at.min(now_ms())),
            _ => None,
        }
    }

    /// Shares what the upstream said about anonymous pulls of a repository.
    pub(super) fn share_anonymous(&self, up: &str, repo: &str, allowed: bool) {
        self.share_record(
            authz_key(up, repo),
            Bytes::from(format!("{} {}", u8::from(allowed), now_ms())),
        );
    }
}

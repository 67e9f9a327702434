//! The local side of manifests: the hot cache and RocksDB (and, read through, the shared
//! bucket), tag resolutions, repository links. Nothing here asks an upstream.

use super::Manifests;
use crate::error::{Error, Result};
use crate::oci::manifest::Links;
use crate::oci::Digest;
use crate::registry::target::Target;
use crate::store::keys::{tag_key, TagRecord};
use crate::store::StoredManifest;
use std::sync::Arc;

impl Manifests {
    /// A manifest by digest: the hot cache, RocksDB, then the bucket (kept in memory only: it
    /// reaches RocksDB when it is linked to a repository).
    pub(super) async fn cached(&self, digest: &Digest) -> Result<Option<Arc<StoredManifest>>> {
        if let Some(m) = self.hot.get(digest).await {
            self.store.touch_manifest(digest, m.bytes.len() as u64);
            return Ok(Some(m));
        }
        if let Some(m) = self.store.get_manifest(digest)? {
            self.store.touch_manifest(digest, m.bytes.len() as u64);
            let m = Arc::new(m);
            self.hot.insert(*digest, m.clone()).await;
            return Ok(Some(m));
        }
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        match bucket.manifest(digest).await {
            Some(m) => {
                let m = Arc::new(m);
                self.hot.insert(*digest, m.clone()).await;
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    /// Links a manifest the upstream confirmed under `t` (and what it references) to the
    /// repository, so its blobs can be served there.
    pub(super) fn link(&self, t: &Target, m: &StoredManifest) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let links = m.refs().map(|r| r.links()).unwrap_or_default();
        self.store.put_manifest(up, repo, m, &links, None)?;
        self.store.note_manifest(&m.digest, m.bytes.len() as u64)
    }

    /// Stores a verified manifest under `t` with its links (and a tag resolution), on a
    /// blocking thread, and keeps it hot.
    pub(super) async fn keep(
        &self,
        t: &Target,
        m: &Arc<StoredManifest>,
        links: Links,
        tag: Option<(String, TagRecord)>,
    ) -> Result<()> {
        let store = self.store.clone();
        let (up, repo, m2) = (
            t.upstream.name().to_string(),
            t.repo.as_str().to_string(),
            m.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let tag = tag.as_ref().map(|(t, r)| (t.as_str(), *r));
            store.put_manifest(&up, &repo, &m2, &links, tag)?;
            store.note_manifest(&m2.digest, m2.bytes.len() as u64)
        })
        .await
        .map_err(Error::internal)??;
        self.hot.insert(m.digest, m.clone()).await;
        Ok(())
    }

    /// A tag resolution: moka first, then RocksDB.
    pub(super) async fn get_tag(&self, t: &Target, tag: &str) -> Result<Option<TagRecord>> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let key = tag_key(up, repo, tag);
        if let Some(r) = self.tags.get(&key).await {
            return Ok(Some(r));
        }
        let rec = self.store.get_tag(up, repo, tag)?;
        if let Some(r) = rec {
            self.tags.insert(key, r).await;
        }
        Ok(rec)
    }

    /// Records a resolution this replica just confirmed upstream (and shares it).
    pub(super) async fn put_tag(&self, t: &Target, tag: &str, rec: TagRecord) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        self.store.put_tag(up, repo, tag, rec)?;
        self.tags.insert(tag_key(up, repo, tag), rec).await;
        if let Some(b) = &self.bucket {
            b.share_tag(up, repo, tag, &rec);
        }
        Ok(())
    }

    /// A resolution another replica confirmed after `newer_than` (ms), from the bucket, with
    /// its manifest, recorded locally (manifest, links, tag) as if this replica had fetched
    /// them.
    pub(super) async fn tag_from_bucket(
        &self,
        t: &Target,
        tag: &str,
        newer_than: Option<u64>,
    ) -> Option<TagRecord> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let bucket = self.bucket.as_ref()?;
        let (rec, m) = bucket.tag(up, repo, tag, newer_than).await?;
        let links = m.refs().ok()?.links();
        let m = Arc::new(m);
        self.keep(t, &m, links, Some((tag.to_string(), rec)))
            .await
            .ok()?;
        self.tags.insert(tag_key(up, repo, tag), rec).await;
        Some(rec)
    }
}

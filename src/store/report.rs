//! What is in the cache, for people: `wharf ls` and `wharf du`.

use super::{keys, Store, CF_BLOB_LINKS, CF_TAGS};
use crate::error::Result;
use crate::oci::Digest;
use std::collections::{BTreeMap, HashSet};

/// One cached tag.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageEntry {
    pub upstream: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// Bytes of the cached blobs the image references (children of an index included).
    pub cached_bytes: u64,
    /// When the tag was last confirmed upstream (RFC 3339).
    pub checked_at: String,
}

/// Bytes cached per upstream and repository (a blob shared by two repositories counts in
/// both).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub upstream: String,
    pub repository: String,
    pub blobs: u64,
    pub bytes: u64,
}

impl Store {
    /// Bytes of the cached blobs reachable from manifest `root`.
    pub(super) fn reachable_bytes(&self, root: Digest) -> Result<u64> {
        let (mut seen, mut todo, mut bytes) = (HashSet::new(), vec![root], 0u64);
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(m) = self.get_manifest(&d)? {
                if let Ok(r) = m.refs() {
                    todo.extend(r.layers);
                    todo.extend(r.config);
                    todo.extend(r.manifests);
                }
            } else if let Some(rec) = self.blob_record(&d)? {
                bytes += rec.size;
            }
        }
        Ok(bytes)
    }

    /// Every cached tag, sorted by upstream, repository, tag.
    pub fn images(&self) -> Result<Vec<ImageEntry>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_TAGS)?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item?;
            let (Some((upstream, repository, tag)), Some(rec)) =
                (keys::decode_tag_key(&k), keys::decode_tag(&v))
            else {
                continue;
            };
            let media_type = self
                .get_manifest(&rec.digest)?
                .map(|m| m.media_type)
                .unwrap_or_default();
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(rec.checked_at_ms);
            out.push(ImageEntry {
                upstream,
                repository,
                tag,
                digest: rec.digest.to_string(),
                media_type,
                cached_bytes: self.reachable_bytes(rec.digest)?,
                checked_at: humantime::format_rfc3339_seconds(at).to_string(),
            });
        }
        Ok(out)
    }

    /// Cached blob bytes per upstream and repository.
    pub fn usage(&self) -> Result<Vec<Usage>> {
        let mut per: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_BLOB_LINKS)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            let Some((up, repo, d)) = keys::decode_link_key(&k) else {
                continue;
            };
            if let Some(rec) = self.blob_record(&d)? {
                let e = per.entry((up, repo)).or_default();
                e.0 += 1;
                e.1 += rec.size;
            }
        }
        Ok(per
            .into_iter()
            .map(|((upstream, repository), (blobs, bytes))| Usage {
                upstream,
                repository,
                blobs,
                bytes,
            })
            .collect())
    }
}

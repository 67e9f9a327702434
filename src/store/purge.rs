//! Purging cached content on an operator's order (`wharf cache purge`).
//!
//! Invariants:
//! - Purging `UPSTREAM/REPO:TAG` removes that tag's resolution; `@DIGEST`, every tag of the
//!   repository resolving to it; `UPSTREAM/REPO`, every tag and manifest of the repository.
//!   The named manifests and their index children are *purged from the repository* unless a
//!   remaining tag of the repository still reaches them: their manifest links to it go, and
//!   so do its blob links to the blobs they reference that no remaining manifest of the
//!   repository references.
//! - A manifest record goes when no repository (of any upstream) keeps a manifest link to
//!   it; a blob (record, then file) goes when no repository of any upstream keeps a blob link
//!   to it. A blob shared with another image, another repository or another upstream stays.
//! - The metadata changes are one write batch, written before any record or file is
//!   removed, so a crash leaves at worst unlinked records and files (eviction and start-up
//!   reconcile those), never a link to something missing.
//! - What was removed is returned ([`Purged`]) so the caller can drop its in-memory caches
//!   and the shared bucket's copies.

use super::{keys, Store, CF_BLOB_LINKS, CF_MANIFEST_LINKS, CF_TAGS};
use crate::error::Result;
use crate::oci::{CacheRef, Digest, Selector};
use std::collections::{BTreeSet, HashSet};

/// What a purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub tags: Vec<String>,
    /// Manifests unlinked from the repository.
    pub unlinked_manifests: Vec<Digest>,
    /// Manifest records deleted (no repository links them any more).
    pub manifests: Vec<Digest>,
    /// Blobs deleted (no repository links them any more), and their bytes.
    pub blobs: Vec<Digest>,
    pub bytes: u64,
}

/// What a purge of one reference removes from its repository.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tags: Vec<String>,
    /// Manifests whose link to the repository goes.
    pub unlink: HashSet<Digest>,
    /// Blobs whose link to the repository goes (deleted if no other repository links them).
    pub blobs: HashSet<Digest>,
}

impl Store {
    /// The manifests reachable from `roots` (an index's children included).
    fn closure(&self, roots: impl IntoIterator<Item = Digest>) -> Result<HashSet<Digest>> {
        let (mut seen, mut todo) = (HashSet::new(), roots.into_iter().collect::<Vec<_>>());
        while let Some(d) = todo.pop() {
            if seen.insert(d) {
                if let Some(m) = self.get_manifest(&d)? {
                    todo.extend(m.refs().map(|r| r.manifests).unwrap_or_default());
                }
            }
        }
        Ok(seen)
    }

    /// The blobs `manifests` reference (config and layers).
    fn blobs_of(&self, manifests: &HashSet<Digest>) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        for d in manifests {
            if let Some(Ok(r)) = self.get_manifest(d)?.map(|m| m.refs()) {
                out.extend(r.layers);
                out.extend(r.config);
            }
        }
        Ok(out)
    }

    /// Digests linked to `upstream/repo` in the link column family `cf`.
    fn linked(&self, cf: &str, upstream: &str, repo: &str) -> Result<HashSet<Digest>> {
        let prefix = keys::tag_key(upstream, repo, "");
        let mode = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        let mut out = HashSet::new();
        for item in self.db.iterator_cf(self.cf(cf)?, mode) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some((u, r, d)) = keys::decode_link_key(&k) {
                if u == upstream && r == repo {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    /// Whether any repository of any upstream links `d` in `cf`.
    fn linked_anywhere(&self, cf: &str, d: &Digest) -> Result<bool> {
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            if k.ends_with(d.as_bytes()) && keys::decode_link_key(&k).is_some_and(|l| l.2 == *d) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What purging `r` would touch: (tags to drop, manifests named).
    fn purge_roots(&self, r: &CacheRef) -> Result<(Vec<String>, Vec<Digest>)> {
        let (up, repo) = (r.upstream.as_str(), r.repo.as_str());
        Ok(match &r.selector {
            Selector::Tag(t) => match self.get_tag(up, repo, t.as_str())? {
                Some(rec) => (vec![t.as_str().to_string()], vec![rec.digest]),
                None => (Vec::new(), Vec::new()),
            },
            Selector::Digest(d) => (self.tags_pointing_at(up, repo, d)?, vec![*d]),
            Selector::Repository => {
                let tags = self
                    .tag_entries(up, repo)?
                    .into_iter()
                    .map(|t| t.tag)
                    .collect();
                (
                    tags,
                    self.linked(CF_MANIFEST_LINKS, up, repo)?
                        .into_iter()
                        .collect(),
                )
            }
        })
    }

    /// The digests a purge of `r` would delete outright (for the in-flight check).
    pub fn purge_plan(&self, r: &CacheRef) -> Result<Option<Plan>> {
        let (up, repo) = (r.upstream.as_str(), r.repo.as_str());
        let (tags, roots) = self.purge_roots(r)?;
        let linked = self.linked(CF_MANIFEST_LINKS, up, repo)?;
        let whole = r.selector == Selector::Repository;
        let linked_blobs = self.linked(CF_BLOB_LINKS, up, repo)?;
        if tags.is_empty()
            && !roots.iter().any(|d| linked.contains(d))
            && (!whole || linked_blobs.is_empty())
        {
            return Ok(None);
        }
        let gone: HashSet<&str> = tags.iter().map(String::as_str).collect();
        let kept_roots = self
            .tag_entries(up, repo)?
            .into_iter()
            .filter(|t| !gone.contains(t.tag.as_str()))
            .filter_map(|t| Digest::parse(&t.digest).ok());
        let keep = self.closure(kept_roots)?;
        let unlink: HashSet<Digest> = self.closure(roots)?.difference(&keep).copied().collect();
        let remaining: HashSet<Digest> = linked.difference(&unlink).copied().collect();
        let still = self.blobs_of(&remaining)?;
        let mut named = self.blobs_of(&unlink)?;
        if whole {
            named.extend(linked_blobs);
        }
        let blobs = named.difference(&still).copied().collect();
        Ok(Some(Plan {
            tags,
            unlink,
            blobs,
        }))
    }

    /// Purges `r` (see the module's invariants); `None` when nothing of it is cached.
    pub fn purge(&self, r: &CacheRef) -> Result<Option<Purged>> {
        let Some(Plan {
            tags,
            unlink,
            blobs,
        }) = self.purge_plan(r)?
        else {
            return Ok(None);
        };
        let (up, repo) = (r.upstream.as_str(), r.repo.as_str());
        let mut batch = rocksdb::WriteBatch::default();
        for t in &tags {
            batch.delete_cf(self.cf(CF_TAGS)?, keys::tag_key(up, repo, t));
        }
        for d in &unlink {
            batch.delete_cf(self.cf(CF_MANIFEST_LINKS)?, keys::link_key(up, repo, d));
        }
        for d in &blobs {
            batch.delete_cf(self.cf(CF_BLOB_LINKS)?, keys::link_key(up, repo, d));
        }
        self.db.write(batch)?;
        let mut out = Purged {
            tags,
            unlinked_manifests: unlink
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..Default::default()
        };
        for d in &out.unlinked_manifests {
            if !self.linked_anywhere(CF_MANIFEST_LINKS, d)? {
                let size = self.get_manifest(d)?.map_or(0, |m| m.bytes.len() as u64);
                self.remove_manifest(d, size)?;
                out.manifests.push(*d);
            }
        }
        for d in blobs.iter().copied().collect::<BTreeSet<_>>() {
            if self.linked_anywhere(CF_BLOB_LINKS, &d)? {
                continue;
            }
            if let Some(rec) = self.blob_record(&d)? {
                self.remove_blob(&d, rec.size)?;
                out.bytes += rec.size;
            }
            out.blobs.push(d);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests;

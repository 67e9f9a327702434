//! Expiry and quotas: `cache.max_idle` (what nobody asked for in that long goes) and
//! `upstream.max_size` (what one upstream's repositories may hold).
//!
//! Invariants:
//! - An idle sweep removes only blobs and manifests whose last access is older than the
//!   cutoff, never a pinned one; the tag resolutions pointing at a removed manifest go with
//!   it (the next pull by tag asks the upstream). Like eviction it deletes only committed
//!   files, and a client that already opened a blob keeps reading it.
//! - An upstream's usage counts every blob one of its repositories links: a blob linked by
//!   several upstreams counts against each of them. A quota pass drops the upstream's links
//!   to its least recently used blobs until its usage is under the target, and deletes a blob
//!   only when no upstream links it any more; a blob that stays (another upstream keeps it)
//!   is served again to this upstream's clients only after the upstream vouches for it
//!   again (the usual check of an unlinked digest). Pinned blobs are never touched.

use super::usage::{Evicted, Item};
use super::{keys, Store, CF_BLOB_LINKS};
use crate::error::Result;
use crate::oci::Digest;
use std::collections::{HashMap, HashSet};

/// What one upstream's repositories hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamUsage {
    pub bytes: u64,
    pub blobs: u64,
}

/// What a quota pass did for one upstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QuotaPass {
    /// Blobs no longer linked by the upstream, and their bytes.
    pub released: u64,
    pub released_bytes: u64,
    /// Of those, blobs no upstream linked any more: deleted.
    pub deleted: u64,
    pub deleted_bytes: u64,
}

/// Blob links: digest → the keys that link it, by upstream.
type LinkIndex = HashMap<Digest, HashMap<String, Vec<Vec<u8>>>>;

impl Store {
    /// Removes the blobs and manifests last accessed before `cutoff_s` (seconds since the
    /// epoch), except `keep`, and the tag resolutions of the removed manifests.
    pub fn evict_idle(&self, cutoff_s: u64, keep: &HashSet<Digest>) -> Result<Evicted> {
        let mut out = Evicted::default();
        for i in self.lru_items()? {
            if i.last_access_s >= cutoff_s {
                break;
            }
            if !keep.contains(&i.digest) {
                self.remove_item(&i, &mut out)?;
            }
        }
        out.tags = self.forget_tags_of(&out.manifests)?;
        Ok(out)
    }

    /// Every cached blob's links, by upstream (one scan of the blob links).
    fn link_index(&self) -> Result<LinkIndex> {
        let mut index: LinkIndex = HashMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_BLOB_LINKS)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some((up, _, d)) = keys::decode_link_key(&k) {
                index
                    .entry(d)
                    .or_default()
                    .entry(up)
                    .or_default()
                    .push(k.to_vec());
            }
        }
        Ok(index)
    }

    /// Bytes and blobs cached under each upstream's repositories (blobs whose file is
    /// cached; a blob linked by two upstreams counts for both).
    pub fn upstream_usage(&self) -> Result<HashMap<String, UpstreamUsage>> {
        let mut out: HashMap<String, UpstreamUsage> = HashMap::new();
        for (d, ups) in self.link_index()? {
            let Some(rec) = self.blob_record(&d)? else {
                continue;
            };
            for up in ups.keys() {
                let u = out.entry(up.clone()).or_default();
                u.bytes += rec.size;
                u.blobs += 1;
            }
        }
        Ok(out)
    }

    /// Brings `upstream`'s usage down to `target` bytes (see the module's invariants),
    /// least recently used blobs first, never one in `keep`.
    pub fn evict_upstream(
        &self,
        upstream: &str,
        target: u64,
        keep: &HashSet<Digest>,
    ) -> Result<QuotaPass> {
        let index = self.link_index()?;
        let mut usage = 0u64;
        let mut mine = Vec::new();
        for i in self.lru_items()? {
            let linked = index.get(&i.digest).and_then(|ups| ups.get(upstream));
            if i.kind == Item::Blob && linked.is_some() {
                usage += i.size;
                mine.push(i);
            }
        }
        let mut out = QuotaPass::default();
        for i in mine {
            if usage <= target {
                break;
            }
            if keep.contains(&i.digest) {
                continue;
            }
            let ups = &index[&i.digest];
            let mut batch = rocksdb::WriteBatch::default();
            for k in ups.get(upstream).into_iter().flatten() {
                batch.delete_cf(self.cf(CF_BLOB_LINKS)?, k);
            }
            self.db.write(batch)?;
            out.released += 1;
            out.released_bytes += i.size;
            if ups.len() == 1 {
                self.remove_blob(&i.digest, i.size)?;
                out.deleted += 1;
                out.deleted_bytes += i.size;
            }
            usage = usage.saturating_sub(i.size);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "expiry_tests.rs"]
mod tests;

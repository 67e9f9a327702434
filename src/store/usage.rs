//! Manifests as part of the cache's size: their bytes and last access, so that eviction
//! bounds blobs and manifests together under `cache.max_size` and takes the least recently
//! used of either.
//!
//! Invariants:
//! - The `manifest_use` column family holds (size, coarse last access) for the manifests in
//!   `manifests`; start-up reconciles the two (a record for every manifest, none without
//!   one) and counts the bytes. A manifest stored later is recorded when it is stored through
//!   the pull path ([`Store::note_manifest`]) or, for other paths, when it is first served.
//! - Last access is kept in memory on every hit and written with the blobs' (never once per
//!   request).
//! - Evicting a manifest removes its record, its usage record and the tag resolutions that
//!   point at it (a tag without its manifest would be fetched again by tag anyway); its
//!   repository links stay, and a later request fetches it again from the upstream under
//!   the usual authorization. Pinned manifests are never evicted.

use super::{keys, Store, CF_BLOBS, CF_MANIFESTS, CF_MANIFEST_USE, CF_TAGS};
use crate::error::Result;
use crate::oci::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Manifest bytes and count, and pending last accesses.
#[derive(Default)]
pub struct ManifestUsage {
    bytes: AtomicU64,
    count: AtomicU64,
    /// digest → (last access in seconds, size).
    pending: Mutex<HashMap<Digest, (u64, u64)>>,
}

/// What one eviction pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub blobs: u64,
    pub blob_bytes: u64,
    pub manifests: Vec<Digest>,
    pub manifest_bytes: u64,
    pub tags: u64,
}

impl Evicted {
    /// Blobs and manifests removed, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.blobs + self.manifests.len() as u64,
            self.blob_bytes + self.manifest_bytes,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Blob,
    Manifest,
}

/// A blob or manifest as eviction sees it.
#[derive(Debug, Clone)]
pub(super) struct LruItem {
    pub last_access_s: u64,
    pub digest: Digest,
    pub size: u64,
    pub kind: Item,
}

impl Store {
    /// (bytes, count) of the manifests recorded in the cache.
    pub fn manifest_totals(&self) -> (u64, u64) {
        (
            self.usage.bytes.load(Ordering::Relaxed),
            self.usage.count.load(Ordering::Relaxed),
        )
    }

    /// What `cache.max_size` bounds: blob bytes plus manifest bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.blob_totals().0 + self.manifest_totals().0
    }

    fn count_manifest(&self, size: u64, add: bool) {
        let change = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(if add {
                    v.saturating_add(n)
                } else {
                    v.saturating_sub(n)
                })
            });
        };
        change(&self.usage.bytes, size);
        change(&self.usage.count, 1);
    }

    /// Notes a manifest hit (written later, with the blobs' last accesses).
    pub fn touch_manifest(&self, digest: &Digest, size: u64) {
        if let Ok(mut m) = self.usage.pending.lock() {
            m.insert(*digest, (super::now_ms() / 1000, size));
        }
    }

    /// When the manifest `digest` was last served (seconds since the epoch), written or not.
    pub fn manifest_last_access(&self, digest: &Digest) -> Result<Option<u64>> {
        let pending = self
            .usage
            .pending
            .lock()
            .ok()
            .and_then(|m| m.get(digest).map(|e| e.0));
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_MANIFEST_USE)?, digest.as_bytes())?
            .and_then(|v| keys::decode_blob(&v))
            .map(|r| r.last_access_s);
        Ok(pending.max(stored))
    }

    /// Records the usage of a manifest just stored (blocking): counted once, accessed now.
    pub fn note_manifest(&self, digest: &Digest, size: u64) -> Result<()> {
        self.record_use(digest, super::now_ms() / 1000, size, false)
    }

    /// Writes or refreshes the usage record of `digest`; a new record is counted. With
    /// `if_stored`, only for a manifest that is in the `manifests` column family.
    fn record_use(&self, digest: &Digest, at: u64, size: u64, if_stored: bool) -> Result<()> {
        let cf = self.cf(CF_MANIFEST_USE)?;
        let old = self
            .db
            .get_pinned_cf(cf, digest.as_bytes())?
            .and_then(|v| keys::decode_blob(&v));
        if old.is_none()
            && if_stored
            && self
                .db
                .get_pinned_cf(self.cf(CF_MANIFESTS)?, digest.as_bytes())?
                .is_none()
        {
            return Ok(());
        }
        let rec = keys::BlobRecord {
            size: old.map_or(size, |r| r.size),
            last_access_s: old.map_or(at, |r| r.last_access_s.max(at)),
        };
        self.db
            .put_cf(cf, digest.as_bytes(), keys::encode_blob(&rec))?;
        if old.is_none() {
            self.count_manifest(rec.size, true);
        }
        Ok(())
    }

    /// Writes the pending manifest accesses (a manifest first seen here gets its record).
    pub(super) fn flush_manifest_access(&self) -> Result<()> {
        let pending = match self.usage.pending.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return Ok(()),
        };
        for (d, (at, size)) in pending {
            self.record_use(&d, at, size, true)?;
        }
        Ok(())
    }

    /// Start-up: a usage record for every manifest, none for a manifest that is gone, and
    /// the totals.
    pub(super) fn reconcile_manifests(&self) -> Result<()> {
        let (manifests, use_cf) = (self.cf(CF_MANIFESTS)?, self.cf(CF_MANIFEST_USE)?);
        let now = super::now_ms() / 1000;
        let (mut bytes, mut count) = (0u64, 0u64);
        let mut stored = HashSet::new();
        for item in self.db.iterator_cf(manifests, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let (Ok(raw), Some((_, body))) =
                (<[u8; 32]>::try_from(&k[..]), keys::decode_manifest(&v))
            else {
                continue;
            };
            let size = body.len() as u64;
            if self.db.get_pinned_cf(use_cf, raw)?.is_none() {
                let rec = keys::BlobRecord {
                    size,
                    last_access_s: now,
                };
                self.db.put_cf(use_cf, raw, keys::encode_blob(&rec))?;
            }
            stored.insert(raw);
            bytes += size;
            count += 1;
        }
        for item in self.db.iterator_cf(use_cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            let known = matches!(<[u8; 32]>::try_from(&k[..]), Ok(raw) if stored.contains(&raw));
            if !known {
                self.db.delete_cf(use_cf, &k)?;
            }
        }
        self.usage.bytes.store(bytes, Ordering::Relaxed);
        self.usage.count.store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Every blob and manifest with its last access and size, oldest first (at the same
    /// second a manifest before the blobs it names). Pending accesses are written first.
    pub(super) fn lru_items(&self) -> Result<Vec<LruItem>> {
        self.flush_access()?;
        let mut all: Vec<LruItem> = Vec::new();
        for (cf, kind) in [(CF_BLOBS, Item::Blob), (CF_MANIFEST_USE, Item::Manifest)] {
            for item in self
                .db
                .iterator_cf(self.cf(cf)?, rocksdb::IteratorMode::Start)
            {
                let (k, v) = item?;
                let (Ok(raw), Some(rec)) = (<[u8; 32]>::try_from(&k[..]), keys::decode_blob(&v))
                else {
                    continue;
                };
                all.push(LruItem {
                    last_access_s: rec.last_access_s,
                    digest: Digest::from_bytes(raw),
                    size: rec.size,
                    kind,
                });
            }
        }
        all.sort_by_key(|i| (i.last_access_s, i.kind == Item::Blob, i.digest));
        Ok(all)
    }

    /// Removes one blob or manifest, noting it in `out`.
    pub(super) fn remove_item(&self, i: &LruItem, out: &mut Evicted) -> Result<()> {
        match i.kind {
            Item::Blob => {
                self.remove_blob(&i.digest, i.size)?;
                out.blobs += 1;
                out.blob_bytes += i.size;
            }
            Item::Manifest => {
                self.remove_manifest(&i.digest, i.size)?;
                out.manifests.push(i.digest);
                out.manifest_bytes += i.size;
            }
        }
        Ok(())
    }

    /// Evicts the least recently accessed blobs and manifests, except `keep`, until blobs
    /// and manifests together take at most `target` bytes; then forgets the tag
    /// resolutions that pointed at an evicted manifest.
    pub fn evict_lru(&self, target: u64, keep: &HashSet<Digest>) -> Result<Evicted> {
        let mut total = self.cache_bytes();
        let mut out = Evicted::default();
        for i in self.lru_items()? {
            if total <= target {
                break;
            }
            if keep.contains(&i.digest) {
                continue;
            }
            self.remove_item(&i, &mut out)?;
            total = total.saturating_sub(i.size);
        }
        out.tags = self.forget_tags_of(&out.manifests)?;
        Ok(out)
    }

    pub(super) fn remove_manifest(&self, digest: &Digest, size: u64) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(self.cf(CF_MANIFESTS)?, digest.as_bytes());
        batch.delete_cf(self.cf(CF_MANIFEST_USE)?, digest.as_bytes());
        self.db.write(batch)?;
        self.count_manifest(size, false);
        Ok(())
    }

    /// Deletes the tag resolutions pointing at one of `gone`; returns how many.
    pub(super) fn forget_tags_of(&self, gone: &[Digest]) -> Result<u64> {
        if gone.is_empty() {
            return Ok(0);
        }
        let gone: HashSet<&Digest> = gone.iter().collect();
        let cf = self.cf(CF_TAGS)?;
        let mut batch = rocksdb::WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if keys::decode_tag(&v).is_some_and(|r| gone.contains(&r.digest)) {
                batch.delete_cf(cf, &k);
                n += 1;
            }
        }
        self.db.write(batch)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredManifest;
    use std::io::Write;

    fn manifest(s: &Store, body: &str, tag: &str) -> Digest {
        let m = StoredManifest {
            digest: Digest::of(body.as_bytes()),
            media_type: crate::oci::media::OCI_MANIFEST.to_string(),
            bytes: bytes::Bytes::copy_from_slice(body.as_bytes()),
        };
        let rec = keys::TagRecord {
            digest: m.digest,
            checked_at_ms: 1,
        };
        s.put_manifest("u", "r", &m, &Default::default(), Some((tag, rec)))
            .expect("put");
        s.note_manifest(&m.digest, m.bytes.len() as u64)
            .expect("note");
        m.digest
    }

    fn at(s: &Store, d: &Digest, t: u64) {
        let cf = s.cf(CF_MANIFEST_USE).expect("cf");
        let size = s.get_manifest(d).expect("get").expect("stored").bytes.len() as u64;
        let rec = keys::BlobRecord {
            size,
            last_access_s: t,
        };
        s.db.put_cf(cf, d.as_bytes(), keys::encode_blob(&rec))
            .expect("put");
    }

    #[test]
    fn manifests_are_counted_across_restarts_and_evicted_oldest_first_with_their_tags() {
        let dir = tempfile::tempdir().expect("tmp");
        let (old, new, blob) = {
            let s = Store::open(dir.path()).expect("store");
            let old = manifest(&s, &"o".repeat(100), "old");
            let new = manifest(&s, &"n".repeat(100), "new");
            let data = [7u8; 50];
            let blob = Digest::of(&data);
            let t = s.create_temp(&blob).expect("temp");
            (&*t.file).write_all(&data).expect("write");
            s.commit_blob(&t, &blob, 50).expect("commit");
            assert_eq!(s.manifest_totals(), (200, 2));
            assert_eq!(s.cache_bytes(), 250);
            (old, new, blob)
        };
        // A manifest stored without a usage record (an older version, another path) is
        // counted at start-up; a usage record without its manifest is dropped.
        {
            let s = Store::open(dir.path()).expect("reopen");
            s.db.delete_cf(s.cf(CF_MANIFEST_USE).expect("cf"), old.as_bytes())
                .expect("delete");
            let ghost = Digest::of(b"ghost");
            s.record_use(&ghost, 1, 999, false).expect("use");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.manifest_totals(), (200, 2));
        let now = crate::store::now_ms() / 1000;
        at(&s, &old, now - 30);
        at(&s, &new, now - 10);
        s.access.lock().expect("lock").insert(blob, now - 20);
        // Down to 150 bytes: the oldest (the `old` manifest) goes, with its tag.
        let e = s.evict_lru(150, &HashSet::new()).expect("evict");
        assert_eq!((e.blobs, e.manifests.clone(), e.tags), (0, vec![old], 1));
        assert!(s.get_manifest(&old).expect("get").is_none());
        assert!(s.get_tag("u", "r", "old").expect("tag").is_none());
        assert!(s.get_tag("u", "r", "new").expect("tag").is_some());
        assert_eq!(s.cache_bytes(), 150);
        // Kept digests stay whatever their age; the blob is next.
        let keep: HashSet<Digest> = [new].into_iter().collect();
        let e = s.evict_lru(0, &keep).expect("evict");
        assert_eq!((e.blobs, e.manifests.len()), (1, 0));
        assert_eq!(s.manifest_totals(), (100, 1));
    }
}

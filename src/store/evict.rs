//! Capacity: last-access tracking, eviction between watermarks, pins, and `fsck`.
//!
//! Invariants:
//! - Last access is recorded in memory on every hit and written to the `blobs` column family
//!   in batches (before every eviction pass and periodically), never once per request.
//! - Eviction removes least-recently-accessed blobs until the total is under the low
//!   watermark, never a pinned one. It only ever deletes committed files: a blob being
//!   filled is still under `tmp/`, and a client that already opened a blob keeps reading it
//!   through its file descriptor after the unlink.
//! - Manifests are evicted with the blobs, by the same last-access order (see `usage`); a
//!   blob or manifest evicted and asked for again is refetched.

use super::{keys, Store, CF_BLOBS, CF_TAGS};
use crate::config::Pin;
use crate::error::Result;
use crate::oci::Digest;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::Ordering;

/// What `fsck` found (and, with repair, fixed).
#[derive(Debug, Default)]
pub struct FsckReport {
    pub checked: u64,
    pub problems: Vec<String>,
    /// Not problems: states that start-up reconciles (a verified file whose record a crash
    /// did not let it write).
    pub notes: Vec<String>,
    pub repaired: u64,
}

impl Store {
    /// Notes a cache hit (flushed later by [`Store::flush_access`]).
    pub fn touch(&self, digest: &Digest) {
        if let Ok(mut m) = self.access.lock() {
            m.insert(*digest, super::now_ms() / 1000);
        }
    }

    /// Writes the pending last-access times.
    pub fn flush_access(&self) -> Result<()> {
        let pending: HashMap<Digest, u64> = match self.access.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return Ok(()),
        };
        let cf = self.cf(CF_BLOBS)?;
        let mut batch = rocksdb::WriteBatch::default();
        for (d, at) in pending {
            if let Some(mut rec) = self.blob_record(&d)? {
                rec.last_access_s = rec.last_access_s.max(at);
                batch.put_cf(cf, d.as_bytes(), keys::encode_blob(&rec));
            }
        }
        self.db.write(batch)?;
        self.flush_manifest_access()
    }

    /// Takes one blob of `size` bytes off the counters.
    fn forget(&self, size: u64) {
        let sub = |a: &std::sync::atomic::AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.blob_bytes, size);
        sub(&self.blob_count, 1);
    }

    /// Removes one blob: record first, then the file (a crash in between leaves a verified
    /// file without a record, which start-up records again), then the counters.
    pub(super) fn remove_blob(&self, digest: &Digest, size: u64) -> Result<()> {
        self.db.delete_cf(self.cf(CF_BLOBS)?, digest.as_bytes())?;
        match std::fs::remove_file(self.files.path(digest)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.forget(size);
        Ok(())
    }

    /// Evicts least-recently-accessed blobs and manifests, except `keep`, until their total
    /// is at most `target` bytes. Returns (blobs and manifests, bytes) removed.
    pub fn evict_to(&self, target: u64, keep: &HashSet<Digest>) -> Result<(u64, u64)> {
        Ok(self.evict_lru(target, keep)?.totals())
    }

    /// Every digest reachable from the cached tags that `pins` (`cache.pin`) name and from
    /// the pins set at run time (`pins`).
    pub fn pinned_digests(&self, pins: &[Pin]) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        let mut roots = self.runtime_pin_roots()?;
        let tags = self
            .db
            .iterator_cf(self.cf(CF_TAGS)?, rocksdb::IteratorMode::Start);
        // Without `cache.pin`, no tag needs reading.
        for item in tags.take(if pins.is_empty() { 0 } else { usize::MAX }) {
            let (k, v) = item?;
            let (Some((up, repo, tag)), Some(rec)) =
                (keys::decode_tag_key(&k), keys::decode_tag(&v))
            else {
                continue;
            };
            if pins.iter().any(|p| {
                p.upstream.eq_ignore_ascii_case(&up) && p.repo == repo && p.matches_tag(&tag)
            }) {
                roots.push(rec.digest);
            }
        }
        while let Some(d) = roots.pop() {
            if !out.insert(d) {
                continue;
            }
            if let Some(m) = self.get_manifest(&d)? {
                if let Ok(refs) = m.refs() {
                    out.extend(refs.layers);
                    out.extend(refs.config);
                    roots.extend(refs.manifests);
                }
            }
        }
        Ok(out)
    }

    /// Moves a blob that failed a check to `quarantine/` and forgets it.
    pub fn quarantine(&self, digest: &Digest) -> Result<()> {
        let size = self.blob_record(digest)?.map(|r| r.size);
        self.db.delete_cf(self.cf(CF_BLOBS)?, digest.as_bytes())?;
        let q = self.files.quarantine_dir();
        std::fs::create_dir_all(&q)?;
        match std::fs::rename(self.files.path(digest), q.join(digest.hex())) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(size) = size {
            self.forget(size);
        }
        Ok(())
    }

    /// Start-up reconciliation of the `blobs` records with the files (which are the truth: a
    /// file in `blobs/` was verified before it got there): records without a file are
    /// dropped, files without a record are recorded. Cheap: a directory walk and a stat per
    /// record, no hashing. Returns (dropped, added).
    pub(crate) fn reconcile(&self) -> Result<(u64, u64)> {
        let cf = self.cf(CF_BLOBS)?;
        let mut recorded = HashSet::new();
        let mut dropped = 0;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            let Ok(bytes) = <[u8; 32]>::try_from(&k[..]) else {
                continue;
            };
            let d = Digest::from_bytes(bytes);
            if self.files.exists(&d) {
                recorded.insert(d);
            } else {
                self.db.delete_cf(cf, d.as_bytes())?;
                dropped += 1;
            }
        }
        let mut added = 0;
        for dir in std::fs::read_dir(self.files.root())? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir)? {
                let path = file?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                    continue;
                };
                if recorded.contains(&d) {
                    continue;
                }
                let rec = keys::BlobRecord {
                    size: std::fs::metadata(&path)?.len(),
                    last_access_s: super::now_ms() / 1000,
                };
                self.db.put_cf(cf, d.as_bytes(), keys::encode_blob(&rec))?;
                added += 1;
            }
        }
        if dropped + added > 0 {
            tracing::info!(dropped, added, "reconciled blob records with the files");
        }
        Ok((dropped, added))
    }

    /// Verifies every blob file against its name and the records against the files. With
    /// `repair`, corrupt files go to `quarantine/`, records without a file are dropped and
    /// files without a record are recorded.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut on_disk: HashSet<Digest> = HashSet::new();
        let root = self.files.root();
        for dir in std::fs::read_dir(root)? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir)? {
                let path = file?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                report.checked += 1;
                let expected = Digest::parse(&format!("sha256:{name}")).ok();
                let actual = hash_file(&path)?;
                match expected {
                    Some(d) if d == actual => {
                        on_disk.insert(d);
                    }
                    _ => {
                        report.problems.push(format!(
                            "{}: content hashes to {actual}, not to its name",
                            path.display()
                        ));
                        if repair {
                            let q = self.files.quarantine_dir();
                            std::fs::create_dir_all(&q)?;
                            std::fs::rename(&path, q.join(&name))?;
                            if let Some(d) = expected {
                                let size = self.blob_record(&d)?.map(|r| r.size).unwrap_or(0);
                                self.db.delete_cf(self.cf(CF_BLOBS)?, d.as_bytes())?;
                                self.forget(size);
                            }
                            report.repaired += 1;
                        }
                    }
                }
            }
        }
        let mut recorded: HashSet<Digest> = HashSet::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_BLOBS)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            let Ok(bytes) = <[u8; 32]>::try_from(&k[..]) else {
                continue;
            };
            let d = Digest::from_bytes(bytes);
            recorded.insert(d);
            if !on_disk.contains(&d) && !self.files.exists(&d) {
                report
                    .problems
                    .push(format!("{d}: recorded, but its file is missing"));
                if repair {
                    self.db.delete_cf(self.cf(CF_BLOBS)?, d.as_bytes())?;
                    report.repaired += 1;
                }
            }
        }
        for d in on_disk.difference(&recorded) {
            report.notes.push(format!(
                "{d}: verified file without a record (recorded at start-up)"
            ));
            if repair {
                let size = std::fs::metadata(self.files.path(d))?.len();
                let rec = keys::BlobRecord {
                    size,
                    last_access_s: super::now_ms() / 1000,
                };
                self.db
                    .put_cf(self.cf(CF_BLOBS)?, d.as_bytes(), keys::encode_blob(&rec))?;
            }
        }
        Ok(report)
    }
}

fn hash_file(path: &std::path::Path) -> Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut h = crate::oci::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
#[path = "evict_tests.rs"]
mod tests;

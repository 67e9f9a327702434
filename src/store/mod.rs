//! The persistent cache: RocksDB metadata plus verified blob files.
//!
//! Column families:
//! - `manifests`: digest → media type + the manifest's exact bytes (never re-serialized).
//! - `tags`: (upstream, repo, tag) → digest + when it was last confirmed upstream.
//! - `blobs`: digest → size + coarse last access (for eviction).
//! - `blob_links`, `manifest_links`: (upstream, repo, digest) → (): the digest may be served
//!   as a blob (resp. a manifest) of that repository: the upstream served it so there, or a
//!   manifest of the repository references it in a field that its media type defines for
//!   blobs (resp. child manifests); see [`links`]. (Stores written before the split had one
//!   `links` table; [`migrate`] converts it once.)
//! - `authz`: (keyed credential hash, upstream, repo) → when the upstream last said whether that
//!   credential may pull that repository, and what it said (for serving while offline).
//!   Expired decisions are pruned ([`Store::prune_authz`]).
//! - `manifest_use`: digest → size + coarse last access of a stored manifest (manifests count
//!   in the cache's size and are evicted with the blobs: see [`usage`]).
//! - `pins`: `UPSTREAM/REPO:TAG` or `UPSTREAM/REPO@DIGEST` → when it was pinned at run time
//!   (`wharf cache pin`; see [`pins`]). Created on open, so an older data dir gets it empty.
//!
//! Invariants:
//! - Blob files are the truth for blobs: a blob is served only if its file exists under
//!   `blobs/` (see [`blobs`]), and such a file was verified when it was written.
//! - A manifest is recorded with its tag and links in one atomic write batch, and only after
//!   its bytes hashed to its digest.
//!
//! All methods are blocking (RocksDB point reads and writes, file syscalls): cheap enough for
//! point lookups on the async path; callers move bulk file work to blocking threads.

pub mod backend;
pub mod blobs;
pub mod catalog;
pub mod evict;
pub mod expiry;
pub mod inspect;
pub mod keys;
mod links;
pub use links::LinkKind;
mod migrate;
pub mod pins;
mod prune;
pub mod purge;
pub mod report;
pub mod s3;
mod unlink;
pub mod usage;

use crate::error::Result;
use crate::oci::Digest;
use blobs::{BlobFiles, TempBlob};
use keys::{BlobRecord, TagRecord};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};
use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const CF_MANIFESTS: &str = "manifests";
pub(crate) const CF_TAGS: &str = "tags";
pub(crate) const CF_BLOBS: &str = "blobs";
pub(crate) const CF_BLOB_LINKS: &str = "blob_links";
pub(crate) const CF_MANIFEST_LINKS: &str = "manifest_links";
const CF_AUTHZ: &str = "authz";
const CF_MANIFEST_USE: &str = "manifest_use";
const CF_PINS: &str = "pins";
const ALL_CFS: [&str; 8] = [
    CF_MANIFESTS,
    CF_TAGS,
    CF_BLOBS,
    CF_BLOB_LINKS,
    CF_MANIFEST_LINKS,
    CF_AUTHZ,
    CF_MANIFEST_USE,
    CF_PINS,
];

/// The credential id of imported content ([`Store::mark_imported`]): credential ids are
/// SHA-256 hashes, so no client has this one.
const IMPORTED: [u8; 32] = [0xff; 32];

pub struct Store {
    db: DB,
    files: BlobFiles,
    /// Keys credential hashes before they are written to disk (see [`Store::put_authz`]).
    secret: ring::hmac::Key,
    /// Bytes and count of recorded blobs (for the cache gauges).
    blob_bytes: std::sync::atomic::AtomicU64,
    blob_count: std::sync::atomic::AtomicU64,
    /// Last access times not yet written (see `evict`).
    access: std::sync::Mutex<std::collections::HashMap<Digest, u64>>,
    /// Manifest bytes and last accesses (see `usage`).
    usage: usage::ManifestUsage,
}

/// Reads `data_dir/secret` (32 random bytes, created with mode 0600 on first start).
fn load_or_create_secret(data_dir: &Path) -> Result<ring::hmac::Key> {
    use ring::rand::SecureRandom;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("secret");
    let bytes = match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => b,
        Ok(_) => {
            return Err(crate::error::Error::internal(format!(
                "{} is not 32 bytes; remove it to create a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = vec![0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| crate::error::Error::internal("no randomness for the secret"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&b)?;
            f.sync_all()?;
            b
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
}

/// A cached manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: bytes::Bytes,
}

impl StoredManifest {
    /// What the manifest references, read as the media type it was stored with.
    pub fn refs(
        &self,
    ) -> std::result::Result<crate::oci::manifest::ManifestRefs, crate::oci::manifest::ManifestError>
    {
        crate::oci::manifest::parse(&self.bytes, Some(&self.media_type))
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, reconciling the blob records
    /// with the files.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Store::open_with(data_dir, true)
    }

    /// As [`Store::open`]; `reconcile: false` leaves the records as they are (for `fsck`,
    /// which reports what it finds).
    pub fn open_with(data_dir: &Path, reconcile: bool) -> Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        let files = BlobFiles::open(data_dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        let meta = data_dir.join("meta");
        let legacy = migrate::has_legacy_links(&opts, &meta);
        let names = ALL_CFS
            .iter()
            .copied()
            .chain(legacy.then_some(migrate::CF_LEGACY_LINKS));
        let cfs = names.map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, &meta, cfs)?;
        let secret = load_or_create_secret(data_dir)?;
        let mut store = Store {
            db,
            files,
            secret,
            blob_bytes: Default::default(),
            blob_count: Default::default(),
            access: Default::default(),
            usage: Default::default(),
        };
        if legacy {
            store.migrate_links()?;
        }
        if reconcile {
            store.reconcile()?;
            store.reconcile_manifests()?;
        }
        let (mut bytes, mut count) = (0u64, 0u64);
        for item in store
            .db
            .iterator_cf(store.cf(CF_BLOBS)?, rocksdb::IteratorMode::Start)
        {
            let (_, v) = item?;
            if let Some(r) = keys::decode_blob(&v) {
                bytes += r.size;
                count += 1;
            }
        }
        store
            .blob_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        store
            .blob_count
            .store(count, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// A credential hash as it may be written to disk: keyed with this instance's secret,
    /// so a copy of `meta/` does not allow guessing passwords offline.
    fn persisted_id(&self, cred: &[u8; 32]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.secret, cred);
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| crate::error::Error::internal(format!("column family {name} missing")))
    }

    pub fn files(&self) -> &BlobFiles {
        &self.files
    }

    // ---- manifests and tags ----

    pub fn get_manifest(&self, digest: &Digest) -> Result<Option<StoredManifest>> {
        let cf = self.cf(CF_MANIFESTS)?;
        let Some(v) = self.db.get_pinned_cf(cf, digest.as_bytes())? else {
            return Ok(None);
        };
        Ok(
            keys::decode_manifest(&v).map(|(media_type, bytes)| StoredManifest {
                digest: *digest,
                media_type,
                bytes: bytes::Bytes::copy_from_slice(bytes),
            }),
        )
    }

    pub fn get_tag(&self, upstream: &str, repo: &str, tag: &str) -> Result<Option<TagRecord>> {
        let cf = self.cf(CF_TAGS)?;
        let v = self
            .db
            .get_pinned_cf(cf, keys::tag_key(upstream, repo, tag))?;
        Ok(v.and_then(|v| keys::decode_tag(&v)))
    }

    pub fn put_tag(&self, upstream: &str, repo: &str, tag: &str, rec: TagRecord) -> Result<()> {
        let cf = self.cf(CF_TAGS)?;
        self.db.put_cf(
            cf,
            keys::tag_key(upstream, repo, tag),
            keys::encode_tag(&rec),
        )?;
        Ok(())
    }

    // ---- imported content ----

    /// Marks `digests` as imported into `upstream/repo` (`wharf import`): they are served to
    /// anyone under that repository, whatever the upstream says. Stored beside the
    /// authorization decisions, under a credential id no client can have and a repository
    /// key no repository name can be (`repo@digest`).
    pub fn mark_imported(&self, upstream: &str, repo: &str, digests: &[Digest]) -> Result<()> {
        let rec = keys::AuthzRecord {
            checked_at_ms: now_ms(),
            allowed: true,
        };
        for d in digests {
            self.put_authz(&IMPORTED, upstream, &format!("{repo}@{d}"), rec)?;
        }
        Ok(())
    }

    /// Whether `digest` was imported into `upstream/repo`.
    pub fn is_imported(&self, upstream: &str, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .get_authz(&IMPORTED, upstream, &format!("{repo}@{digest}"))?
            .is_some_and(|r| r.allowed))
    }

    // ---- authorization decisions ----

    pub fn get_authz(
        &self,
        cred: &[u8; 32],
        upstream: &str,
        repo: &str,
    ) -> Result<Option<keys::AuthzRecord>> {
        let cf = self.cf(CF_AUTHZ)?;
        let id = self.persisted_id(cred);
        let v = self
            .db
            .get_pinned_cf(cf, keys::authz_key(&id, upstream, repo))?;
        Ok(v.and_then(|v| keys::decode_authz(&v)))
    }

    pub fn put_authz(
        &self,
        cred: &[u8; 32],
        upstream: &str,
        repo: &str,
        rec: keys::AuthzRecord,
    ) -> Result<()> {
        let cf = self.cf(CF_AUTHZ)?;
        let id = self.persisted_id(cred);
        self.db.put_cf(
            cf,
            keys::authz_key(&id, upstream, repo),
            keys::encode_authz(&rec),
        )?;
        Ok(())
    }

    // ---- blobs ----

    /// Opens a committed blob: the file and its length.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<(File, u64)>> {
        Ok(self.files.open_blob(digest)?)
    }

    pub fn create_temp(&self, digest: &Digest) -> Result<TempBlob> {
        Ok(self.files.create_temp(digest)?)
    }

    /// Commits a verified temp file and records the blob.
    pub fn commit_blob(&self, temp: &TempBlob, digest: &Digest, size: u64) -> Result<()> {
        self.files.commit(&temp.path, &temp.file, digest)?;
        temp.committed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let rec = BlobRecord {
            size,
            last_access_s: now_ms() / 1000,
        };
        let cf = self.cf(CF_BLOBS)?;
        let known = self.db.get_pinned_cf(cf, digest.as_bytes())?.is_some();
        self.db
            .put_cf(cf, digest.as_bytes(), keys::encode_blob(&rec))?;
        if !known {
            self.blob_bytes
                .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            self.blob_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// (bytes, count) of the blobs recorded in the cache.
    pub fn blob_totals(&self) -> (u64, u64) {
        (
            self.blob_bytes.load(std::sync::atomic::Ordering::Relaxed),
            self.blob_count.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, digest.as_bytes())?;
        Ok(v.and_then(|v| keys::decode_blob(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn committed_blob_is_readable_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let data = b"some layer bytes";
        let d = Digest::of(data);
        let t = s.create_temp(&d).expect("temp");
        (&*t.file).write_all(data).expect("write");
        s.commit_blob(&t, &d, data.len() as u64).expect("commit");
        let (_, len) = s.open_blob(&d).expect("io").expect("present");
        assert_eq!(len, data.len() as u64);
        assert_eq!(s.blob_record(&d).expect("rec").map(|r| r.size), Some(16));
    }
}

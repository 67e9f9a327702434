//! Blob files on disk.
//!
//! Invariant: a file exists at `blobs/sha256/<2 hex>/<hex>` only if its content was hashed
//! while it was written and the hash equalled `<hex>`. Files are born under `tmp/` (same
//! filesystem), and reach `blobs/` only through [`BlobFiles::commit`]: fsync the file, rename,
//! fsync the directory. Anything left in `tmp/` at start-up is a fill that never committed and
//! is deleted.

use crate::oci::Digest;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct BlobFiles {
    blobs: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
}

/// A temporary file being filled.
pub struct TempBlob {
    pub path: PathBuf,
    /// Shared so that clients can read the growing file (with positional reads) while the
    /// fill appends to it; the descriptor stays valid across the commit's rename.
    pub file: Arc<File>,
    /// Set once the file was renamed into `blobs/`; until then dropping the `TempBlob`
    /// removes the file, so a fill that times out, panics or is cancelled leaves nothing.
    pub committed: std::sync::atomic::AtomicBool,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.committed.load(Ordering::SeqCst) {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp file");
                }
            }
        }
    }
}

impl BlobFiles {
    /// Creates the directories and removes leftovers of fills that never committed.
    pub fn open(data_dir: &Path) -> io::Result<BlobFiles> {
        let blobs = data_dir.join("blobs").join("sha256");
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&blobs)?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(BlobFiles {
            blobs,
            tmp,
            counter: AtomicU64::new(0),
        })
    }

    /// `blobs/sha256/`.
    pub fn root(&self) -> &Path {
        &self.blobs
    }

    /// Where `fsck --repair` moves corrupt files.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.tmp.with_file_name("quarantine")
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// Opens a committed blob for reading: the file and its length, or `None`.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<Option<(File, u64)>> {
        match File::open(self.path(digest)) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// A new, empty, uniquely named file under `tmp/`, open for reading and writing.
    pub fn create_temp(&self, digest: &Digest) -> io::Result<TempBlob> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .tmp
            .join(format!("{}.{}.{}", digest.hex(), std::process::id(), n));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempBlob {
            path,
            file: Arc::new(file),
            committed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes a verified temp file the blob for `digest`: fsync, rename, fsync the directory.
    /// The caller has checked that the file's content hashes to `digest`.
    pub fn commit(&self, temp_path: &Path, file: &File, digest: &Digest) -> io::Result<()> {
        file.sync_all()?;
        let dest = self.path(digest);
        let dir = dest.parent().unwrap_or(&self.blobs);
        fs::create_dir_all(dir)?;
        fs::rename(temp_path, &dest)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Removes a temp file of a fill that failed; a missing file is not an error.
    pub fn discard(&self, temp_path: &Path) {
        if let Err(e) = fs::remove_file(temp_path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %temp_path.display(), error = %e, "could not remove temp file");
            }
        }
    }
}

/// Hashes `path` while copying it to `dest`'s directory as a temp file; renames it to
/// `dest` only if the hash is `digest`.
fn copy_verified(src: &Path, tmp: &Path, dest: &Path, digest: &Digest) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut input = File::open(src)?;
    let mut out = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let mut hasher = crate::oci::digest::Hasher::new();
    let mut buf = vec![0u8; 512 * 1024];
    let copied = (|| -> io::Result<()> {
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(super::backend::mismatch(digest, &actual));
        }
        out.sync_all()?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        fs::rename(tmp, dest)?;
        File::open(dir)?.sync_all()
    })();
    if copied.is_err() {
        let _ = fs::remove_file(tmp);
    }
    copied
}

#[async_trait::async_trait]
impl super::backend::BlobBackend for BlobFiles {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(digest)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn open(&self, digest: &Digest) -> io::Result<Option<(u64, super::backend::ByteStream)>> {
        let Some((file, len)) = self.open_blob(digest)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::from_std(file);
        let stream = futures_util::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
            match f.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buf.freeze()), f)),
                Err(e) => Some((Err(e), f)),
            }
        });
        Ok(Some((len, Box::pin(stream))))
    }

    async fn put_file(&self, digest: &Digest, path: &Path) -> io::Result<()> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{}.{}.put{}", digest.hex(), std::process::id(), n));
        let (src, dest, d) = (path.to_path_buf(), self.path(digest), *digest);
        tokio::task::spawn_blocking(move || copy_verified(&src, &tmp, &dest, &d))
            .await
            .map_err(io::Error::other)?
    }

    async fn delete(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let root = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for shard in fs::read_dir(&root)? {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for f in fs::read_dir(shard.path())? {
                    let f = f?;
                    let name = f.file_name();
                    let Some(d) = name
                        .to_str()
                        .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok())
                    else {
                        continue;
                    };
                    out.push((d, f.metadata()?.len()));
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn presign(
        &self,
        _digest: &Digest,
        _ttl: std::time::Duration,
    ) -> io::Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_filesystem_backend_passes_the_backend_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = tempfile::tempdir().expect("scratch");
        let files = BlobFiles::open(dir.path()).expect("open");
        crate::store::backend::suite::run(&files, scratch.path(), "fs").await;
        // Nothing is left in tmp/ by refused or finished puts.
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn commit_moves_a_temp_file_under_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = BlobFiles::open(dir.path()).expect("open");
        let data = b"hello blob";
        let digest = Digest::of(data);
        let t = files.create_temp(&digest).expect("temp");
        (&*t.file).write_all(data).expect("write");
        assert!(!files.exists(&digest));
        files.commit(&t.path, &t.file, &digest).expect("commit");
        assert!(files.exists(&digest));
        assert!(!t.path.exists());
        let (_, len) = files.open_blob(&digest).expect("io").expect("present");
        assert_eq!(len, data.len() as u64);
        let hex = digest.hex();
        assert!(files
            .path(&digest)
            .ends_with(format!("blobs/sha256/{}/{}", &hex[..2], hex)));
    }

    #[test]
    fn a_dropped_uncommitted_temp_file_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = BlobFiles::open(dir.path()).expect("open");
        let t = files.create_temp(&Digest::of(b"y")).expect("temp");
        let path = t.path.clone();
        assert!(path.exists());
        drop(t);
        assert!(!path.exists());
    }

    #[test]
    fn open_removes_leftover_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let digest = Digest::of(b"x");
        let leftover = {
            let files = BlobFiles::open(dir.path()).expect("open");
            let t = files.create_temp(&digest).expect("temp");
            let p = t.path.clone();
            // As if the process died: the TempBlob's destructor never runs.
            std::mem::forget(t);
            p
        };
        assert!(leftover.exists());
        let files = BlobFiles::open(dir.path()).expect("reopen");
        assert!(!leftover.exists());
        assert!(files.open_blob(&digest).expect("io").is_none());
    }
}

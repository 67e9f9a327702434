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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

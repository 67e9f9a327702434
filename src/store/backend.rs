//! The blob store behind one trait: the filesystem ([`super::blobs::BlobFiles`], a replica's
//! `data_dir`) and S3-compatible object storage ([`super::s3::S3Store`], shared by replicas).
//!
//! Invariant, kept by every implementation and checked by [`suite`]: a blob exists under
//! its final key only after its bytes were hashed and the hash equalled the digest
//! ([`BlobBackend::put_file`] hashes while it writes; a mismatch leaves nothing behind, not
//! even a partial object). A reader of a blob therefore sees all of its verified bytes or
//! nothing.

use crate::oci::Digest;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::io;
use std::path::Path;
use std::time::Duration;

/// A blob's bytes, in order.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[async_trait::async_trait]
pub trait BlobBackend: Send + Sync {
    /// `"filesystem"` or `"s3"`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// The size of the blob, or `None` when it is not stored.
    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// The blob's size and bytes, or `None` when it is not stored.
    async fn open(&self, digest: &Digest) -> io::Result<Option<(u64, ByteStream)>>;

    /// Stores the file at `path` as blob `digest`, hashing it as it is written. Fails with
    /// [`io::ErrorKind::InvalidData`] (and stores nothing) when the content does not hash
    /// to `digest`. Storing a blob that exists already succeeds.
    async fn put_file(&self, digest: &Digest, path: &Path) -> io::Result<()>;

    /// Removes the blob; a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> io::Result<()>;

    /// Every stored blob with its size.
    async fn list(&self) -> io::Result<Vec<(Digest, u64)>>;

    /// A URL that serves the blob for `ttl` without further authentication, when the
    /// backend can make one.
    async fn presign(&self, digest: &Digest, ttl: Duration) -> io::Result<Option<String>>;
}

/// The error for content that does not hash to the digest it was stored under.
pub fn mismatch(digest: &Digest, actual: &Digest) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("content hashes to {actual}, not {digest}"),
    )
}

/// Reads a whole [`ByteStream`] (tests and small objects).
pub async fn collect(mut s: ByteStream) -> io::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// The behaviour every [`BlobBackend`] must have, as one suite both backends run: the unit
/// tests run it on the filesystem, `tests/it` on a real Garage cluster.
pub mod suite {
    use super::*;

    fn assert_ok<T>(what: &str, r: io::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Runs every check against `b`, writing scratch files under `scratch`. Uses digests no
    /// other test shares (content salted with `salt`).
    pub async fn run(b: &dyn BlobBackend, scratch: &Path, salt: &str) {
        let small = format!("small blob {salt}").into_bytes();
        // Larger than one multipart part (8 MiB), not a multiple of it.
        let large: Vec<u8> = (0..(17 << 20) + 12345u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ salt.len() as u8)
            .collect();
        for (name, data) in [("small", &small), ("large", &large)] {
            let d = Digest::of(data);
            let path = scratch.join(format!("{salt}-{name}"));
            assert_ok("write scratch", std::fs::write(&path, data));
            assert_eq!(assert_ok("stat absent", b.stat(&d).await), None, "{name}");
            assert!(assert_ok("open absent", b.open(&d).await).is_none());
            assert_ok("put", b.put_file(&d, &path).await);
            assert_eq!(
                assert_ok("stat", b.stat(&d).await),
                Some(data.len() as u64),
                "{name}"
            );
            let (len, stream) = assert_ok("open", b.open(&d).await).expect("stored blob opens");
            assert_eq!(len, data.len() as u64);
            let got = assert_ok("read", collect(stream).await);
            assert!(got == *data, "{} read back differs ({name})", b.kind());
            // Storing it again is harmless.
            assert_ok("put again", b.put_file(&d, &path).await);
            let listed = assert_ok("list", b.list().await);
            assert!(
                listed.contains(&(d, data.len() as u64)),
                "{name} not listed by {}",
                b.kind()
            );
        }
        // Content that does not match its digest never appears, small or large.
        for name in ["small", "large"] {
            let claimed = Digest::of(format!("something else {salt} {name}").as_bytes());
            let path = scratch.join(format!("{salt}-{name}"));
            let e = b
                .put_file(&claimed, &path)
                .await
                .expect_err("mismatched content must be refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert_eq!(assert_ok("stat refused", b.stat(&claimed).await), None);
            assert!(!assert_ok("list", b.list().await)
                .iter()
                .any(|(x, _)| *x == claimed));
        }
        // A missing source file is an error, not an empty blob.
        let ghost = Digest::of(format!("ghost {salt}").as_bytes());
        assert!(b
            .put_file(&ghost, &scratch.join("does-not-exist"))
            .await
            .is_err());
        assert_eq!(assert_ok("stat ghost", b.stat(&ghost).await), None);
        // Delete, twice.
        let d = Digest::of(&small);
        assert_ok("delete", b.delete(&d).await);
        assert_ok("delete again", b.delete(&d).await);
        assert_eq!(assert_ok("stat deleted", b.stat(&d).await), None);
        assert!(assert_ok("open deleted", b.open(&d).await).is_none());
        let large_d = Digest::of(&large);
        assert_ok("delete large", b.delete(&large_d).await);
    }
}

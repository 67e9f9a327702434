//! S3-compatible object storage shared by replicas (`[storage] backend = "s3"`), through the
//! `object_store` crate (its SigV4 signing, multipart protocol and retries) over Wharf's own
//! hyper + rustls client ([`transport`]).
//!
//! Layout under the configured prefix:
//! - `blobs/sha256/<hex>`: a verified blob (see the invariant in [`super::backend`]). Small
//!   blobs are one `PUT` of hashed bytes; larger ones a multipart upload streamed from the
//!   local file, completed only once the whole file hashed to the digest (an incomplete
//!   multipart upload is invisible under its key, and is aborted on a mismatch).
//! - `manifests/sha256/<hex>`: `<media type>\n<exact manifest bytes>`; readers re-hash.
//! - `tags/<upstream>/<repo>/<tag>`: `<digest> <checked_at_ms>`.
//! - `links/<upstream>/<repo>/<digest>`: empty; the upstream served or referenced the digest
//!   under that repository.
//! - `authz/<upstream>/<repo>`: `<0|1> <checked_at_ms>`, anonymous decisions only: nothing
//!   derived from a credential is written to the bucket.

mod transport;

use super::backend::{mismatch, BlobBackend, ByteStream};
use crate::config::S3Config;
use crate::oci::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::io;
use std::path::Path;
use std::time::Duration;

/// Blobs up to this size are stored with one `PUT`; larger ones in parts of this size.
const PART: usize = 8 << 20;
/// Parts of one blob in flight at once.
const PART_CONCURRENCY: usize = 4;

pub struct S3Store {
    store: AmazonS3,
    prefix: Vec<String>,
    bucket: String,
}

fn to_io(e: object_store::Error) -> io::Error {
    io::Error::from(e)
}

impl S3Store {
    pub fn new(cfg: &S3Config) -> Result<S3Store, String> {
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", cfg.region));
        let store = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_endpoint(&endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key)
            .with_retry(object_store::RetryConfig {
                backoff: Default::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            })
            .with_http_connector(
                transport::Connector::new(cfg.ca_file.as_deref())
                    .map_err(|e| format!("storage.ca_file: {e}"))?,
            )
            .build()
            .map_err(|e| format!("storage: {e}"))?;
        Ok(S3Store {
            store,
            prefix: cfg
                .prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            bucket: cfg.bucket.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object path of `parts` under the prefix (each part may contain `/`).
    fn path(&self, parts: &[&str]) -> ObjPath {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain(parts.iter().flat_map(|p| p.split('/')))
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn blob_path(&self, d: &Digest) -> ObjPath {
        self.path(&["blobs", "sha256", &d.hex()])
    }

    /// A small record, or `None`.
    pub async fn get_record(&self, parts: &[&str]) -> io::Result<Option<Bytes>> {
        match self.store.get(&self.path(parts)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(to_io)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    /// Whether a record exists.
    pub async fn has_record(&self, parts: &[&str]) -> io::Result<bool> {
        match self.store.head(&self.path(parts)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(to_io(e)),
        }
    }

    /// Writes a small record (atomically: one `PUT`).
    pub async fn put_record(&self, parts: &[&str], value: Bytes) -> io::Result<()> {
        self.store
            .put(&self.path(parts), PutPayload::from(value))
            .await
            .map(|_| ())
            .map_err(to_io)
    }

    async fn put_small(&self, digest: &Digest, path: &Path) -> io::Result<()> {
        let data = tokio::fs::read(path).await?;
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(mismatch(digest, &actual));
        }
        self.store
            .put(&self.blob_path(digest), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(to_io)
    }

    async fn put_multipart(&self, digest: &Digest, path: &Path) -> io::Result<()> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await?;
        let upload = self
            .store
            .put_multipart(&self.blob_path(digest))
            .await
            .map_err(to_io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut hasher = crate::oci::digest::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let streamed: io::Result<()> = async {
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(to_io)?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        let verdict = streamed.and_then(|()| {
            let actual = hasher.finish();
            if actual == *digest {
                Ok(())
            } else {
                Err(mismatch(digest, &actual))
            }
        });
        match verdict {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(to_io),
            Err(e) => {
                if let Err(a) = writer.abort().await {
                    tracing::warn!(digest = %digest, error = %a, "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl BlobBackend for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match self.store.head(&self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn open(&self, digest: &Digest) -> io::Result<Option<(u64, ByteStream)>> {
        match self.store.get(&self.blob_path(digest)).await {
            Ok(r) => {
                let len = r.meta.size;
                let s = r.into_stream().map(|c| c.map_err(to_io));
                Ok(Some((len, Box::pin(s))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn put_file(&self, digest: &Digest, path: &Path) -> io::Result<()> {
        let len = tokio::fs::metadata(path).await?.len();
        if len <= PART as u64 {
            self.put_small(digest, path).await
        } else {
            self.put_multipart(digest, path).await
        }
    }

    async fn delete(&self, digest: &Digest) -> io::Result<()> {
        match self.store.delete(&self.blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let prefix = self.path(&["blobs", "sha256"]);
        let mut s = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            let m = m.map_err(to_io)?;
            if let Some(d) = m
                .location
                .filename()
                .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok())
            {
                out.push((d, m.size));
            }
        }
        Ok(out)
    }

    async fn presign(&self, digest: &Digest, ttl: Duration) -> io::Result<Option<String>> {
        use object_store::signer::Signer;
        let url = self
            .store
            .signed_url(::http::Method::GET, &self.blob_path(digest), ttl)
            .await
            .map_err(to_io)?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let bad = dir.path().join("storage-ca.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let cfg = S3Config {
            bucket: "b".into(),
            endpoint: Some("https://127.0.0.1:1".into()),
            region: "r".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            path_style: true,
            prefix: String::new(),
            redirect: false,
            ca_file: Some(bad),
        };
        let e = S3Store::new(&cfg).err().expect("a bad ca_file is an error");
        assert!(
            e.starts_with("storage.ca_file: ") && e.contains("storage-ca.pem"),
            "{e}"
        );
    }
}

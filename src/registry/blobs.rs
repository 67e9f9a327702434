//! [`Blobs`]: blob requests, answered from the local cache, from a fill in progress, from a
//! fill this request starts (reading the shared bucket, the digest's owner replica or the
//! upstream), or with a redirect to the bucket.
//!
//! Invariant (with [`Access`]): a blob reaches a client only after the client was authorized
//! for the repository and the digest is linked to it, or the upstream just served it to
//! that client's credentials (the leader of a fill from the upstream or the owner).

use super::access::Access;
use super::bucket::Bucket;
use super::fill::{Fill, Fills, Origin, Source};
use super::served::Outcome;
use super::target::{content_length, Target};
use crate::auth::Client;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::oci::{Digest, ErrorCode};
use crate::store::Store;
use http::{HeaderMap, Method};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

/// How long a pre-signed blob URL stays valid.
pub const REDIRECT_TTL: Duration = Duration::from_secs(300);

/// How a blob request will be answered.
pub enum Blob {
    /// From a committed file.
    Cached { file: Arc<File>, len: u64 },
    /// From a fill in progress (`size` when the upstream sent `Content-Length`).
    Filling {
        fill: Arc<Fill>,
        size: Option<u64>,
        leader: bool,
    },
    /// A `HEAD` answered without a body.
    Head { size: Option<u64> },
    /// A `307` to a pre-signed URL of the shared bucket.
    Redirect { url: String },
}

impl Blob {
    /// How the request was answered.
    pub fn outcome(&self) -> Outcome {
        match self {
            Blob::Cached { .. } | Blob::Redirect { .. } => Outcome::Hit,
            Blob::Filling { leader: true, .. } | Blob::Head { .. } => Outcome::Miss,
            Blob::Filling { leader: false, .. } => Outcome::Coalesced,
        }
    }
}

/// Blobs, cached and filled.
pub struct Blobs {
    store: Arc<Store>,
    access: Arc<Access>,
    fills: Arc<Fills>,
    bucket: Option<Arc<Bucket>>,
    cluster: Option<Arc<Cluster>>,
}

impl Blobs {
    pub fn new(
        store: Arc<Store>,
        access: Arc<Access>,
        fills: Arc<Fills>,
        bucket: Option<Arc<Bucket>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Blobs {
        Blobs {
            store,
            access,
            fills,
            bucket,
            cluster,
        }
    }

    pub fn fills(&self) -> &Arc<Fills> {
        &self.fills
    }

    /// Whether a request's `wharf-peer` value says this replica sent it (it reached itself
    /// under an address it did not know as its own).
    pub fn from_itself(&self, peer_header: &[u8]) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.is_own(peer_header))
    }

    /// A blob: from the cache, from a fill in progress, or from a fill this call starts. For
    /// `head`, a miss asks the upstream for the size without starting a download.
    pub async fn blob(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        head: bool,
    ) -> Result<Blob> {
        // What the client presented (for an owner replica); `client` becomes the one the
        // upstream sees.
        let presented = &client.creds;
        let client = &t.upstream.effective_client(client);
        if let Some(b) = self.cached(digest).await? {
            self.access.authorize_blob(t, client, digest).await?;
            return Ok(b);
        }
        let (via, shared_size) = if self.fills.in_progress(digest).is_some() {
            (Origin::Upstream, None)
        } else {
            self.source(t, digest).await
        };
        if via == Origin::Shared {
            // Bytes from the bucket carry no upstream verdict: authorize first.
            self.access.authorize_blob(t, client, digest).await?;
            if head {
                return Ok(Blob::Head { size: shared_size });
            }
            if let Some(url) = self.presigned(t, digest).await {
                return Ok(Blob::Redirect { url });
            }
        }
        if head && self.fills.in_progress(digest).is_none() {
            return self.head_upstream(t, client, digest).await;
        }
        let source = Source {
            upstream: t.upstream.clone(),
            repo: t.repo.clone(),
            creds: t.upstream.creds_for(client),
            via,
            peer_creds: presented.clone(),
        };
        self.via_fill(t, client, digest, head, source).await
    }

    /// Where a fill of `digest` should read first, and the size when the bucket has it.
    async fn source(&self, t: &Target, digest: &Digest) -> (Origin, Option<u64>) {
        if let Some(b) = &self.bucket {
            if let Some(size) = b.blob_size(digest).await {
                return (Origin::Shared, Some(size));
            }
        }
        if !t.via_peer {
            if let Some(owner) = self.cluster.as_ref().and_then(|c| c.owner(digest)) {
                return (Origin::Peer(owner), None);
            }
        }
        (Origin::Upstream, None)
    }

    /// A pre-signed URL of the bucket's copy, when the bucket answers GETs that way (never
    /// for a peer replica, which needs the bytes).
    async fn presigned(&self, t: &Target, digest: &Digest) -> Option<String> {
        use crate::store::backend::BlobBackend;
        let b = self
            .bucket
            .as_ref()
            .filter(|b| b.redirects() && !t.via_peer)?;
        match b.s3().presign(digest, REDIRECT_TTL).await {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(digest = %digest, error = %e, "cannot pre-sign a URL; serving the blob itself");
                None
            }
        }
    }

    /// A `HEAD` of a blob nobody is filling: the upstream's size, asked with the client's
    /// credentials.
    async fn head_upstream(&self, t: &Target, client: &Client, digest: &Digest) -> Result<Blob> {
        let tail = format!("blobs/{digest}");
        let resp = self
            .access
            .send_as(
                t,
                client,
                Method::HEAD,
                &tail,
                &HeaderMap::new(),
                ErrorCode::BlobUnknown,
            )
            .await?;
        Ok(Blob::Head {
            size: content_length(resp.headers()),
        })
    }

    /// Joins the digest's fill or starts one, and waits until it streams.
    async fn via_fill(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        head: bool,
        source: Source,
    ) -> Result<Blob> {
        let from_upstream = source.via == Origin::Upstream;
        // A joined fill that fails before streaming failed for its leader (its upstream,
        // repository or credentials): this client then tries once with its own.
        let mut joined_failure = false;
        loop {
            let (fill, leader) = match self.fills.join_or_start(*digest, source.clone())? {
                None => {
                    self.access.authorize_blob(t, client, digest).await?;
                    return self
                        .cached(digest)
                        .await?
                        .ok_or_else(|| Error::internal("committed blob vanished"));
                }
                Some(f) => f,
            };
            if !leader {
                self.access.authorize_blob(t, client, digest).await?;
            }
            let size = match fill.started().await {
                Ok(size) => size,
                // (Not when Wharf itself is at `fill.max_concurrent`: another fill would wait
                // for a slot as long again.)
                Err(e) if !leader && !joined_failure && !is_busy(&e) => {
                    tracing::debug!(digest = %digest, error = %e, "joined fill failed; fetching with this client's own request");
                    joined_failure = true;
                    continue;
                }
                Err(e) => {
                    if let Error::Upstream { status, .. } = &e {
                        if leader && matches!(status.as_u16(), 401 | 403) {
                            self.access.record(t, client, false).await?;
                        }
                    }
                    return Err(e);
                }
            };
            if leader && from_upstream {
                // The upstream just served this client. (An owner replica may have served it
                // from an import or under the offline rule: that is no upstream verdict.)
                self.access.record(t, client, true).await?;
            }
            if head {
                return Ok(Blob::Head { size });
            }
            if size == Some(0) {
                // Nothing to hold back for an empty body: wait for the verification.
                fill.verified().await?;
            }
            return Ok(Blob::Filling { fill, size, leader });
        }
    }

    /// The committed file of `digest`, if its length matches the record.
    pub async fn cached(&self, digest: &Digest) -> Result<Option<Blob>> {
        let store = self.store.clone();
        let d = *digest;
        // The cheap check on the serving path: the file's length against the record (a full
        // hash of every served blob is `fsck`'s job). A mismatch is quarantined and refetched.
        let opened = tokio::task::spawn_blocking(move || match store.open_blob(&d)? {
            Some((file, len)) => match store.blob_record(&d)? {
                Some(rec) if rec.size != len => {
                    tracing::error!(digest = %d, on_disk = len, recorded = rec.size, "cached blob has the wrong length; quarantined, fetching it again");
                    store.quarantine(&d)?;
                    Ok(None)
                }
                _ => Ok(Some((file, len))),
            },
            None => Ok(None),
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e: Error| e)?;
        if opened.is_some() {
            self.store.touch(digest);
        }
        Ok(opened.map(|(file, len)| Blob::Cached {
            file: Arc::new(file),
            len,
        }))
    }
}

/// Whether a fill failed for want of a download slot (`fill.max_concurrent`), or the upstream
/// is rate-limiting: either way, a second fill now would fare no better.
fn is_busy(e: &Error) -> bool {
    matches!(
        e,
        Error::Upstream {
            code: ErrorCode::TooManyRequests,
            ..
        }
    )
}

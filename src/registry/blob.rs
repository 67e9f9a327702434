//! Blob requests: from the local cache, from a fill in progress, from a fill this request
//! starts (reading the shared bucket, the digest's owner replica or the upstream), or a
//! redirect to the bucket.
//!
//! Invariant (with `access`): a blob reaches a client only after the client was authorized
//! for the repository and the digest is linked to it, or the upstream just served it to
//! that client's credentials (the leader of a fill from the upstream or the owner).

use super::{content_length, fill, origin, Blob, Registry, Target, REDIRECT_TTL};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::{Digest, ErrorCode};
use http::{HeaderMap, Method};
use std::sync::Arc;

impl Registry {
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
        if let Some(b) = self.cached_blob(digest).await? {
            self.authorize_blob(t, client, digest).await?;
            return Ok(b);
        }
        let creds = t.upstream.creds_for(client);
        let (via, shared_size) = if self.fills.in_progress(digest).is_some() {
            (origin::Via::Upstream, None)
        } else {
            self.blob_source(t, digest).await
        };
        if via == origin::Via::Shared {
            // Bytes from the bucket carry no upstream verdict: authorize first.
            self.authorize_blob(t, client, digest).await?;
            if head {
                return Ok(Blob::Head { size: shared_size });
            }
            if self.redirect && !t.via_peer {
                if let Some(b) = &self.shared {
                    use crate::store::backend::BlobBackend;
                    match b.presign(digest, REDIRECT_TTL).await {
                        Ok(Some(url)) => return Ok(Blob::Redirect { url }),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(digest = %digest, error = %e, "cannot pre-sign a URL; serving the blob itself")
                        }
                    }
                }
            }
        }
        if head && self.fills.in_progress(digest).is_none() {
            let tail = format!("blobs/{digest}");
            let resp = self
                .send_as(
                    t,
                    client,
                    Method::HEAD,
                    &tail,
                    &HeaderMap::new(),
                    ErrorCode::BlobUnknown,
                )
                .await?;
            return Ok(Blob::Head {
                size: content_length(resp.headers()),
            });
        }
        // A joined fill that fails before streaming failed for its leader (its upstream,
        // repository or credentials): this client then tries once with its own.
        let mut joined_failure = false;
        loop {
            let source = fill::Source {
                upstream: t.upstream.clone(),
                repo: t.repo.clone(),
                creds: creds.clone(),
                via: via.clone(),
                peer_creds: presented.clone(),
            };
            let (fill, leader) = match self.fills.join_or_start(*digest, source)? {
                None => {
                    self.authorize_blob(t, client, digest).await?;
                    return self
                        .cached_blob(digest)
                        .await?
                        .ok_or_else(|| Error::internal("committed blob vanished"));
                }
                Some(f) => f,
            };
            if !leader {
                self.authorize_blob(t, client, digest).await?;
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
                            self.record(t, client, false).await?;
                        }
                    }
                    return Err(e);
                }
            };
            if leader && via == origin::Via::Upstream {
                // The upstream just served this client. (An owner replica may have served it
                // from an import or under the offline rule: that is no upstream verdict.)
                self.record(t, client, true).await?;
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

    pub(super) async fn cached_blob(&self, digest: &Digest) -> Result<Option<Blob>> {
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

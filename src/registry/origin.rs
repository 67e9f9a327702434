//! Where a fill's bytes come from, and what a fill owes the shared bucket afterwards.
//!
//! A fill reads, in the order its caller chose ([`Via`]): the shared bucket (the blob was
//! stored there, verified, by some replica), the digest's owner replica (which runs the one
//! upstream fetch for the cluster), or the upstream. Whatever the origin, the bytes go
//! through the same hashing and verification in [`super::fill`]: a bucket or a peer is
//! trusted no more than an upstream.
//!
//! Invariants:
//! - A failing bucket or peer never fails the fill by itself: before the first byte, the
//!   fill falls back to the upstream; after it, the upstream is asked for the rest
//!   (`Range`), and the hash runs on across both.
//! - An owner that cannot be reached is marked down, and one that turns out to be this
//!   replica is left out; the digest then goes to the next owner in its ranking (the same on
//!   every replica that knows), so a dead owner does not make each replica fetch the blob
//!   from the upstream. An owner that answers but does not serve (slow, refusing) is not
//!   passed over: the fill fetches from the upstream itself.
//! - Only a fill whose bytes (some of them) came from the upstream writes to the bucket
//!   (the blob, after its local commit, and its repository link), so a blob is uploaded
//!   once per cluster, by the replica that fetched it.
//! - A blob that reached a live replica ends up in the bucket even when the replica that
//!   fetched it dies before its upload (which runs after the clients got their bytes): a
//!   replica that filled a blob wholly from its owner watches the bucket ([`Fills::backstop`])
//!   and uploads the blob and its link itself once the owner stops answering, or once the
//!   owner's upload is overdue ([`backstop_after`]). Several replicas may then upload the
//!   same verified bytes under the same key: that costs bucket traffic, never correctness.

use super::fill::{Fills, Source};
use crate::error::{Error, Result};
use crate::metrics::{BucketOp, FillResult, Relay};
use crate::oci::{Digest, ErrorCode};
use crate::store::backend::BlobBackend;
use crate::store::LinkKind;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where a fill should read from first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Upstream,
    /// The shared bucket holds the blob.
    Shared,
    /// This peer owns the digest.
    Peer(String),
}

/// Where a fill's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Upstream,
    Shared,
    /// This peer (its base URL) served them.
    Peer(String),
}

/// How many owners a fill asks before it fetches from the upstream itself.
const MAX_OWNER_TRIES: usize = 3;

/// A fill's byte source, whatever it is.
pub type FillBody = UnsyncBoxBody<Bytes, String>;

impl Fills {
    /// Opens the fill's source: its size when known, its body and where it came from.
    pub(super) async fn open_source(
        &self,
        digest: &Digest,
        src: &Source,
        deadline: tokio::time::Instant,
    ) -> Result<(Option<u64>, FillBody, Origin)> {
        let m = &self.metrics;
        match &src.via {
            Via::Upstream => {}
            Via::Shared => {
                if let Some(shared) = &self.shared {
                    let opened =
                        tokio::time::timeout(super::shared::LOOKUP_TIMEOUT, shared.open(digest))
                            .await
                            .unwrap_or_else(|_| {
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "the bucket did not answer in time",
                                ))
                            });
                    match opened {
                        Ok(Some((len, stream))) => {
                            m.shared_fill(Relay::Served);
                            let body = http_body_util::StreamBody::new(stream.map(|c| {
                                c.map(hyper::body::Frame::data).map_err(|e| e.to_string())
                            }));
                            return Ok((Some(len), body.boxed_unsync(), Origin::Shared));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            m.shared_store_error(BucketOp::Get);
                            tracing::warn!(digest = %digest, error = %e, "cannot read the blob from the bucket; fetching it upstream");
                        }
                    }
                    m.shared_fill(Relay::Fallback);
                }
            }
            Via::Peer(owner) => {
                if let Some(cluster) = &self.cluster {
                    let mut peer = owner.clone();
                    // An owner found down (or found to be this replica) leaves the digest to
                    // the next in its ranking, on which every replica that knows agrees;
                    // each try takes one member out, and there are at most MAX_OWNER_TRIES.
                    for attempt in 1..=MAX_OWNER_TRIES {
                        let fetched = cluster
                            .fetch_blob(
                                &peer,
                                src.upstream.name(),
                                src.repo.as_str(),
                                digest,
                                &src.peer_creds,
                                self.idle_timeout(),
                            )
                            .await;
                        let e = match fetched {
                            Ok(resp) => {
                                m.peer_fill(Relay::Served);
                                let size = super::content_length(resp.headers());
                                let body = resp.into_body().map_err(|e| e.to_string());
                                return Ok((size, body.boxed_unsync(), Origin::Peer(peer)));
                            }
                            Err(e) => e,
                        };
                        if e.unreachable {
                            cluster.mark_down(&peer, &e.message);
                        }
                        match cluster.owner(digest) {
                            Some(next) if next != peer && attempt < MAX_OWNER_TRIES => {
                                tracing::info!(digest = %digest, error = %e.message, next = %next, "the owner replica did not serve the blob; asking the next owner");
                                peer = next;
                            }
                            _ => {
                                tracing::info!(digest = %digest, error = %e.message, "the owner replica did not serve the blob; fetching it upstream");
                                break;
                            }
                        }
                    }
                    m.peer_fill(Relay::Fallback);
                }
            }
        }
        let (size, body) = self.resume(digest, src, deadline, 0).await?;
        Ok((size, body, Origin::Upstream))
    }

    /// GETs the blob from the upstream from byte `at` on (a `Range` request when `at > 0`,
    /// which must be answered with a `206` starting there): the whole blob's size when
    /// known, and the body.
    pub(super) async fn resume(
        &self,
        digest: &Digest,
        src: &Source,
        deadline: tokio::time::Instant,
        at: u64,
    ) -> Result<(Option<u64>, FillBody)> {
        let up = src.upstream.name();
        let timed_out = || Error::unreachable(up, "blob fetch exceeded the fill timeout");
        let mut headers = HeaderMap::new();
        if at > 0 {
            let range =
                http::HeaderValue::from_str(&format!("bytes={at}-")).map_err(Error::internal)?;
            headers.insert(http::header::RANGE, range);
        }
        let resp = tokio::time::timeout_at(
            deadline,
            src.upstream.send(
                Method::GET,
                &src.repo,
                &format!("blobs/{digest}"),
                &headers,
                &src.creds,
            ),
        )
        .await
        .map_err(|_| timed_out())??;
        let size = match (at, resp.status()) {
            (0, StatusCode::OK) => super::content_length(resp.headers()),
            (_, StatusCode::PARTIAL_CONTENT) => {
                let total = resp
                    .headers()
                    .get(http::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_content_range(v, at));
                match total {
                    Some(t) => t,
                    None => {
                        return Err(Error::unreachable(
                            up,
                            format!("the upstream did not resume the blob at byte {at}"),
                        ))
                    }
                }
            }
            (_, status) => {
                return Err(super::upstream_error(
                    up,
                    status,
                    resp.headers(),
                    ErrorCode::BlobUnknown,
                ))
            }
        };
        let body = resp.into_body().map_err(|e| e.to_string());
        Ok((size, body.boxed_unsync()))
    }

    /// After an upstream fill verified its blob: the repository link and the blob go to the
    /// bucket, in the background (counted, so shutdown can wait for them). The blob is read
    /// from the local cache, or from `oversized`, the verified temp file of a blob too large
    /// for it (removed once the upload is done).
    pub(super) fn share(
        self: &Arc<Self>,
        digest: Digest,
        up: &str,
        repo: &str,
        oversized: Option<Arc<crate::store::blobs::TempBlob>>,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let (fills, up, repo) = (self.clone(), up.to_string(), repo.to_string());
        self.sharing.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let link = super::shared::link_key(LinkKind::Blob, &up, &repo, &digest);
            let parts: Vec<&str> = link.iter().map(String::as_str).collect();
            if let Err(e) = shared.put_record(&parts, Bytes::new()).await {
                fills.metrics.shared_store_error(BucketOp::Put);
                tracing::warn!(digest = %digest, error = %e, "cannot write the blob's link to the bucket");
            }
            let path = match &oversized {
                Some(t) => t.path.clone(),
                None => fills.store.files().path(&digest),
            };
            match shared.stat(&digest).await {
                Ok(Some(_)) => {}
                _ => {
                    if let Err(e) = shared.put_file(&digest, &path).await {
                        fills.metrics.shared_store_error(BucketOp::Put);
                        tracing::warn!(digest = %digest, error = %e, "cannot upload the blob to the bucket; other replicas will fetch it themselves");
                    } else {
                        tracing::debug!(digest = %digest, "blob uploaded to the bucket");
                    }
                }
            }
            drop(oversized);
            fills.sharing.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// After a fill that `owner` served whole (see the module's invariants): waits, in the
    /// background, until the bucket holds the blob; uploads it (and its link) itself when
    /// the owner stops answering or [`backstop_after`] passes first. The wait is not counted
    /// in `sharing` (shutdown does not wait for it), and holds the fills only weakly (a
    /// replica shut down meanwhile does not keep its store open); the upload is counted.
    pub(super) fn backstop(
        self: &Arc<Self>,
        digest: Digest,
        size: u64,
        up: &str,
        repo: &str,
        owner: &str,
        oversized: Option<Arc<crate::store::blobs::TempBlob>>,
    ) {
        let (Some(shared), Some(cluster)) = (self.shared.clone(), self.cluster.clone()) else {
            return;
        };
        let (fills, up, repo, owner) = (
            Arc::downgrade(self),
            up.to_string(),
            repo.to_string(),
            owner.to_string(),
        );
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + backstop_after(size);
            let in_bucket = || async {
                matches!(
                    tokio::time::timeout(super::shared::LOOKUP_TIMEOUT, shared.stat(&digest)).await,
                    Ok(Ok(Some(_)))
                )
            };
            let mut pause = BACKSTOP_POLL;
            let why = loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BACKSTOP_POLL_MAX);
                if fills.strong_count() == 0 || in_bucket().await {
                    return;
                }
                if !cluster.alive(&owner).await {
                    break "the owner replica stopped answering";
                }
                if tokio::time::Instant::now() >= deadline {
                    break "the owner replica's upload is overdue";
                }
            };
            // Replicas that saw the owner die at once need not all upload: a random pause,
            // then one more look.
            let jitter = crate::upstream::jitter() - 0.5;
            tokio::time::sleep((BACKSTOP_POLL * 2).mul_f64(jitter)).await;
            if in_bucket().await {
                return;
            }
            let Some(fills) = fills.upgrade() else { return };
            tracing::info!(digest = %digest, owner = %owner, "{why}; uploading the blob to the bucket from this replica");
            fills.metrics.shared_backstops.inc();
            fills.share(digest, &up, &repo, oversized);
        });
    }

    /// After a fill verified its blob: counts the upstream bytes and owes the bucket its
    /// copy (an upload, or a watch on the owner's); the fill's result label.
    pub(super) fn finished(
        self: &Arc<Self>,
        digest: Digest,
        source: &Source,
        f: &super::fill::Filled,
    ) -> FillResult {
        if f.upstream_bytes > 0 {
            self.metrics
                .upstream_bytes
                .with_label_values(&[source.upstream.name()])
                .inc_by(f.upstream_bytes);
        }
        if f.cached || f.oversized.is_some() {
            let (up, repo) = (source.upstream.name(), source.repo.as_str());
            if f.upstream_bytes > 0 {
                self.share(digest, up, repo, f.oversized.clone());
            } else if let Some(owner) = &f.from_peer {
                self.backstop(digest, f.size, up, repo, owner, f.oversized.clone());
            }
        }
        if f.cached {
            FillResult::Committed
        } else {
            FillResult::Uncacheable
        }
    }
}

/// How long a backstop first waits before it looks at the bucket and the owner; the pause
/// doubles after each look, up to [`BACKSTOP_POLL_MAX`].
const BACKSTOP_POLL: std::time::Duration = std::time::Duration::from_secs(1);
const BACKSTOP_POLL_MAX: std::time::Duration = std::time::Duration::from_secs(16);

/// How long a replica that got a blob of `size` bytes from its owner gives the owner's
/// upload before uploading it too: a minute, plus the time the blob takes at 8 MiB/s.
pub(super) fn backstop_after(size: u64) -> std::time::Duration {
    std::time::Duration::from_secs(60 + size / (8 << 20))
}

/// `bytes <at>-<end>/<total>` → `Some(Some(total))` (`Some(None)` for `*`), if it starts at
/// `at`.
fn parse_content_range(v: &str, at: u64) -> Option<Option<u64>> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    if start.trim().parse::<u64>().ok()? != at {
        return None;
    }
    match total.trim() {
        "*" => Some(None),
        t => t.parse().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges_must_start_where_the_fill_stopped() {
        assert_eq!(
            parse_content_range("bytes 100-199/200", 100),
            Some(Some(200))
        );
        assert_eq!(parse_content_range("bytes 100-199/*", 100), Some(None));
        assert_eq!(parse_content_range("bytes 0-199/200", 100), None);
        assert_eq!(parse_content_range("items 100-199/200", 100), None);
        assert_eq!(parse_content_range("bytes 100-199/x", 100), None);
    }
}

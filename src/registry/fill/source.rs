//! Where a fill's bytes come from ([`Origins`]): the shared bucket (the blob was stored
//! there, verified, by some replica), the digest's owner replica (which runs the one upstream
//! fetch for the cluster), or the upstream, in the order the caller chose ([`Origin`]).
//! Whatever the origin, the bytes go through the same hashing and verification (`run`): a
//! bucket or a peer is trusted no more than an upstream.
//!
//! Invariants:
//! - A failing bucket or peer never fails the fill by itself: before the first byte, the
//!   fill falls back to the upstream; after it, the upstream is asked for the rest
//!   (`Range`, [`Origins::resume`]), and the hash runs on across both.
//! - An owner that cannot be reached is marked down, and one that turns out to be this
//!   replica is left out; the digest then goes to the next owner in its ranking (the same on
//!   every replica that knows), so a dead owner does not make each replica fetch the blob
//!   from the upstream. An owner that answers but does not serve (slow, refusing) is not
//!   passed over: the fill fetches from the upstream itself.

use crate::auth::Credentials;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::metrics::{BucketOp, Metrics, Relay};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::registry::bucket::{Bucket, LOOKUP_TIMEOUT};
use crate::registry::target::{content_length, upstream_error};
use crate::store::backend::BlobBackend;
use crate::upstream::Upstream;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// Where a fill reads first (the upstream is always the fallback), and where its bytes
/// came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Upstream,
    /// The shared bucket holds the blob.
    Shared,
    /// This peer (its base URL) owns the digest.
    Peer(String),
}

impl Origin {
    /// How log lines name it.
    pub fn describe(&self, upstream: &str) -> String {
        match self {
            Origin::Upstream => upstream.to_string(),
            Origin::Shared => "the shared bucket".to_string(),
            Origin::Peer(_) => "the owner replica".to_string(),
        }
    }
}

/// What a fill needs to fetch its blob.
#[derive(Clone)]
pub struct Source {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
    pub creds: Credentials,
    /// Where to read first.
    pub via: Origin,
    /// What the client presented, for the owner replica (which maps it to upstream
    /// credentials itself): `creds` may be Wharf's own upstream credentials.
    pub peer_creds: Credentials,
}

/// How many owners a fill asks before it fetches from the upstream itself.
const MAX_OWNER_TRIES: usize = 3;

/// A fill's byte source, whatever it is.
pub type FillBody = UnsyncBoxBody<Bytes, String>;

/// An opened origin: the blob's size when known, its body, and where it comes from.
pub struct Opened {
    pub size: Option<u64>,
    pub body: FillBody,
    pub origin: Origin,
}

/// The origins a fill may read from besides the upstream.
pub struct Origins {
    pub bucket: Option<Arc<Bucket>>,
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    /// The longest gap allowed between two body chunks (`fill.idle_timeout`).
    pub idle: Duration,
}

impl Origins {
    /// Opens the fill's source: the bucket or the owner when the caller chose one and it
    /// serves, else the upstream.
    pub async fn open(
        &self,
        digest: &Digest,
        src: &Source,
        deadline: tokio::time::Instant,
    ) -> Result<Opened> {
        let opened = match &src.via {
            Origin::Upstream => None,
            Origin::Shared => self.open_bucket(digest).await,
            Origin::Peer(owner) => self.open_owner(digest, src, owner).await,
        };
        if let Some(o) = opened {
            return Ok(o);
        }
        let (size, body) = self.resume(digest, src, deadline, 0).await?;
        Ok(Opened {
            size,
            body,
            origin: Origin::Upstream,
        })
    }

    /// The blob from the bucket, or `None` (counted as a fallback) when it does not serve.
    async fn open_bucket(&self, digest: &Digest) -> Option<Opened> {
        let bucket = self.bucket.as_ref()?;
        let m = &self.metrics;
        let opened = tokio::time::timeout(LOOKUP_TIMEOUT, bucket.s3().open(digest))
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
                let body = http_body_util::StreamBody::new(
                    stream.map(|c| c.map(hyper::body::Frame::data).map_err(|e| e.to_string())),
                );
                return Some(Opened {
                    size: Some(len),
                    body: body.boxed_unsync(),
                    origin: Origin::Shared,
                });
            }
            Ok(None) => {}
            Err(e) => {
                bucket.count_error(BucketOp::Get);
                tracing::warn!(digest = %digest, error = %e, "cannot read the blob from the bucket; fetching it upstream");
            }
        }
        m.shared_fill(Relay::Fallback);
        None
    }

    /// The blob from its owner replica (or the next owners, see the module's invariants), or
    /// `None` (counted as a fallback) when none serves.
    async fn open_owner(&self, digest: &Digest, src: &Source, owner: &str) -> Option<Opened> {
        let cluster = self.cluster.as_ref()?;
        let m = &self.metrics;
        let mut peer = owner.to_string();
        // An owner found down (or found to be this replica) leaves the digest to the next in
        // its ranking, on which every replica that knows agrees; each try takes one member
        // out, and there are at most MAX_OWNER_TRIES.
        for attempt in 1..=MAX_OWNER_TRIES {
            let fetched = cluster
                .fetch_blob(
                    &peer,
                    src.upstream.name(),
                    src.repo.as_str(),
                    digest,
                    &src.peer_creds,
                    self.idle,
                )
                .await;
            let e = match fetched {
                Ok(resp) => {
                    m.peer_fill(Relay::Served);
                    let size = content_length(resp.headers());
                    let body = resp.into_body().map_err(|e| e.to_string());
                    return Some(Opened {
                        size,
                        body: body.boxed_unsync(),
                        origin: Origin::Peer(peer),
                    });
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
        None
    }

    /// GETs the blob from the upstream from byte `at` on (a `Range` request when `at > 0`,
    /// which must be answered with a `206` starting there): the whole blob's size when
    /// known, and the body.
    pub async fn resume(
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
            (0, StatusCode::OK) => content_length(resp.headers()),
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
                return Err(upstream_error(
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

//! Where a request goes ([`Target`]: an upstream and the repository as that upstream knows
//! it), and how an upstream's answer is read: its status as Wharf's error, its length, its
//! body within limits. A leaf: every part of the registry uses it, it uses none of them.

use crate::error::Error;
use crate::oci::{ErrorCode, RepoName};
use crate::upstream::Upstream;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::Duration;

/// Where a request goes: an upstream and the repository name as that upstream knows it.
#[derive(Debug, Clone)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    pub repo: RepoName,
    /// The request came from a peer replica: never forward it to another.
    pub via_peer: bool,
    /// The upstream was chosen by the request's `Host` (`upstream.hosts`): names are not
    /// prefixed with an upstream there.
    pub by_host: bool,
}

impl Target {
    /// The upstream's configured name.
    pub fn up(&self) -> &str {
        self.upstream.name()
    }
}

/// Maps an upstream's non-success status to our error: 404 keeps its meaning (`not_found`
/// says which code), 401/403/429 pass through, anything else is a bad gateway.
pub(crate) fn upstream_error(
    upstream: &str,
    status: StatusCode,
    headers: &HeaderMap,
    not_found: ErrorCode,
) -> Error {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (not_found, "not found upstream".to_string()),
        StatusCode::UNAUTHORIZED => (
            ErrorCode::Unauthorized,
            "the upstream requires authentication".to_string(),
        ),
        StatusCode::FORBIDDEN => (ErrorCode::Denied, "the upstream denied access".to_string()),
        StatusCode::TOO_MANY_REQUESTS => (
            ErrorCode::TooManyRequests,
            "the upstream is rate-limiting".to_string(),
        ),
        s => (ErrorCode::Unavailable, format!("the upstream answered {s}")),
    };
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Error::Upstream {
        upstream: upstream.to_string(),
        status,
        code,
        message,
        retry_after,
    }
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Why an upstream's document body could not be read.
pub(crate) enum BodyError {
    TooLarge,
    /// The connection broke, or no byte came for the idle timeout.
    Broken(String),
}

/// Reads a document body (a manifest, a tags list, a referrers page): at most `limit` bytes,
/// and at most `idle` between two chunks (an upstream that stops sending must not hold the
/// request, and every client coalesced on it, forever).
pub(crate) async fn read_body(
    body: hyper::body::Incoming,
    limit: usize,
    idle: Duration,
) -> std::result::Result<bytes::Bytes, BodyError> {
    let mut body = Limited::new(body, limit);
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| BodyError::Broken("upstream body stalled".into()))?;
        match frame {
            None => return Ok(out.freeze()),
            Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyError::TooLarge)
            }
            Some(Err(e)) => return Err(BodyError::Broken(e.to_string())),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
        }
    }
}

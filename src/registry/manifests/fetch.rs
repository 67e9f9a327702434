//! Manifests asked of the upstream with the client's credentials: a `GET` (verified, stored
//! with its links, shared with the bucket) or a tag's `HEAD`.

use super::{Manifests, DIGEST_HEADER};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{media, Digest, ErrorCode, Tag};
use crate::registry::target::{content_length, read_body, BodyError, Target};
use crate::store::StoredManifest;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::sync::Arc;

impl Manifests {
    /// GETs a manifest upstream (`reference` is a tag or digest), verifies it, stores it with
    /// its links. `accept` empty means the proxy's full list. A success is always a miss.
    pub(super) async fn fetch(
        &self,
        t: &Target,
        client: &Client,
        reference: &str,
        expected: Option<&Digest>,
        accept: &[String],
    ) -> Result<Arc<StoredManifest>> {
        let up = t.upstream.name();
        let tail = format!("manifests/{reference}");
        let resp = self
            .access
            .send_as(
                t,
                client,
                Method::GET,
                &tail,
                &accept_headers(accept),
                ErrorCode::ManifestUnknown,
            )
            .await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let bytes = self.read(up, resp).await?;
        self.metrics
            .upstream_bytes
            .with_label_values(&[up])
            .inc_by(bytes.len() as u64);
        let digest = Digest::of(&bytes);
        if let Some(exp) = expected.filter(|exp| **exp != digest) {
            return Err(Error::Upstream {
                upstream: up.to_string(),
                status: StatusCode::BAD_GATEWAY,
                code: ErrorCode::DigestInvalid,
                message: format!("upstream sent a manifest with digest {digest}, not {exp}"),
                retry_after: None,
            });
        }
        let (media_type, refs) = crate::oci::manifest::accept(&bytes, content_type.as_deref())
            .map_err(|m| invalid(up, m))?;
        let m = Arc::new(StoredManifest {
            digest,
            media_type,
            bytes,
        });
        self.keep(t, &m, refs.links(), None).await?;
        let (repo, d) = (t.repo.as_str(), m.digest.to_string());
        let mut filled = crate::notify::Event::fill(up, repo, &d, m.bytes.len() as u64);
        filled.target.media_type = m.media_type.clone();
        self.notify.emit(filled);
        self.evictor.maybe_evict();
        if let Some(b) = &self.bucket {
            b.share_manifest(up, t.repo.as_str(), &m);
        }
        Ok(m)
    }

    /// A manifest's body: at most [`MAX_MANIFEST_SIZE`] bytes, stalling at most the idle
    /// timeout.
    async fn read(&self, up: &str, resp: http::Response<hyper::body::Incoming>) -> Result<Bytes> {
        let too_large = || {
            invalid(
                up,
                format!("manifest larger than the {MAX_MANIFEST_SIZE}-byte limit"),
            )
        };
        if content_length(resp.headers()).is_some_and(|n| n > MAX_MANIFEST_SIZE as u64) {
            return Err(too_large());
        }
        match read_body(resp.into_body(), MAX_MANIFEST_SIZE, self.idle).await {
            Ok(b) => Ok(b),
            Err(BodyError::TooLarge) => Err(too_large()),
            Err(BodyError::Broken(e)) => Err(Error::unreachable(up, format!("manifest body: {e}"))),
        }
    }

    /// The digest the upstream's tag points at now, from a `HEAD` with the client's
    /// credentials (Docker Hub does not count HEADs against its pull limit); `None` if the
    /// upstream did not say. A success is also an authorization decision.
    pub(super) async fn head_tag(
        &self,
        t: &Target,
        client: &Client,
        tag: &Tag,
    ) -> Result<Option<Digest>> {
        let tail = format!("manifests/{}", tag.as_str());
        let resp = self
            .access
            .send_as(
                t,
                client,
                Method::HEAD,
                &tail,
                &accept_headers(&[]),
                ErrorCode::ManifestUnknown,
            )
            .await?;
        Ok(resp
            .headers()
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok()))
    }
}

/// `Accept` for an upstream manifest request: the client's types, or (none) the proxy's
/// full list.
fn accept_headers(accept: &[String]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if accept.is_empty() {
        headers.insert(ACCEPT, HeaderValue::from_static(media::MANIFEST_ACCEPT));
    } else {
        for a in accept {
            if let Ok(v) = HeaderValue::from_str(a) {
                headers.append(ACCEPT, v);
            }
        }
    }
    headers
}

/// The upstream sent something that is not a usable manifest.
fn invalid(up: &str, message: String) -> Error {
    Error::Upstream {
        upstream: up.to_string(),
        status: StatusCode::BAD_GATEWAY,
        code: ErrorCode::ManifestInvalid,
        message,
        retry_after: None,
    }
}

//! Manifests: by digest (immutable) and by tag (fresh for `tag_ttl`, then revalidated: `tags`).
//!
//! Invariants:
//! - A manifest is stored only after its bytes hashed to its digest (for a by-digest request,
//!   the requested digest; for a tag, the digest the bytes have).
//! - Stored and served bytes are the upstream's bytes, never re-serialized.
//! - A cached manifest is served only if the client's `Accept` admits its media type;
//!   otherwise the upstream is asked with the client's own `Accept`.
//! - A tag revalidation that fails because the upstream is down or answers 5xx serves the
//!   cached resolution (stale-if-error); a 404 or an auth refusal is passed on.

use super::{Registry, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::manifest::{parse, ManifestRefs, MAX_MANIFEST_SIZE};
use crate::oci::{media, Digest, ErrorCode, Reference};
use crate::store::keys::tag_key;
use crate::store::{LinkKind, StoredManifest};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;

/// The header that carries a manifest's digest.
pub const DIGEST_HEADER: &str = "docker-content-digest";

impl Registry {
    /// The manifest for `reference` in `t`, acceptable to a client that sent `accept`, if the
    /// upstream lets `client` pull it.
    /// An upstream 404 is remembered for the upstream's `negative_ttl` (per credentials), so
    /// a crash-looping client does not hammer the upstream.
    pub async fn manifest(
        self: &Arc<Self>,
        t: &Target,
        client: &Client,
        reference: &Reference,
        accept: &[String],
    ) -> Result<Arc<StoredManifest>> {
        let client = &t.upstream.effective_client(client);
        let neg_key = negative_key(t, client, reference);
        if self.negative.contains_key(&neg_key) {
            return Err(Error::client(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest unknown upstream (remembered): {}:{reference}",
                    t.repo
                ),
            ));
        }
        let res = match reference {
            Reference::Digest(d) => self.manifest_by_digest(t, client, d, accept).await,
            Reference::Tag(tag) => self.manifest_by_tag(t, client, tag, accept).await,
        };
        let ttl = t.upstream.cfg.policy.negative_ttl;
        if let Err(e) = &res {
            if e.is_not_found() && !ttl.is_zero() {
                self.negative.insert(neg_key, ttl).await;
            }
        }
        res
    }

    async fn manifest_by_digest(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        accept: &[String],
    ) -> Result<Arc<StoredManifest>> {
        let reference = digest.to_string();
        let tail = format!("manifests/{reference}");
        let m = match self.cached_manifest(digest).await? {
            Some(m) => m,
            None => {
                // Concurrent misses share one fetch (made with the first client's
                // credentials); everyone is authorized below. If the shared fetch failed
                // for another client, this one tries with its own request.
                let ran = std::sync::atomic::AtomicBool::new(false);
                let load = async {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    self.fetch_manifest(t, client, &reference, Some(digest), &[])
                        .await
                };
                match self.manifests.try_get_with(*digest, load).await {
                    Ok(m) => {
                        if !ran.load(std::sync::atomic::Ordering::SeqCst) {
                            super::mark(crate::metrics::RequestResult::Coalesced);
                        }
                        m
                    }
                    Err(e) if ran.load(std::sync::atomic::Ordering::SeqCst) => {
                        return Err((*e).clone())
                    }
                    Err(_) => {
                        self.fetch_manifest(t, client, &reference, Some(digest), &[])
                            .await?
                    }
                }
            }
        };
        if self
            .authorize_linked(t, client, LinkKind::Manifest, digest, &tail)
            .await?
        {
            self.link_manifest(t, &m)?;
        }
        if acceptable(accept, &m.media_type) {
            Ok(m)
        } else {
            self.fetch_manifest(t, client, &reference, Some(digest), accept)
                .await
        }
    }

    /// Links a manifest the upstream confirmed under `t` (and what it references) to the
    /// repository, so its blobs can be served there.
    pub(super) fn link_manifest(&self, t: &Target, m: &StoredManifest) -> Result<()> {
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let links = m.refs().map(|r| r.links()).unwrap_or_default();
        self.store.put_manifest(up, repo, m, &links, None)?;
        self.store.note_manifest(&m.digest, m.bytes.len() as u64)
    }

    pub(super) async fn cached_manifest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<StoredManifest>>> {
        if let Some(m) = self.manifests.get(digest).await {
            self.store.touch_manifest(digest, m.bytes.len() as u64);
            return Ok(Some(m));
        }
        match self.store.get_manifest(digest)? {
            Some(m) => {
                self.store.touch_manifest(digest, m.bytes.len() as u64);
                let m = Arc::new(m);
                self.manifests.insert(*digest, m.clone()).await;
                Ok(Some(m))
            }
            // Kept in memory only: it reaches RocksDB when it is linked to a repository.
            None => match self.shared_manifest(digest).await {
                Some(m) => {
                    let m = Arc::new(m);
                    self.manifests.insert(*digest, m.clone()).await;
                    Ok(Some(m))
                }
                None => Ok(None),
            },
        }
    }

    /// GETs a manifest upstream (`reference` is a tag or digest), verifies it, stores it with
    /// its links. `accept` empty means the proxy's full list.
    pub(super) async fn fetch_manifest(
        &self,
        t: &Target,
        client: &Client,
        reference: &str,
        expected: Option<&Digest>,
        accept: &[String],
    ) -> Result<Arc<StoredManifest>> {
        let up = t.upstream.name();
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
        let tail = format!("manifests/{reference}");
        let resp = self
            .send_as(
                t,
                client,
                Method::GET,
                &tail,
                &headers,
                ErrorCode::ManifestUnknown,
            )
            .await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let bad = |message: String| Error::Upstream {
            upstream: up.to_string(),
            status: StatusCode::BAD_GATEWAY,
            code: ErrorCode::ManifestInvalid,
            message,
            retry_after: None,
        };
        if super::content_length(resp.headers()).is_some_and(|n| n > MAX_MANIFEST_SIZE as u64) {
            return Err(bad(format!(
                "manifest larger than the {MAX_MANIFEST_SIZE}-byte limit"
            )));
        }
        let bytes = match read_body(resp.into_body(), self.fills.idle_timeout()).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Err(bad(format!(
                    "manifest larger than the {MAX_MANIFEST_SIZE}-byte limit"
                )))
            }
            Err(BodyError::Broken(e)) => {
                return Err(Error::unreachable(up, format!("manifest body: {e}")))
            }
        };
        super::mark(crate::metrics::RequestResult::Miss);
        self.metrics
            .upstream_bytes
            .with_label_values(&[up])
            .inc_by(bytes.len() as u64);
        let digest = Digest::of(&bytes);
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::Upstream {
                    upstream: up.to_string(),
                    status: StatusCode::BAD_GATEWAY,
                    code: ErrorCode::DigestInvalid,
                    message: format!("upstream sent a manifest with digest {digest}, not {exp}"),
                    retry_after: None,
                });
            }
        }
        let (media_type, refs) = accept_manifest(&bytes, content_type.as_deref()).map_err(bad)?;
        let links = refs.links();
        let m = Arc::new(StoredManifest {
            digest,
            media_type,
            bytes,
        });
        let store = self.store.clone();
        let (up_s, repo_s, m2) = (up.to_string(), t.repo.as_str().to_string(), m.clone());
        tokio::task::spawn_blocking(move || {
            store.put_manifest(&up_s, &repo_s, &m2, &links, None)?;
            store.note_manifest(&m2.digest, m2.bytes.len() as u64)
        })
        .await
        .map_err(Error::internal)??;
        self.evictor.maybe_evict();
        self.manifests.insert(digest, m.clone()).await;
        self.share_manifest(t, &m);
        Ok(m)
    }
}

/// Why a manifest body could not be read.
pub(super) enum BodyError {
    TooLarge,
    /// The connection broke, or no byte came for the idle timeout.
    Broken(String),
}

/// Reads a manifest body: at most [`MAX_MANIFEST_SIZE`] bytes, and at most `idle` between two
/// chunks (an upstream that stops sending must not hold the request, and every client
/// coalesced on it, forever).
pub(super) async fn read_body(
    body: hyper::body::Incoming,
    idle: std::time::Duration,
) -> std::result::Result<bytes::Bytes, BodyError> {
    let mut body = Limited::new(body, MAX_MANIFEST_SIZE);
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

/// Checks a manifest the upstream (or a pushing client) served as `content_type`: it must
/// parse strictly as one kind (see `oci::manifest`) with a valid media type. Returns the media
/// type to store and serve it with, and what it references.
pub(super) fn accept_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<(String, ManifestRefs), String> {
    let refs = parse(bytes, content_type).map_err(|e| format!("unusable manifest: {e}"))?;
    let Some(media_type) = refs.media_type.clone() else {
        return Err(
            "not a manifest: no mediaType, no manifest media type served, and no manifest fields"
                .into(),
        );
    };
    if !media::is_valid(&media_type) {
        return Err("the manifest's mediaType is not a media type".into());
    }
    Ok((media_type, refs))
}

/// Key of the negative cache: credentials, upstream, repository, reference.
fn negative_key(t: &Target, client: &Client, reference: &Reference) -> Vec<u8> {
    let mut k = client.id.to_vec();
    k.extend_from_slice(&tag_key(
        t.upstream.name(),
        t.repo.as_str(),
        &reference.to_string(),
    ));
    k
}

pub(super) fn acceptable(accept: &[String], media_type: &str) -> bool {
    media::accepts_any(accept.iter().map(String::as_str), media_type)
}

pub(super) fn stale(m: Arc<StoredManifest>, e: &Error) -> Arc<StoredManifest> {
    super::mark(crate::metrics::RequestResult::Stale);
    tracing::warn!(digest = %m.digest, error = %e, "upstream failing; serving cached tag resolution");
    m
}

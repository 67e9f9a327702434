//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>[?artifactType=...]`.
//!
//! Invariants:
//! - The list is the upstream's: from its referrers API, or, where that answers 404, from the
//!   referrers tag schema (the index tagged `sha256-<hex>`; no such tag: an empty index).
//! - Lists are kept in memory per (upstream, repository, digest). One is served from memory
//!   only while younger than the upstream's `referrers_ttl` and to a client the upstream
//!   authorized for the repository within `authz_ttl` (the same rule as cached manifests);
//!   otherwise the upstream is asked with the client's credentials. While the upstream fails,
//!   a list younger than `referrers_ttl + stale_if_error` is served under the offline rule.
//! - `artifactType` filtering happens here on the whole list, so one upstream request serves
//!   every filter; an unfiltered answer is the upstream's bytes when it came in one page.

use super::{Registry, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{media, Digest, ErrorCode};
use crate::store::keys::tag_key;
use bytes::Bytes;
use http::header::{ACCEPT, LINK};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;

/// Pages of an upstream's paginated referrers list that are followed and merged.
const MAX_PAGES: usize = 16;
/// Bytes of referrers lists kept in memory.
pub(super) const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A referrers list as sent to a client.
pub struct ReferrersList {
    /// An image index (`application/vnd.oci.image.index.v1+json`).
    pub body: Bytes,
    /// Whether an `artifactType` filter was applied (`OCI-Filters-Applied`).
    pub filtered: bool,
}

/// A list as the upstream gave it.
pub struct Cached {
    raw: Bytes,
    manifests: Vec<Value>,
    at: Instant,
}

impl Cached {
    /// Bytes it holds (for the cache's weigher).
    pub fn weight(&self) -> u32 {
        u32::try_from(self.raw.len().saturating_mul(2)).unwrap_or(u32::MAX)
    }

    fn answer(&self, artifact_types: &[String]) -> Result<ReferrersList> {
        if artifact_types.is_empty() {
            return Ok(ReferrersList {
                body: self.raw.clone(),
                filtered: false,
            });
        }
        let kept: Vec<&Value> = self
            .manifests
            .iter()
            .filter(|m| {
                m.get("artifactType")
                    .and_then(Value::as_str)
                    .is_some_and(|a| artifact_types.iter().any(|t| t == a))
            })
            .collect();
        Ok(ReferrersList {
            body: index(kept)?,
            filtered: true,
        })
    }
}

/// An image index listing `manifests`.
fn index<T: serde::Serialize>(manifests: Vec<T>) -> Result<Bytes> {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(Error::internal)
}

impl Registry {
    /// The referrers of `digest` in `t`, filtered by `artifact_types` (any of them; none: all).
    pub async fn referrers(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
        artifact_types: &[String],
    ) -> Result<ReferrersList> {
        let client = &t.upstream.effective_client(client);
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        let key = tag_key(up, repo, &digest.to_string());
        let cached = self.referrers.get(&key).await;
        let ttl = t.upstream.cfg.referrers_ttl;
        if let Some(c) = &cached {
            if c.at.elapsed() < ttl && self.authz.is_fresh(client, up, repo).await {
                return c.answer(artifact_types);
            }
        }
        match self.fetch_referrers(t, client, digest).await {
            Ok(fresh) => {
                super::mark(crate::metrics::RequestResult::Miss);
                let fresh = Arc::new(fresh);
                self.referrers.insert(key, fresh.clone()).await;
                fresh.answer(artifact_types)
            }
            Err(e) if e.is_upstream_failure() => {
                let window = ttl + t.upstream.cfg.policy.stale_if_error;
                match cached.filter(|c| c.at.elapsed() <= window) {
                    Some(c) => {
                        self.offline(t, client, None, e.clone())?;
                        super::mark(crate::metrics::RequestResult::Stale);
                        tracing::warn!(upstream = up, repo, digest = %digest, error = %e, "upstream failing; serving a cached referrers list");
                        c.answer(artifact_types)
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Drops the cached list of `digest` in `t` (someone pushed a referrer through Wharf).
    pub(super) async fn invalidate_referrers(&self, t: &Target, digest: &Digest) {
        let key = tag_key(t.upstream.name(), t.repo.as_str(), &digest.to_string());
        self.referrers.invalidate(&key).await;
    }

    /// The upstream's referrers API, all pages; the tag schema where the API answers 404.
    async fn fetch_referrers(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
    ) -> Result<Cached> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media::OCI_INDEX));
        let mut tail = format!("referrers/{digest}");
        let mut manifests = Vec::new();
        let mut first = None;
        for page in 0..MAX_PAGES {
            let resp = match self
                .send_as(
                    t,
                    client,
                    Method::GET,
                    &tail,
                    &headers,
                    ErrorCode::ManifestUnknown,
                )
                .await
            {
                Ok(r) => r,
                Err(e) if page == 0 && e.is_not_found() => {
                    return self.referrers_from_tag(t, client, digest).await;
                }
                Err(e) => return Err(e),
            };
            let next = next_page(resp.headers(), &t.upstream.cfg.url, t.repo.as_str());
            let bytes = read_index(t, resp.into_body(), self.fills.idle_timeout()).await?;
            manifests.extend(parse_index(t, &bytes)?);
            first.get_or_insert(bytes);
            match next {
                Some(n) => tail = n,
                None if page == 0 => {
                    return Ok(Cached {
                        raw: first.unwrap_or_default(),
                        manifests,
                        at: Instant::now(),
                    })
                }
                None => break,
            }
        }
        Ok(Cached {
            raw: index(manifests.clone())?,
            manifests,
            at: Instant::now(),
        })
    }

    /// The referrers tag schema: the index tagged `sha256-<hex>`, or an empty one.
    async fn referrers_from_tag(
        &self,
        t: &Target,
        client: &Client,
        digest: &Digest,
    ) -> Result<Cached> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media::OCI_INDEX));
        let tail = format!("manifests/sha256-{}", digest.hex());
        match self
            .send_as(
                t,
                client,
                Method::GET,
                &tail,
                &headers,
                ErrorCode::ManifestUnknown,
            )
            .await
        {
            Ok(resp) => {
                let bytes = read_index(t, resp.into_body(), self.fills.idle_timeout()).await?;
                let manifests = parse_index(t, &bytes)?;
                Ok(Cached {
                    raw: bytes,
                    manifests,
                    at: Instant::now(),
                })
            }
            Err(e) if e.is_not_found() => Ok(Cached {
                raw: index(Vec::<Value>::new())?,
                manifests: Vec::new(),
                at: Instant::now(),
            }),
            Err(e) => Err(e),
        }
    }
}

fn bad(t: &Target, message: String) -> Error {
    Error::Upstream {
        upstream: t.upstream.name().to_string(),
        status: StatusCode::BAD_GATEWAY,
        code: ErrorCode::ManifestInvalid,
        message,
        retry_after: None,
    }
}

/// One page of a referrers list: a manifest's limits (4 MiB, and `fill.idle_timeout` between
/// chunks: a stalled upstream must not hold the request).
async fn read_index(
    t: &Target,
    body: hyper::body::Incoming,
    idle: std::time::Duration,
) -> Result<Bytes> {
    use super::manifest::{read_body, BodyError};
    read_body(body, idle).await.map_err(|e| match e {
        BodyError::TooLarge => bad(t, format!("referrers list over {MAX_MANIFEST_SIZE} bytes")),
        BodyError::Broken(m) => bad(t, format!("referrers list: {m}")),
    })
}

/// The `manifests` of an image index.
fn parse_index(t: &Target, bytes: &[u8]) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(t, format!("referrers list is not JSON: {e}")))?;
    match v.get("manifests") {
        Some(Value::Array(list)) => Ok(list.clone()),
        None | Some(Value::Null) if v.is_object() => Ok(Vec::new()),
        _ => Err(bad(t, "referrers list is not an image index".to_string())),
    }
}

/// The tail (after `/v2/<repo>/`) of a `Link: <...>; rel="next"` on the upstream's origin.
fn next_page(headers: &HeaderMap, upstream: &http::Uri, repo: &str) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|l| l.contains("rel=\"next\"") || l.contains("rel=next"))
        .find_map(|l| {
            let url = l.split_once('<')?.1.split_once('>')?.0.trim();
            super::location::upstream_relative(url, upstream, repo)
        })
        .filter(|tail| tail.starts_with("referrers/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtering_keeps_matching_artifact_types() {
        let sig = serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": Digest::of(b"1").to_string(), "size": 1, "artifactType": "application/vnd.example.sig"});
        let sbom = serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": Digest::of(b"2").to_string(), "size": 1, "artifactType": "application/spdx+json"});
        let none = serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": Digest::of(b"3").to_string(), "size": 1});
        let raw = index(vec![sig.clone(), sbom.clone(), none]).expect("index");
        let c = Cached {
            manifests: serde_json::from_slice::<Value>(&raw).expect("json")["manifests"]
                .as_array()
                .expect("array")
                .clone(),
            raw: raw.clone(),
            at: Instant::now(),
        };
        let all = c.answer(&[]).expect("answer");
        assert!(!all.filtered);
        assert_eq!(all.body, raw, "unfiltered: the upstream's bytes");
        let one = c
            .answer(&["application/vnd.example.sig".to_string()])
            .expect("answer");
        assert!(one.filtered);
        let v: Value = serde_json::from_slice(&one.body).expect("json");
        assert_eq!(v["mediaType"], media::OCI_INDEX);
        assert_eq!(v["manifests"], serde_json::json!([sig]));
        let both = c
            .answer(&[
                "application/spdx+json".to_string(),
                "application/vnd.example.sig".to_string(),
            ])
            .expect("answer");
        let v: Value = serde_json::from_slice(&both.body).expect("json");
        assert_eq!(v["manifests"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn next_pages_stay_on_the_upstream() {
        let up: http::Uri = "https://reg.example/".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("</v2/org/app/referrers/sha256:ab?n=1&last=x>; rel=\"next\""),
        );
        assert_eq!(
            next_page(&h, &up, "org/app").as_deref(),
            Some("referrers/sha256:ab?n=1&last=x")
        );
        h.insert(
            LINK,
            HeaderValue::from_static("<https://evil.example/v2/org/app/referrers/x>; rel=\"next\""),
        );
        assert_eq!(next_page(&h, &up, "org/app"), None);
    }
}

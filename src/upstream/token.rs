//! Bearer tokens from an upstream's token service (the Docker token spec).
//!
//! Tokens are cached per (credential hash, service, scope) until shortly before `expires_in`
//! (60 s when the service does not say). Concurrent misses for one key share one request.
//! Credentials are kept only as a SHA-256 hash in keys; the password itself lives only in the
//! [`Credentials`] value that the request carries.

use super::client::HttpClient;
use crate::error::{Error, Result};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use moka::future::Cache;
use moka::Expiry;

use std::sync::Arc;
use std::time::Duration;

pub use crate::auth::Credentials;

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    creds: [u8; 32],
    service: Option<String>,
    scope: String,
}

impl TokenKey {
    pub fn new(creds: &Credentials, service: Option<&str>, scope: &str) -> TokenKey {
        TokenKey {
            creds: creds.hash(),
            service: service.map(str::to_string),
            scope: scope.to_string(),
        }
    }
}

#[derive(Clone)]
pub struct Token {
    header: HeaderValue,
    ttl: Duration,
}

struct TokenExpiry;

// moka's clock is std's: the trait names its `Instant`.
#[allow(clippy::disallowed_types)]
impl Expiry<TokenKey, Token> for TokenExpiry {
    fn expire_after_create(
        &self,
        _k: &TokenKey,
        v: &Token,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub struct TokenCache {
    cache: Cache<TokenKey, Token>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache {
            cache: Cache::builder()
                .max_capacity(10_000)
                .expire_after(TokenExpiry)
                .build(),
        }
    }

    pub async fn invalidate(&self, key: &TokenKey) {
        self.cache.invalidate(key).await;
    }

    pub async fn get_or_fetch<F, Fut>(&self, key: TokenKey, fetch: F) -> Result<HeaderValue>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Token>>,
    {
        self.cache
            .try_get_with(key, fetch())
            .await
            .map(|t| t.header)
            .map_err(|e: Arc<Error>| (*e).clone())
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Asks the token service at `realm` for a token for `scope`, authenticating with `creds`.
pub async fn fetch(
    client: &HttpClient,
    upstream: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: &Credentials,
    policy: &crate::config::UpstreamPolicy,
) -> Result<Token> {
    let uri: Uri = token_url(realm, service, scope)
        .parse()
        .map_err(|_| Error::unreachable(upstream, "token realm is not a valid URL"))?;
    let resp = request(client, upstream, &uri, creds, policy).await?;
    check_status(upstream, resp.status())?;
    let body = Limited::new(resp.into_body(), MAX_TOKEN_RESPONSE)
        .collect()
        .await
        .map_err(|e| Error::unreachable(upstream, format!("token response: {e}")))?
        .to_bytes();
    token_of(upstream, &body)
}

/// The token service's URL for `service` and `scope` (space-separated scopes).
fn token_url(realm: &str, service: Option<&str>, scope: &str) -> String {
    let mut url = realm.to_string();
    url.push(if realm.contains('?') { '&' } else { '?' });
    if let Some(s) = service {
        url.push_str(&format!("service={}&", encode(s)));
    }
    // Several scopes (a cross-repository mount needs two) are several `scope` parameters.
    let scopes: Vec<String> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("scope={}", encode(s)))
        .collect();
    url.push_str(&scopes.join("&"));
    url
}

/// GETs `uri` with `creds`, retried like any idempotent upstream request: transport failures
/// and 502/503/504, up to the policy's `retries`, each attempt within its `response_timeout`.
async fn request(
    client: &HttpClient,
    upstream: &str,
    uri: &Uri,
    creds: &Credentials,
    policy: &crate::config::UpstreamPolicy,
) -> Result<http::Response<hyper::body::Incoming>> {
    let (retries, timeout) = (policy.retries, policy.response_timeout);
    let mut attempt = 0u32;
    loop {
        let mut req = Request::get(uri.clone())
            .body(Empty::<Bytes>::new())
            .map_err(Error::internal)?;
        if let Some(h) = creds.basic_header() {
            req.headers_mut().insert(http::header::AUTHORIZATION, h);
        }
        let res = tokio::time::timeout(timeout, client.request(req))
            .await
            .map_err(|_| Error::unreachable(upstream, "token service did not answer in time"))
            .and_then(|r| {
                r.map_err(|e| Error::unreachable(upstream, format!("token service: {e}")))
            });
        let retryable = match &res {
            Ok(r) => matches!(r.status().as_u16(), 502..=504),
            Err(_) => true,
        };
        if !retryable || attempt >= retries {
            return res;
        }
        tokio::time::sleep(
            super::RETRY_BASE
                .saturating_mul(1 << attempt.min(6))
                .mul_f64(super::jitter()),
        )
        .await;
        attempt += 1;
    }
}

/// A refusal of the credentials (401, 403) or any other failure status as an error.
fn check_status(upstream: &str, status: StatusCode) -> Result<()> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Error::Upstream {
            upstream: upstream.to_string(),
            status,
            code: if status == StatusCode::UNAUTHORIZED {
                crate::oci::ErrorCode::Unauthorized
            } else {
                crate::oci::ErrorCode::Denied
            },
            message: "the upstream's token service refused the credentials".into(),
            retry_after: None,
        });
    }
    if !status.is_success() {
        return Err(Error::unreachable(
            upstream,
            format!("token service answered {status}"),
        ));
    }
    Ok(())
}

/// The token of a token service's JSON answer, as a sensitive `Authorization` value, with
/// the time to keep it: a little under its `expires_in`.
fn token_of(upstream: &str, body: &[u8]) -> Result<Token> {
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| Error::unreachable(upstream, "token response is not valid JSON"))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::unreachable(upstream, "token response has no token"))?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TTL);
    // Renew a little early so a token never expires mid-request.
    let ttl = lifetime.mul_f64(0.9).max(Duration::from_secs(1));
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::unreachable(upstream, "token has characters not allowed in a header")
    })?;
    header.set_sensitive(true);
    Ok(Token { header, ttl })
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("repository:library/alpine:pull,push"),
            "repository:library/alpine:pull%2Cpush"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}

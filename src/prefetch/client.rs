//! A registry client for talking to Wharf itself: the token dance against Wharf's `/token`,
//! OCI error envelopes turned into readable messages, bodies streamed frame by frame.
//!
//! Prefetch is a client of the serving path on purpose: what it warms is exactly what a pull
//! would have cached (same fills, same verification, same authorization records), and with a
//! running server its requests coalesce with live pulls.

use crate::config::UpstreamPolicy;
use crate::upstream::client::{build, HttpClient};
use crate::upstream::token::{fetch, TokenCache, TokenKey};
use crate::upstream::{challenge, Credentials};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use std::path::Path;
use std::time::Duration;

/// How long Wharf may take to answer a request's head (a cold manifest through a slow upstream).
const HEAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The most an error body is read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct WharfClient {
    http: HttpClient,
    /// `http://127.0.0.1:5000` (no trailing slash).
    base: String,
    creds: Credentials,
    tokens: TokenCache,
    policy: UpstreamPolicy,
}

impl WharfClient {
    /// `ca_file`: an extra trust root for a Wharf serving TLS with its own certificate.
    pub fn new(base: &str, ca_file: Option<&Path>, creds: Credentials) -> Result<Self, String> {
        let policy = UpstreamPolicy {
            response_timeout: Duration::from_secs(60),
            ..UpstreamPolicy::default()
        };
        Ok(WharfClient {
            http: build(ca_file, None, Duration::from_secs(10))?,
            base: base.trim_end_matches('/').to_string(),
            creds,
            tokens: TokenCache::new(),
            policy,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET <base><path>`; a `401` with a Bearer challenge runs the token dance once (tokens
    /// are cached per scope). Any status other than 2xx becomes an error with Wharf's message.
    pub async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, String> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| format!("bad request URL {path:?}: {e}"))?;
        let mut token = None;
        let mut key = None;
        for attempt in 0..3 {
            let mut req = Request::get(uri.clone())
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            if let Some(a) = accept {
                req.headers_mut().insert(
                    ACCEPT,
                    a.parse().map_err(|_| format!("bad Accept header {a:?}"))?,
                );
            }
            if let Some(t) = &token {
                req.headers_mut()
                    .insert(AUTHORIZATION, http::HeaderValue::clone(t));
            }
            let resp = tokio::time::timeout(HEAD_TIMEOUT, self.http.request(req))
                .await
                .map_err(|_| format!("{} did not answer in {HEAD_TIMEOUT:?}", self.base))?
                .map_err(|e| format!("cannot reach Wharf at {}: {e}", self.base))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 2 {
                return check(resp).await;
            }
            if let Some(k) = key.take() {
                // The cached token was refused (Wharf restarted?): ask for a new one once.
                self.tokens.invalidate(&k).await;
            }
            let bearer = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .find_map(|c| match c {
                    challenge::Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    } => Some((realm, service, scope.unwrap_or_default())),
                    _ => None,
                });
            let Some((realm, service, scope)) = bearer else {
                return check(resp).await;
            };
            let k = TokenKey::new(&self.creds, service.as_deref(), &scope);
            let t = self
                .tokens
                .get_or_fetch(k.clone(), || {
                    fetch(
                        &self.http,
                        "wharf",
                        &realm,
                        service.as_deref(),
                        &scope,
                        &self.creds,
                        &self.policy,
                    )
                })
                .await
                .map_err(|e| format!("Wharf's token service: {e}"))?;
            token = Some(t);
            key = Some(k);
        }
        Err("authentication with Wharf did not converge".into())
    }
}

/// Passes a 2xx response through; turns anything else into Wharf's OCI error message.
async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>, String> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Err(error_message(status, &body))
}

/// `MANIFEST_UNKNOWN: manifest unknown to upstream (404)`, or the status alone.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => {
            let parts: Vec<String> = env
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            format!("{} ({})", parts.join("; "), status.as_u16())
        }
        _ => format!("Wharf answered {status}"),
    }
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub async fn read_limited(resp: Response<Incoming>, limit: usize) -> Result<Bytes, String> {
    Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_carry_the_oci_code() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no such tag"}]}"#;
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, body),
            "MANIFEST_UNKNOWN: no such tag (404)"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>"),
            "Wharf answered 502 Bad Gateway"
        );
    }
}

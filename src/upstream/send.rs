//! Sending one pull request upstream: retries, the circuit breaker and redirects.
//!
//! Invariants:
//! - Only bodiless requests (GET, HEAD) come through here, before any byte reached a client,
//!   so a retry is always safe; transport failures and 502/503/504 are retried.
//! - `Authorization` goes only to the upstream's own scheme+host+port; a response from any
//!   other origin carries [`ForeignOrigin`].
//! - Every hop keeps the policy of [`super::redirect`] (the connector enforces the address
//!   part); a hop it refuses is an upstream error (502 `UNAVAILABLE`), neither retried nor a
//!   breaker failure.

use super::redirect::{self, redacted, resolve_location, MAX_REDIRECTS};
use super::{guard, jitter, Upstream, RETRY_BASE};
use crate::error::{Error, Result};
use crate::metrics::{StatusClass, UpstreamKind};
use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;

impl Upstream {
    /// [`Self::send_once`] with retries: transport failures and 502/503/504 are retried with
    /// jittered exponential backoff. Only requests without a body go through here, and no
    /// byte of a response has reached a client yet, so a retry is always safe.
    pub(super) async fn send_following(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>> {
        let retries = self.cfg.policy.retries;
        let mut attempt = 0u32;
        loop {
            let res = self.send_once(method, uri, headers, auth).await;
            let retryable = match &res {
                Ok(r) => matches!(r.status().as_u16(), 502..=504),
                Err(Error::Unreachable { .. }) => true,
                Err(_) => false,
            };
            if !retryable || attempt >= retries || self.breaker.is_open() {
                return res;
            }
            let backoff = RETRY_BASE
                .saturating_mul(1 << attempt.min(6))
                .mul_f64(jitter());
            tracing::debug!(
                upstream = self.name(),
                attempt,
                backoff_ms = backoff.as_millis() as u64,
                "retrying upstream request"
            );
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// One request with redirects followed (GET/HEAD only), `Authorization` kept only for the
    /// upstream's own origin. Every attempt passes the circuit breaker.
    async fn send_once(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>> {
        let mut uri = uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let same_origin = uri.scheme() == self.cfg.url.scheme()
                && uri.authority() == self.cfg.url.authority();
            let req = request(method, &uri, headers, auth.filter(|_| same_origin))?;
            if !self.breaker.allow() {
                return Err(Error::unreachable(
                    self.name(),
                    "circuit breaker open after repeated failures",
                ));
            }
            let timeout = self.cfg.policy.response_timeout;
            let started = tokio::time::Instant::now();
            let kind = UpstreamKind::of_path(uri.path());
            let count = |class: StatusClass| self.count_request(method, kind, started, class);
            let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if guard::refused(&e).is_some() => {
                    count(StatusClass::Error);
                    return Err(self.refused_redirect(describe(&e)));
                }
                Ok(Err(e)) => {
                    count(StatusClass::Error);
                    let what = describe(&e);
                    self.failed(&what);
                    return Err(Error::unreachable(self.name(), what));
                }
                Err(_) => {
                    count(StatusClass::Error);
                    self.failed("no response in time");
                    return Err(Error::unreachable(self.name(), "no response in time"));
                }
            };
            count(StatusClass::of(resp.status().as_u16()));
            self.note_ratelimit(resp.headers());
            if resp.status().is_server_error() {
                self.failed(&format!("{} answered {}", uri.path(), resp.status()));
            } else {
                self.breaker.success();
            }
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                let mut resp = resp;
                if !same_origin {
                    resp.extensions_mut().insert(ForeignOrigin);
                }
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resolve_location(&uri, l))
            else {
                return Err(Error::unreachable(
                    self.name(),
                    "redirect without a usable Location",
                ));
            };
            redirect::check_hop(&uri, &next).map_err(|m| self.refused_redirect(m))?;
            tracing::debug!(upstream = self.name(), to = %redacted(&next), "following redirect");
            uri = next;
        }
        // A loop is not transient: an upstream error (not retried), not "unreachable".
        Err(self.refused_redirect(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// A redirect Wharf will not follow: the upstream's fault, a 502 that is not retried.
    fn refused_redirect(&self, message: String) -> Error {
        tracing::warn!(upstream = self.name(), %message, "redirect not followed");
        Error::Upstream {
            upstream: self.name().to_string(),
            status: StatusCode::BAD_GATEWAY,
            code: crate::oci::ErrorCode::Unavailable,
            message,
            retry_after: None,
        }
    }
}

/// A bodiless request with `headers`, and `auth` as its `Authorization` if given.
fn request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    auth: Option<&HeaderValue>,
) -> Result<Request<Empty<Bytes>>> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .body(Empty::<Bytes>::new())
        .map_err(Error::internal)?;
    for (k, v) in headers {
        req.headers_mut().append(k, v.clone());
    }
    if let Some(a) = auth {
        req.headers_mut().insert(AUTHORIZATION, a.clone());
    }
    Ok(req)
}

/// Marks a response that came from another origin than the upstream's (after a redirect).
#[derive(Clone, Copy)]
pub(super) struct ForeignOrigin;

/// The error chain of a client failure, which names the cause (connection refused, TLS).
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

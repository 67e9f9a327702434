//! Requests that change the upstream (pushes): blob uploads, manifest `PUT`s, `DELETE`s.
//!
//! Invariants:
//! - Sent with the client's credentials and a token for the scopes the request needs
//!   (`repository:<repo>:pull,push`, plus `repository:<from>:pull` for a mount).
//! - Never retried after a body was streamed, never redirected (a 3xx goes back to the
//!   client), never sent without `allow_push` (no client is built for it).
//! - `PUT` and `PATCH` (and any streamed body) wait for their answer without a timeout: it
//!   comes after the whole upload, or after the upstream moved a large blob into place; a
//!   client that goes away cancels the upstream request with it. Other push requests wait
//!   `response_timeout`.
//! - Pushes neither consult nor feed the circuit breaker: a long upload must not hold the
//!   breaker's single probe, and a push-side failure (a quota, a refused upload) must not make
//!   pulls serve stale.

use super::client::PushBody;
use super::{describe, Credentials, Upstream};
use crate::error::{Error, Result};
use crate::metrics::{StatusClass, UpstreamKind};
use crate::oci::ErrorCode;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::sync::atomic::Ordering;

/// What a push request carries to the upstream.
pub enum Payload {
    /// No body.
    Empty,
    /// A small body held in memory (a manifest): can be sent again after a token renewal.
    Bytes(Bytes),
    /// A streamed body (a blob upload): sent once.
    Stream(PushBody),
}

impl Payload {
    /// The body for one attempt (a stream only once).
    fn body(&mut self) -> PushBody {
        match std::mem::replace(self, Payload::Empty) {
            Payload::Empty => empty(),
            Payload::Bytes(b) => {
                *self = Payload::Bytes(b.clone());
                Full::new(b).map_err(|never| match never {}).boxed_unsync()
            }
            Payload::Stream(s) => s,
        }
    }

    fn streamed(&self) -> bool {
        matches!(self, Payload::Stream(_))
    }
}

fn empty() -> PushBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl Upstream {
    /// Whether pushes may go to this upstream (`allow_push`).
    pub fn push_enabled(&self) -> bool {
        self.push_client.is_some()
    }

    /// Sends a push request to `path_and_query` (starting with `/v2/`) with `creds` and a
    /// token for `scope` (space-separated scopes). Any status is returned to the caller;
    /// only transport failures are errors. A `401` to a streamed body renews the token and is
    /// returned (the body is gone): the client's retry then goes through.
    pub async fn send_push(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        mut payload: Payload,
        creds: &Credentials,
        scope: &str,
    ) -> Result<Response<Incoming>> {
        if self.offline {
            return Err(self.offline_error());
        }
        if !self.push_enabled() {
            return Err(Error::client(
                ErrorCode::Unsupported,
                format!("pushing to upstream {} is not enabled", self.name()),
            ));
        }
        let uri = self.url(path_and_query)?;
        if payload.streamed() {
            // A streamed body cannot be sent twice: learn how the upstream authenticates
            // before the first attempt, so that it carries the right token.
            self.probe_auth().await?;
        }
        let auth = self.authorization(creds, scope, false).await?;
        let resendable = !payload.streamed();
        let bounded = resendable && method != Method::PUT && method != Method::PATCH;
        let resp = self
            .push_once(
                &method,
                &uri,
                headers,
                payload.body(),
                bounded,
                auth.as_ref(),
            )
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(challenge_scope) = self.learn_scheme(&resp) else {
            return Ok(resp);
        };
        let scope = challenge_scope.unwrap_or_else(|| scope.to_string());
        if !resendable {
            // Renew now so the client's retry is sent with a fresh token.
            if let Err(e) = self.authorization(creds, &scope, true).await {
                tracing::debug!(upstream = self.name(), error = %e, "token renewal after a refused upload failed");
            }
            return Ok(resp);
        }
        let auth = self.authorization(creds, &scope, true).await?;
        if auth.is_none() {
            return Ok(resp);
        }
        self.push_once(
            &method,
            &uri,
            headers,
            payload.body(),
            bounded,
            auth.as_ref(),
        )
        .await
    }

    /// Asks `/v2/` once how the upstream authenticates, if no challenge taught it yet.
    async fn probe_auth(&self) -> Result<()> {
        let known = self.scheme.lock().ok().and_then(|s| s.clone()).is_some();
        if known || self.push_probed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let uri = self.url("/v2/")?;
        let resp = self
            .send_following(&Method::GET, &uri, &HeaderMap::new(), None)
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let _ = self.learn_scheme(&resp);
        }
        self.push_probed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// One push request: no redirects, no retries, no breaker; the metrics as for pulls.
    /// `bounded`: wait at most `response_timeout` for the response headers.
    async fn push_once(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: PushBody,
        bounded: bool,
        auth: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>> {
        let client = self
            .push_client
            .as_ref()
            .ok_or_else(|| Error::internal(format!("upstream {}: no push client", self.name())))?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(body)
            .map_err(Error::internal)?;
        for (k, v) in headers {
            req.headers_mut().append(k, v.clone());
        }
        if let Some(a) = auth {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        let started = tokio::time::Instant::now();
        let kind = UpstreamKind::of_path(uri.path());
        let count = |class: StatusClass| self.count_request(method, kind, started, class);
        let sent = client.request(req);
        let res = if bounded {
            match tokio::time::timeout(self.cfg.policy.response_timeout, sent).await {
                Ok(r) => r.map_err(|e| describe(&e)),
                Err(_) => Err("no response in time".to_string()),
            }
        } else {
            sent.await.map_err(|e| describe(&e))
        };
        let resp = match res {
            Ok(r) => r,
            Err(message) => {
                count(StatusClass::Error);
                return Err(Error::unreachable(self.name(), message));
            }
        };
        count(StatusClass::of(resp.status().as_u16()));
        self.note_ratelimit(resp.headers());
        Ok(resp)
    }
}

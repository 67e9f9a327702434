//! A small HTTP client for the tests, with the client side of the registry token dance done the
//! way Docker does it: on a `401` with a `Bearer` challenge, ask the realm for a token (with
//! Basic credentials if the session has some), then retry with `Authorization: Bearer`.
//!
//! - [`raw`]: one request, no dance (to look at challenges and refusals).
//! - [`request`]/[`get`]: anonymous, with the dance.
//! - [`request_as`]: with the dance as the given user.
//! - [`Session`]: a client that keeps its tokens per scope across requests, like one
//!   `docker pull` does; its [`Session::tokens_seen`] lists every token it was given.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, or the error that ended it.
    pub body: Result<Bytes, String>,
}

impl Resp {
    pub fn bytes(&self) -> &Bytes {
        match &self.body {
            Ok(b) => b,
            Err(e) => panic!("body failed: {e}"),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of the first error in an OCI error envelope ("" when there is none).
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(self.bytes()).unwrap_or_else(|_| {
            panic!(
                "not a JSON error envelope ({}): {:?}",
                self.status,
                String::from_utf8_lossy(self.bytes())
            )
        });
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.bytes()).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {:?}",
                self.status,
                String::from_utf8_lossy(self.bytes())
            )
        })
    }
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// One request with a body and no token dance.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Resp {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body)).expect("request");
    let c: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = match tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .expect("response in time")
    {
        Ok(r) => r,
        // The server closed the connection before any response (a fill that failed
        // before the first byte): no status at all, shown as 599 with the error.
        Err(e) => {
            return Resp {
                status: http::StatusCode::from_u16(599).expect("599 is a status"),
                headers: http::HeaderMap::new(),
                body: Err(format!("no response: {e}")),
            }
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .expect("body in time")
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    Resp {
        status,
        headers,
        body,
    }
}

/// One request, no token dance.
pub async fn raw(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    send(method, url, headers, Bytes::new()).await
}

/// An anonymous request with the token dance.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    request_as(method, url, headers, None).await
}

pub async fn get(url: &str) -> Resp {
    request("GET", url, &[]).await
}

/// A request with the token dance as `creds` (user, password), or anonymously.
pub async fn request_as(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    creds: Option<(&str, &str)>,
) -> Resp {
    Session::new(creds).request(method, url, headers).await
}

/// The value of `Authorization: Basic` for user and password.
pub fn basic(user: &str, password: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {enc}")
}

/// Percent-encodes a query value the way Go's `url.QueryEscape` does (Docker's client).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A `Bearer` challenge's parameters (a lenient parser, good enough for the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

pub fn parse_bearer(header: &str) -> Option<Bearer> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut params = HashMap::new();
    let mut s = rest;
    while let Some(eq) = s.find('=') {
        let key = s[..eq].trim().trim_start_matches(',').trim().to_lowercase();
        let after = &s[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.entry(key).or_insert_with(|| value.to_string());
        s = next;
    }
    Some(Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// A client session: credentials, and the tokens it was given, per scope.
#[derive(Clone)]
pub struct Session {
    creds: Option<(String, String)>,
    inner: Arc<Mutex<SessionState>>,
}

#[derive(Default)]
struct SessionState {
    /// scope ("" for the base endpoint) → token
    tokens: HashMap<String, String>,
    seen: Vec<String>,
    token_requests: u64,
}

impl Session {
    pub fn new(creds: Option<(&str, &str)>) -> Session {
        Session {
            creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            inner: Arc::default(),
        }
    }

    pub fn anonymous() -> Session {
        Session::new(None)
    }

    pub fn user(user: &str, password: &str) -> Session {
        Session::new(Some((user, password)))
    }

    /// Every token this session was given.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.inner.lock().expect("lock").seen.clone()
    }

    /// How many token requests this session made.
    pub fn token_requests(&self) -> u64 {
        self.inner.lock().expect("lock").token_requests
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.request("GET", url, &[]).await
    }

    /// Sends with the cached token for the URL's repository (if any); on a `401` with a
    /// `Bearer` challenge gets a token and retries once. A refused token request is returned
    /// as the answer.
    pub async fn request(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(method, url, headers, Bytes::new()).await
    }

    /// [`Session::request`] with a request body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let key = scope_of_url(url);
        let cached = self.inner.lock().expect("lock").tokens.get(&key).cloned();
        if let Some(t) = &cached {
            let r = self.with_token(method, url, headers, t, body.clone()).await;
            if r.status != StatusCode::UNAUTHORIZED {
                return r;
            }
        }
        let r = send(method, url, headers, body.clone()).await;
        if r.status != StatusCode::UNAUTHORIZED {
            return r;
        }
        let Some(ch) = r.header("www-authenticate").and_then(parse_bearer) else {
            return r;
        };
        let scopes: Vec<String> = ch.scope.clone().into_iter().collect();
        let token = match self.token(&ch.realm, ch.service.as_deref(), &scopes).await {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        self.inner
            .lock()
            .expect("lock")
            .tokens
            .insert(key, token.clone());
        self.with_token(method, url, headers, &token, body).await
    }

    async fn with_token(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        token: &str,
        body: Bytes,
    ) -> Resp {
        let bearer = format!("Bearer {token}");
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        h.push(("authorization", &bearer));
        send(method, url, &h, body).await
    }

    /// `GET realm?service=..&scope=..` with the session's Basic credentials; the token, or the
    /// refusal.
    pub async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, Resp> {
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = service {
            q.push(format!("service={}", query_escape(s)));
        }
        for s in scopes {
            q.push(format!("scope={}", query_escape(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", q.join("&"));
        let auth = self.creds.as_ref().map(|(u, p)| basic(u, p));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.inner.lock().expect("lock").token_requests += 1;
        let r = raw("GET", &url, &headers).await;
        if r.status != StatusCode::OK {
            return Err(r);
        }
        let v = r.json();
        let t = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .unwrap_or_else(|| panic!("no token in {v}"))
            .to_string();
        self.inner.lock().expect("lock").seen.push(t.clone());
        Ok(t)
    }
}

/// The pull scope a registry URL needs: `repository:<name>:pull`, or "" for `/v2/`.
fn scope_of_url(url: &str) -> String {
    let path = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(url)
        .split_once('/')
        .map(|(_, p)| p)
        .unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix("v2/") else {
        return String::new();
    };
    for marker in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = rest.find(marker) {
            return format!("repository:{}:pull", &rest[..i]);
        }
    }
    String::new()
}

#[test]
fn the_support_client_parses_challenges_and_scopes() {
    assert_eq!(
        parse_bearer(
            r#"Bearer realm="http://h:1/token",service="wharf",scope="repository:a/b:pull""#
        ),
        Some(Bearer {
            realm: "http://h:1/token".into(),
            service: Some("wharf".into()),
            scope: Some("repository:a/b:pull".into()),
        })
    );
    assert_eq!(parse_bearer(r#"Basic realm="x""#), None);
    assert_eq!(
        scope_of_url("http://h:1/v2/up.test/a/b/blobs/sha256:00?ns=x"),
        "repository:up.test/a/b:pull"
    );
    assert_eq!(scope_of_url("http://h:1/v2/"), "");
    assert_eq!(
        query_escape("repository:a/b:pull"),
        "repository%3Aa%2Fb%3Apull"
    );
}

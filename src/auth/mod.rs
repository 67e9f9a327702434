//! Client identity: who is asking, as far as the upstream is concerned.
//!
//! Wharf does not have users of its own. A client authenticates with the credentials it
//! would give the upstream; Wharf's `/token` endpoint exchanges them for a short-lived opaque
//! token that stands for that client session ([`Client`]). Misses are fetched upstream with
//! those credentials, and cached content is served only after the upstream has said (recently)
//! that those credentials may pull the repository (see `registry::authz`).
//!
//! Invariants:
//! - Credentials live only in memory, inside [`Client`], for the token's lifetime; they are
//!   never logged, persisted, or put in an error message. Persistent records and cache keys
//!   use the credential hash ([`Client::id`]).
//! - Tokens are 256-bit random strings; an unknown or expired token is treated as no
//!   authentication at all (the client gets a challenge and renews).

pub mod form;

use crate::upstream::Credentials;
use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use moka::future::Cache;
use ring::rand::SecureRandom;
use std::sync::Arc;
use std::time::Duration;

/// One client session: the credentials it presented (possibly none).
#[derive(Debug, Clone)]
pub struct Client {
    pub creds: Credentials,
    /// SHA-256 identity of `creds`, for cache keys and persistent decisions.
    pub id: [u8; 32],
}

impl Client {
    pub fn new(creds: Credentials) -> Client {
        Client {
            id: creds.hash(),
            creds,
        }
    }

    pub fn anonymous() -> Client {
        Client::new(Credentials::Anonymous)
    }

    pub fn is_anonymous(&self) -> bool {
        self.creds == Credentials::Anonymous
    }
}

/// What a request presented in its `Authorization` header.
pub enum Presented {
    Nothing,
    Client(Arc<Client>),
    /// A token Wharf does not know (expired, or issued before a restart), or garbage.
    Invalid,
}

/// The tokens Wharf has issued.
pub struct Sessions {
    tokens: Cache<String, Arc<Client>>,
    ttl: Duration,
    rng: ring::rand::SystemRandom,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            tokens: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
            ttl,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `client`.
    pub async fn issue(&self, client: Client) -> Option<String> {
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).ok()?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        self.tokens.insert(token.clone(), Arc::new(client)).await;
        Some(token)
    }

    /// Who a request is, from its `Authorization` header: a Wharf token, or Basic
    /// credentials sent directly (containerd's `hosts.toml` header).
    pub async fn identify(&self, headers: &HeaderMap) -> Presented {
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Presented::Nothing;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.tokens.get(rest.trim()).await {
                Some(c) => Presented::Client(c),
                None => Presented::Invalid,
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            return match parse_basic(rest) {
                Some(creds) => Presented::Client(Arc::new(Client::new(creds))),
                None => Presented::Invalid,
            };
        }
        Presented::Invalid
    }
}

/// Decodes the credentials of a Basic `Authorization` value (without the scheme).
pub fn parse_basic(b64: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, password) = s.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some(Credentials::basic(user, password))
}

/// The Basic credentials of a request's `Authorization` header, if that is what it carries.
pub fn basic_from_headers(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("basic")
        .then(|| parse_basic(rest))
        .flatten()
}

/// The challenge that sends clients to Wharf's token endpoint.
pub fn challenge(realm: &str, scope: Option<&str>) -> HeaderValue {
    let mut v = format!("Bearer realm=\"{realm}\",service=\"wharf\"");
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer service=\"wharf\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            parse_basic("YWxpY2U6czNjcmV0"),
            Some(Credentials::basic("alice", "s3cret"))
        );
        assert_eq!(parse_basic("bm9jb2xvbg=="), None, "no colon");
        assert_eq!(parse_basic("!!!"), None);
        assert_eq!(parse_basic("OnB3"), None, "empty user");
    }

    #[tokio::test]
    async fn issued_tokens_identify_their_client_and_unknown_ones_do_not() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s
            .issue(Client::new(Credentials::basic("a", "b")))
            .await
            .expect("token");
        assert!(t.len() >= 43);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).expect("h"),
        );
        match s.identify(&h).await {
            Presented::Client(c) => assert_eq!(c.creds, Credentials::basic("a", "b")),
            _ => panic!("token not recognised"),
        }
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(matches!(s.identify(&h).await, Presented::Invalid));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"),
        );
        assert!(matches!(s.identify(&h).await, Presented::Client(_)));
        assert!(matches!(
            s.identify(&HeaderMap::new()).await,
            Presented::Nothing
        ));
    }

    #[test]
    fn challenge_names_realm_service_and_scope() {
        let c = challenge("http://w:5000/token", Some("repository:a/b:pull"));
        assert_eq!(
            c.to_str().expect("ascii"),
            "Bearer realm=\"http://w:5000/token\",service=\"wharf\",scope=\"repository:a/b:pull\""
        );
    }
}

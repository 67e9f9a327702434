//! Client identity: who is asking, as far as the upstream is concerned.
//!
//! Wharf does not have users of its own. A client authenticates with the credentials it
//! would give the upstream; Wharf's `/token` endpoint exchanges them for a short-lived opaque
//! token that stands for that client session ([`Client`]). Misses are fetched upstream with
//! those credentials, and cached content is served only after the upstream has said (recently)
//! that those credentials may pull the repository (see `registry::access::authz`).
//!
//! Invariants:
//! - Credentials live only in memory, inside [`Client`], for the token's lifetime; they are
//!   never logged, persisted, or put in an error message. Persistent records and cache keys
//!   use the credential hash ([`Client::id`]).
//! - Tokens are 256-bit random strings; an unknown or expired token is treated as no
//!   authentication at all (the client gets a challenge and renews).
//! - A token stands for credentials only at the upstreams they were presented for (the
//!   upstreams of the scopes it was issued for, [`Client::for_upstream`]); at any other
//!   upstream its holder is anonymous, so one upstream's credentials never reach another.
//! - Memory is bounded whatever clients send: user names and passwords longer than
//!   [`MAX_USER`] / [`MAX_PASSWORD`] are refused, the sessions are weighed in bytes against
//!   [`SESSIONS_BUDGET`] (the oldest go first), and identical credentials for the same
//!   upstreams share one [`Client`].

pub mod checks;
mod credentials;
pub mod form;

use base64::Engine;
pub use credentials::Credentials;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use moka::future::Cache;
use ring::rand::SecureRandom;
use std::sync::Arc;
use std::time::Duration;

/// The longest user name Wharf takes (bytes).
pub const MAX_USER: usize = 256;
/// The longest password Wharf takes (bytes): room for cloud access tokens and JSON keys.
pub const MAX_PASSWORD: usize = 8 * 1024;
/// What all sessions together may weigh (bytes of tokens and credentials).
pub const SESSIONS_BUDGET: u64 = 64 << 20;

/// Whether a user name and password are within the limits.
pub fn within_limits(user: &str, password: &str) -> bool {
    user.len() <= MAX_USER && password.len() <= MAX_PASSWORD
}

/// One client session: the credentials it presented (possibly none).
#[derive(Debug, Clone)]
pub struct Client {
    pub creds: Credentials,
    /// SHA-256 identity of `creds`, for cache keys and persistent decisions.
    pub id: [u8; 32],
    /// The upstreams `creds` are for (a token's scopes); `None`: every upstream (Basic
    /// credentials sent with each request, or nothing at all).
    pub upstreams: Option<Arc<[String]>>,
}

impl Client {
    pub fn new(creds: Credentials) -> Client {
        Client {
            id: creds.hash(),
            creds,
            upstreams: None,
        }
    }

    /// A client whose credentials stand only at `upstreams`.
    pub fn bound(creds: Credentials, upstreams: Vec<String>) -> Client {
        Client {
            upstreams: Some(upstreams.into()),
            ..Client::new(creds)
        }
    }

    /// This client as `upstream` sees it: itself where its credentials are for that
    /// upstream, anonymous elsewhere.
    pub fn for_upstream(self: &Arc<Self>, upstream: &str) -> Arc<Client> {
        match &self.upstreams {
            Some(ups) if !ups.iter().any(|u| u == upstream) => Arc::new(Client::anonymous()),
            _ => self.clone(),
        }
    }

    /// Bytes this session holds, for the sessions' budget.
    fn weight(&self) -> usize {
        let creds = match &self.creds {
            Credentials::Anonymous => 0,
            Credentials::Basic { user, password } => user.len() + password.len(),
        };
        let ups = self
            .upstreams
            .as_ref()
            .map_or(0, |u| u.iter().map(|s| s.len() + 24).sum());
        creds + ups + 128
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
    /// The one [`Client`] of each (credentials, upstreams) with a live token.
    clients: Cache<Vec<u8>, Arc<Client>>,
    ttl: Duration,
    rng: ring::rand::SystemRandom,
    /// Throttling of upstream credential checks (`/token`).
    pub checks: checks::Checks,
    /// The one anonymous session: anonymous tokens are not stored ([`ANONYMOUS_PREFIX`]).
    anonymous: Arc<Client>,
}

/// What every anonymous token starts with: it stands for nothing anyone could not have by
/// asking, so it is recognised by its form and costs no memory (a flood of anonymous token
/// requests stores nothing).
pub const ANONYMOUS_PREFIX: &str = "anon.";

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        let weigh = |k: &String, c: &Arc<Client>| {
            // Shared credentials are counted per token: an upper bound of what is held.
            u32::try_from(k.len() + c.weight()).unwrap_or(u32::MAX)
        };
        Sessions {
            // Least recently used first: a flood of new sessions must not keep the ones in use
            // out (the default admission policy favours entries asked for before).
            tokens: Cache::builder()
                .max_capacity(SESSIONS_BUDGET)
                .weigher(weigh)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(ttl)
                .build(),
            clients: Cache::builder()
                .max_capacity(SESSIONS_BUDGET / 4)
                .weigher(|k: &Vec<u8>, c: &Arc<Client>| {
                    u32::try_from(k.len() + c.weight()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            ttl,
            rng: ring::rand::SystemRandom::new(),
            checks: checks::Checks::new(),
            anonymous: Arc::new(Client::anonymous()),
        }
    }

    /// The shared [`Client`] for `client`'s credentials and upstreams.
    async fn intern(&self, client: Client) -> Arc<Client> {
        let mut key = client.id.to_vec();
        for u in client.upstreams.iter().flat_map(|u| u.iter()) {
            key.push(0);
            key.extend_from_slice(u.as_bytes());
        }
        self.clients
            .get_with(key, async move { Arc::new(client) })
            .await
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `client`.
    pub async fn issue(&self, client: Client) -> Option<String> {
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).ok()?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        if client.is_anonymous() && client.upstreams.is_none() {
            return Some(format!("{ANONYMOUS_PREFIX}{token}"));
        }
        let client = self.intern(client).await;
        self.tokens.insert(token.clone(), client).await;
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
            if rest.trim().starts_with(ANONYMOUS_PREFIX) {
                return Presented::Client(self.anonymous.clone());
            }
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

/// Decodes the credentials of a Basic `Authorization` value (without the scheme); `None`
/// also for credentials over the length limits.
pub fn parse_basic(b64: &str) -> Option<Credentials> {
    if b64.len() > (MAX_USER + MAX_PASSWORD + 1).div_ceil(3) * 4 + 8 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, password) = s.split_once(':')?;
    if user.is_empty() || !within_limits(user, password) {
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

/// A challenge parameter as a quoted-string (RFC 9110): `"` and `\\` escaped, control
/// characters dropped, so no value can end its quotes and add a parameter.
fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The challenge that sends clients to Wharf's token endpoint.
pub fn challenge(realm: &str, scope: Option<&str>) -> HeaderValue {
    let mut v = format!("Bearer realm={},service=\"wharf\"", quoted(realm));
    if let Some(s) = scope {
        v.push_str(&format!(",scope={}", quoted(s)));
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
    fn credentials_stand_only_at_their_upstreams() {
        let alice = Arc::new(Client::bound(
            Credentials::basic("alice", "pw"),
            vec!["docker.io".into()],
        ));
        assert_eq!(alice.for_upstream("docker.io").creds, alice.creds);
        assert!(alice.for_upstream("ghcr.io").is_anonymous());
        let direct = Arc::new(Client::new(Credentials::basic("alice", "pw")));
        assert!(!direct.for_upstream("ghcr.io").is_anonymous());
    }

    #[test]
    fn over_long_credentials_are_refused() {
        use base64::Engine as _;
        let enc = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let ok = format!("{}:{}", "u".repeat(MAX_USER), "p".repeat(MAX_PASSWORD));
        assert!(parse_basic(&enc(ok)).is_some());
        let long_pw = format!("u:{}", "p".repeat(MAX_PASSWORD + 1));
        assert_eq!(parse_basic(&enc(long_pw)), None);
        let long_user = format!("{}:p", "u".repeat(MAX_USER + 1));
        assert_eq!(parse_basic(&enc(long_user)), None);
    }

    #[tokio::test]
    async fn identical_credentials_share_one_client() {
        let s = Sessions::new(Duration::from_secs(60));
        let bound = || Client::bound(Credentials::basic("a", "b"), vec!["u".into()]);
        let (t1, t2) = (
            s.issue(bound()).await.expect("t"),
            s.issue(bound()).await.expect("t"),
        );
        assert_ne!(t1, t2);
        let (a, b) = (
            s.tokens.get(&t1).await.expect("a"),
            s.tokens.get(&t2).await.expect("b"),
        );
        assert!(Arc::ptr_eq(&a, &b));
        let other = s
            .issue(Client::bound(
                Credentials::basic("a", "b"),
                vec!["v".into()],
            ))
            .await;
        let c = s.tokens.get(&other.expect("t")).await.expect("c");
        assert!(!Arc::ptr_eq(&a, &c), "other upstreams, another session");
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

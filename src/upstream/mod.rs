//! One upstream registry: its client, its auth (token dance) and redirect handling.
//!
//! Invariants:
//! - `Authorization` is only ever sent to the upstream's own scheme+host+port. Redirects to
//!   another host (a CDN for blobs) are followed without it.
//! - A bearer token is obtained once per (credentials, scope) and reused until shortly before it
//!   expires; concurrent requests that need the same token wait for one token request.
//! - Tokens and passwords are never logged or put in error messages.
//! - Every pull request (manifests, blobs, tags lists) and token request keeps the redirect
//!   and address policy of [`redirect`] (`send`, `guard`).

mod auth;
pub mod breaker;
pub mod challenge;
pub mod client;
mod guard;
pub mod health;
mod push;
pub mod realm;
pub(crate) mod redirect;
mod send;
pub(crate) mod token;

use crate::config::UpstreamConfig;
use crate::error::{Error, Result};
use crate::metrics::{StatusClass, UpstreamKind};
use crate::oci::RepoName;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use hyper::body::Incoming;
pub use push::Payload;
use send::describe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use token::Credentials;

const RETRY_BASE: Duration = Duration::from_millis(100);

/// How the upstream wants to be authenticated, learned from its first challenge.
#[derive(Debug, Clone)]
enum AuthScheme {
    Bearer {
        realm: String,
        service: Option<String>,
        /// The realm may receive credentials (see [`realm`]); otherwise it is asked
        /// anonymously.
        trusted: bool,
    },
    Basic,
}

pub struct Upstream {
    pub cfg: UpstreamConfig,
    client: client::HttpClient,
    /// For pushes (streamed request bodies); only with `allow_push`.
    push_client: Option<client::StreamingClient>,
    /// The upstream's `/v2/` was asked how it authenticates (see `push`).
    push_probed: std::sync::atomic::AtomicBool,
    tokens: token::TokenCache,
    scheme: Mutex<Option<AuthScheme>>,
    breaker: breaker::Breaker,
    health: health::Health,
    /// Tags that never change once cached.
    immutable: Option<regex::RegexSet>,
    /// Never contact this upstream.
    offline: bool,
    /// A foreign realm was logged already (it is logged once).
    realm_warned: std::sync::atomic::AtomicBool,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.cfg.name)
            .finish()
    }
}

impl Upstream {
    pub fn new(
        cfg: UpstreamConfig,
        offline: bool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> std::result::Result<Upstream, String> {
        let p = &cfg.policy;
        let client_cert = cfg
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let (url, ca) = (&cfg.url, cfg.ca_file.as_deref());
        let named = |e| format!("upstream {}: {e}", cfg.name);
        let client =
            client::build_upstream(url, ca, client_cert, p.connect_timeout).map_err(named)?;
        let push_client = if cfg.allow_push {
            Some(client::build_upstream(url, ca, client_cert, p.connect_timeout).map_err(named)?)
        } else {
            None
        };
        let immutable = if p.immutable_tags.is_empty() {
            None
        } else {
            Some(
                regex::RegexSet::new(&p.immutable_tags)
                    .map_err(|e| format!("upstream {}: immutable_tags: {e}", cfg.name))?,
            )
        };
        Ok(Upstream {
            client,
            push_client,
            push_probed: std::sync::atomic::AtomicBool::new(false),
            tokens: token::TokenCache::new(),
            scheme: Mutex::new(None),
            breaker: breaker::Breaker::new(p.breaker_failures, p.breaker_cooldown),
            health: health::Health::new(),
            immutable,
            offline,
            realm_warned: Default::default(),
            metrics,
            cfg,
        })
    }

    /// Whether `tag` never changes once cached (`immutable_tags`).
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable.as_ref().is_some_and(|s| s.is_match(tag))
    }

    /// Whether the breaker currently holds requests back.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// The rate-limit count and the last failure (for the admin API).
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// A failed request: counted against the breaker and remembered as the last error.
    fn failed(&self, what: &str) {
        self.breaker.failure();
        self.health.note_error(what);
    }

    /// Records Docker Hub's `ratelimit-remaining` / `ratelimit-limit` (`"76;w=21600"`).
    fn note_ratelimit(&self, headers: &HeaderMap) {
        let value = |name: &str| ratelimit_value(headers, name);
        if let Some(v) = value("ratelimit-remaining") {
            self.health.note_remaining(v);
            self.metrics
                .ratelimit_remaining
                .with_label_values(&[self.name()])
                .set(v);
        }
        if let Some(v) = value("ratelimit-limit") {
            self.metrics
                .ratelimit_limit
                .with_label_values(&[self.name()])
                .set(v);
        }
    }

    fn offline_error(&self) -> Error {
        Error::unreachable(self.name(), "offline mode: upstreams are never contacted")
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The credentials the proxy itself uses with this upstream (configured, or anonymous).
    pub fn own_credentials(&self) -> Credentials {
        match (&self.cfg.username, &self.cfg.password) {
            (Some(u), Some(p)) => Credentials::basic(u, p),
            _ => Credentials::Anonymous,
        }
    }

    /// The credentials to use upstream for a client: its own, or (for clients that brought
    /// none) the proxy's configured ones.
    pub fn creds_for(&self, client: &crate::auth::Client) -> Credentials {
        if client.is_anonymous() {
            self.own_credentials()
        } else {
            client.creds.clone()
        }
    }

    /// The identity under which the upstream sees `client`: decisions about what it may pull
    /// are about these credentials (for a client without any, the configured ones).
    pub fn effective_client(&self, client: &crate::auth::Client) -> crate::auth::Client {
        if client.is_anonymous() && self.cfg.username.is_some() {
            crate::auth::Client::new(self.own_credentials())
        } else {
            client.clone()
        }
    }

    /// Counts one finished upstream request (`kind`: manifest, blob, ...) by outcome class,
    /// with its duration since `started`.
    pub(crate) fn count_request(
        &self,
        method: &Method,
        kind: UpstreamKind,
        started: tokio::time::Instant,
        class: StatusClass,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .upstream_request(self.name(), method, kind, class, seconds);
    }

    fn url(&self, path_and_query: &str) -> Result<Uri> {
        let base = self.cfg.url.to_string();
        let base = base.trim_end_matches('/');
        format!("{base}{path_and_query}")
            .parse()
            .map_err(|e| Error::internal(format!("bad upstream url: {e}")))
    }

    /// Sends `method` to `/v2/<repo>/<tail>` (tail includes any query), authenticating with
    /// `creds` as the upstream demands, following redirects. Any status is returned to the
    /// caller; only transport failures are errors.
    pub async fn send(
        &self,
        method: Method,
        repo: &RepoName,
        tail: &str,
        headers: &HeaderMap,
        creds: &Credentials,
    ) -> Result<Response<Incoming>> {
        if self.offline {
            return Err(self.offline_error());
        }
        let uri = self.url(&format!("/v2/{}/{}", repo.as_str(), tail))?;
        let scope = format!("repository:{}:pull", repo.as_str());
        let auth = self.authorization(creds, &scope, false).await?;
        let resp = self
            .send_following(&method, &uri, headers, auth.as_ref())
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // Learn (or re-learn) how this upstream authenticates, then try once more.
        let Some(challenge_scope) = self.learn_scheme(&resp) else {
            return Ok(resp);
        };
        let scope_for_token = challenge_scope.unwrap_or(scope);
        let auth = self.authorization(creds, &scope_for_token, true).await?;
        if auth.is_none() {
            return Ok(resp);
        }
        self.send_following(&method, &uri, headers, auth.as_ref())
            .await
    }
}

/// The count in a Docker Hub rate-limit header (`76;w=21600` → 76).
fn ratelimit_value(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .trim()
        .parse::<i64>()
        .ok()
}

/// A factor in [0.5, 1.5) from the clock's low bits: enough to spread retries apart.
pub(crate) fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    0.5 + f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn docker_hub_rate_limit_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from_static(" 76;w=21600"),
        );
        h.insert("ratelimit-bad", HeaderValue::from_static("lots"));
        assert_eq!(ratelimit_value(&h, "ratelimit-limit"), Some(100));
        assert_eq!(ratelimit_value(&h, "ratelimit-remaining"), Some(76));
        assert_eq!(ratelimit_value(&h, "ratelimit-bad"), None);
        assert_eq!(ratelimit_value(&h, "absent"), None);
    }
}

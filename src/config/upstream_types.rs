//! The validated shape of one `[[upstream]]` (see `upstream` for its validation).

use crate::oci::pattern::Rules;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One upstream registry. `Debug` redacts the password.
#[derive(Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Scheme and authority only (path "/").
    pub url: http::Uri,
    /// True for the one default upstream.
    pub default: bool,
    pub aliases: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub tag_ttl: Duration,
    /// Forward pushes (uploads, manifest `PUT`s, `DELETE`s) to this upstream with the
    /// client's own credentials; off: they answer `405 UNSUPPORTED`.
    pub allow_push: bool,
    /// How long a referrers list is served from memory before the upstream is asked again
    /// (zero: every time; a cached list still serves while the upstream fails).
    pub referrers_ttl: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Client certificate and key (PEM) for upstreams that require mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Host names (lowercase, no port) whose requests go to this upstream whatever the path
    /// says: one `docker login` per upstream.
    pub hosts: Vec<String>,
    /// Hosts besides the upstream's own (and its registrable domain) that may receive
    /// credentials as the token realm of its challenges (lowercase).
    pub token_realm_hosts: Vec<String>,
    /// Which repositories are served (`allow`, `deny`; see `oci::pattern`).
    pub rules: Rules,
    /// Bytes of blobs this upstream's repositories may hold (`None`: only `cache.max_size`).
    pub max_size: Option<u64>,
    pub policy: UpstreamPolicy,
}

/// How Wharf treats an upstream that is slow, failing or rate-limiting.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPolicy {
    /// Regexes (validated) of tags that never change once cached: never revalidated.
    pub immutable_tags: Vec<String>,
    /// Serve a stale tag at once and revalidate it in the background.
    pub stale_while_revalidate: bool,
    /// How long past `tag_ttl` a tag may be served when the upstream fails.
    pub stale_if_error: Duration,
    /// How long an upstream 404 for a manifest is remembered (zero: not at all).
    pub negative_ttl: Duration,
    pub connect_timeout: Duration,
    /// Until the upstream's response headers.
    pub response_timeout: Duration,
    /// Extra attempts for idempotent requests that failed before any byte reached a client.
    pub retries: u32,
    /// Consecutive failures that open the circuit breaker (0: never).
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            immutable_tags: Vec::new(),
            stale_while_revalidate: false,
            stale_if_error: Duration::from_secs(7 * 24 * 3600),
            negative_ttl: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            retries: 2,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("default", &self.default)
            .field("aliases", &self.aliases)
            .field("ca_file", &self.ca_file)
            .field("tag_ttl", &self.tag_ttl)
            .field("allow_push", &self.allow_push)
            .field("referrers_ttl", &self.referrers_ttl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_cert", &self.client_cert)
            .field("hosts", &self.hosts)
            .field("token_realm_hosts", &self.token_realm_hosts)
            .field("rules", &self.rules)
            .field("max_size", &self.max_size)
            .field("policy", &self.policy)
            .finish()
    }
}

impl UpstreamConfig {
    /// Whether `name` is this upstream's name or one of its aliases (ASCII case-insensitive).
    pub fn matches(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Docker Hub needs `library/` for single-component names and has its own quirks.
    pub fn is_docker_hub(&self) -> bool {
        let host = self.url.host().unwrap_or("");
        self.matches("docker.io")
            || host.eq_ignore_ascii_case("registry-1.docker.io")
            || host.eq_ignore_ascii_case("index.docker.io")
    }
}

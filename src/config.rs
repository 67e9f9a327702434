//! The TOML configuration, its defaults and its validation.
//!
//! Loading is two-phase: the file is deserialized into a raw shape whose leaves are
//! untyped TOML values (see `raw`), then validated into [`Config`] while collecting
//! every problem, each naming its key path (`upstream[2].url: ...`). Invariants of a
//! [`Config`] that exists: all sizes are > 0, fill timeouts are > 0, upstream names
//! and aliases are unique and well-formed, and at most one upstream is the default
//! (see `upstream` for the rest). A file without `[[upstream]]` gets the built-in
//! public upstreams of [`EMBEDDED_DEFAULT`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cluster;
mod connections;
mod defaults;
mod pem;
mod raw;
mod sections;
mod units;
mod upstream;

pub use cluster::{peer_url, ClusterConfig, Peers, S3Config, StorageConfig};
pub use connections::ConnectionLimits;
pub use defaults::{EMBEDDED_DEFAULT, EXAMPLE};
use sections::positive_duration;
pub use units::{parse_duration, parse_size};

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 5000);
const DEFAULT_DATA_DIR: &str = "./wharf-data";
const DEFAULT_MAX_SIZE: u64 = 50 << 30;
const DEFAULT_FILL_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_FILL_MAX_CONCURRENT: u32 = 64;
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);
const DEFAULT_AUTHZ_TTL: Duration = Duration::from_secs(300);
const DEFAULT_OFFLINE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// What client connections may hold, on both listeners.
    pub connections: ConnectionLimits,
    /// Never contact any upstream; serve the cache only.
    pub offline: bool,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cache: CacheConfig,
    pub fill: FillConfig,
    pub auth: AuthConfig,
    /// HTTPS on the registry listener.
    pub tls: Option<TlsConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    /// Blobs and manifests shared with other replicas (`[storage]`).
    pub storage: StorageConfig,
    /// The replicas sharing that storage (`[cluster]`).
    pub cluster: Option<ClusterConfig>,
}

/// `[tls]`: PEM certificate chain and key, re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Client authentication and authorization on cache hits.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Lifetime of the tokens Wharf issues at `/token`; > 0.
    pub token_ttl: Duration,
    /// How long a positive "this client may pull this repository" decision is reused
    /// before the upstream is asked again; > 0.
    pub authz_ttl: Duration,
    /// With the upstream unreachable, how old a client's last positive decision may be for
    /// cached content to be served to it; > 0.
    pub offline_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl: DEFAULT_TOKEN_TTL,
            authz_ttl: DEFAULT_AUTHZ_TTL,
            offline_grace: DEFAULT_OFFLINE_GRACE,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Bytes; > 0.
    pub max_size: u64,
    /// Fractions of `max_size`: eviction starts above `high` and stops below `low`;
    /// 0 < low < high <= 1.
    pub high_watermark: f64,
    pub low_watermark: f64,
    /// Images whose blobs are never evicted.
    pub pin: Vec<Pin>,
}

/// `<upstream>/<repo>:<tag glob>` from `cache.pin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub upstream: String,
    pub repo: String,
    /// `*` matches any run of characters.
    pub tag_glob: String,
}

impl Pin {
    /// Parses `<upstream>/<repo>:<tag glob>`.
    pub fn parse(s: &str) -> Result<Pin, String> {
        let (image, tag) = s
            .rsplit_once(':')
            .filter(|(i, _)| i.contains('/'))
            .ok_or_else(|| format!("expected \"<upstream>/<repo>:<tag pattern>\", got {s:?}"))?;
        let (upstream, repo) = image
            .split_once('/')
            .ok_or_else(|| format!("expected an upstream name before the repository in {s:?}"))?;
        if upstream.is_empty() || repo.is_empty() || tag.is_empty() {
            return Err(format!(
                "expected \"<upstream>/<repo>:<tag pattern>\", got {s:?}"
            ));
        }
        Ok(Pin {
            upstream: upstream.to_string(),
            repo: repo.to_string(),
            tag_glob: tag.to_string(),
        })
    }

    pub fn matches_tag(&self, tag: &str) -> bool {
        glob(self.tag_glob.as_bytes(), tag.as_bytes())
    }
}

/// `*`-only glob match.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FillConfig {
    /// Whole upstream blob fetch; > 0.
    pub timeout: Duration,
    /// Longest gap between body chunks from upstream; > 0.
    pub idle_timeout: Duration,
    /// Blob fills running at once (clients joining a running fill do not count); > 0.
    pub max_concurrent: u32,
}

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

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Key path such as `upstream[2].url`; empty for whole-file problems (TOML syntax).
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

/// Every problem found in a config file (never empty).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Problem collector shared by the validation steps.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            problem: problem.into(),
        });
    }
}

fn validate(raw: raw::RawConfig, unknown: Vec<String>) -> Result<Config, ConfigErrors> {
    let mut p = Problems::default();
    for key in unknown {
        p.push(key, "unknown key");
    }
    let (listen, admin_listen, data_dir) = sections::server(&mut p, &raw);
    let offline = raw::boolean(&mut p, "offline", raw.offline.as_ref()).unwrap_or(false);
    let connections = connections::validate(&mut p, &raw);
    let upstreams = sections::upstreams(&mut p, &raw);
    let cache = sections::cache(&mut p, raw.cache.unwrap_or_default());
    let fill = sections::fill(&mut p, raw.fill.unwrap_or_default());
    let tls = raw.tls.and_then(|t| sections::tls(&mut p, t));
    let auth = sections::auth(&mut p, raw.auth.unwrap_or_default());
    let storage = cluster::storage(&mut p, raw.storage);
    let cluster = cluster::cluster(&mut p, raw.cluster);
    if !p.0.is_empty() {
        return Err(ConfigErrors(p.0));
    }
    Ok(Config {
        listen,
        connections,
        offline,
        admin_listen,
        data_dir,
        cache,
        fill,
        auth,
        tls,
        upstreams,
        storage,
        cluster,
    })
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigErrors> {
        match raw::parse(s) {
            Ok((raw, unknown)) => validate(raw, unknown),
            Err(e) => Err(ConfigErrors(vec![ConfigError {
                key: String::new(),
                problem: e.to_string().trim_end().to_string(),
            }])),
        }
    }

    /// Reads, parses and validates a config file. Whole-file problems (unreadable,
    /// TOML syntax) are keyed by the file's path.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: path.display().to_string(),
                problem: format!("cannot read config file: {e}"),
            }])
        })?;
        Config::from_toml_str(&text).map_err(|ConfigErrors(mut errs)| {
            for e in &mut errs {
                if e.key.is_empty() {
                    e.key = path.display().to_string();
                }
            }
            ConfigErrors(errs)
        })
    }

    /// The built-in configuration ([`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT)
            .expect("EMBEDDED_DEFAULT is a valid config (checked by a unit test)")
    }

    /// The upstream for repositories without a known upstream prefix.
    pub fn default_upstream(&self) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.default)
    }

    /// The upstream with this name or alias (ASCII case-insensitive).
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.matches(name))
    }
}

#[cfg(test)]
mod tests;

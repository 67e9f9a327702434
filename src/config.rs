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

mod admin;
mod cluster;
mod connections;
mod defaults;
mod notify;
mod pem;
mod pin;
mod raw;
mod rules;
mod sections;
mod units;
mod upstream;
mod upstream_types;

pub use admin::{parse_token, read_token, AdminConfig, AdminToken, MIN_TOKEN_LEN};
pub use cluster::{peer_url, ClusterConfig, Peers, S3Config, StorageConfig};
pub use connections::ConnectionLimits;
pub use defaults::{EMBEDDED_DEFAULT, EXAMPLE};
pub use notify::{NotifyConfig, NotifyEvent, NotifySink};
pub use pin::Pin;
use sections::positive_duration;
pub use units::{parse_duration, parse_size};
pub use upstream_types::{UpstreamConfig, UpstreamPolicy};

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
    /// Where events are sent (`[[notify]]`).
    pub notify: Vec<NotifyConfig>,
    /// The admin API's token (`[admin]`).
    pub admin: AdminConfig,
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
    /// Blobs and manifests not served for this long are removed (`None`: never).
    pub max_idle: Option<Duration>,
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
    let notify = notify::validate(&mut p, raw.notify.as_deref().unwrap_or_default());
    let admin = admin::admin(&mut p, raw.admin);
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
        notify,
        admin,
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

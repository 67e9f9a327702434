//! `[storage]` (where verified blobs and manifests live beside the local cache) and
//! `[cluster]` (the replicas that share that storage and split the upstream fetches).
//!
//! Invariants of a validated config: `backend = "s3"` has a bucket, credentials (from the
//! file, a file, or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`) and a parseable endpoint;
//! a `[cluster]` has an `advertise` URL (or `WHARF_CLUSTER_ADVERTISE`) and either `peers`
//! or `peers_dns`, never both; every peer is an `http(s)://host:port` URL without a path.

use super::raw::{self, RawCluster, RawStorage};
use super::{positive_duration, Problems};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where blobs, manifests and tag resolutions are shared between replicas.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StorageConfig {
    /// Only the local data_dir (the default).
    #[default]
    Filesystem,
    S3(S3Config),
}

#[derive(Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// The S3 API's base URL (`None`: AWS, from the region).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub path_style: bool,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Answer GETs of blobs in the bucket with a redirect to a pre-signed URL.
    pub redirect: bool,
    /// PEM certificates trusted for an `https://` endpoint, beside the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("redirect", &self.redirect)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How the replicas find each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Peers {
    /// A fixed list of base URLs (may include this replica's own).
    Static(Vec<String>),
    /// `host:port` whose A/AAAA records are the replicas (`http://<ip>:<port>` each).
    Dns { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This replica's base URL as its peers reach it.
    pub advertise: String,
    pub peers: Peers,
    /// How long connecting to a peer may take before it counts as down.
    pub peer_timeout: Duration,
    /// PEM certificates trusted for `https://` peers, beside the system's roots.
    pub ca_file: Option<PathBuf>,
}

const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks a peer base URL: `http(s)://host:port`, no path, query or credentials.
pub fn peer_url(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    }
    let Some(auth) = uri.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("{s:?} must not carry credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{s:?} must not have a path or query"));
    }
    Ok(format!("{}://{}", uri.scheme_str().unwrap_or("http"), auth))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(super) fn storage(p: &mut Problems, raw: Option<RawStorage>) -> StorageConfig {
    let Some(r) = raw else {
        return StorageConfig::Filesystem;
    };
    let backend = raw::string(p, "storage.backend", r.backend.as_ref());
    match backend.as_deref() {
        None | Some("filesystem") => {
            let set: Vec<&str> = [
                ("bucket", r.bucket.is_some()),
                ("endpoint", r.endpoint.is_some()),
                ("redirect", r.redirect.is_some()),
                ("ca_file", r.ca_file.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            if !set.is_empty() {
                p.push(
                    "storage.backend",
                    format!(
                        "{} only apply to backend = \"s3\"; set backend = \"s3\" or remove them",
                        set.join(", ")
                    ),
                );
            }
            StorageConfig::Filesystem
        }
        Some("s3") => s3(p, r).map_or(StorageConfig::Filesystem, StorageConfig::S3),
        Some(other) => {
            p.push(
                "storage.backend",
                format!("unknown backend {other:?}: expected \"filesystem\" or \"s3\""),
            );
            StorageConfig::Filesystem
        }
    }
}

fn s3(p: &mut Problems, r: RawStorage) -> Option<S3Config> {
    let bucket = raw::string(p, "storage.bucket", r.bucket.as_ref());
    if bucket.is_none() && r.bucket.is_none() {
        p.push("storage.bucket", "required with backend = \"s3\"");
    }
    let endpoint = raw::string(p, "storage.endpoint", r.endpoint.as_ref());
    if let Some(e) = &endpoint {
        if let Err(problem) = peer_url(e) {
            p.push("storage.endpoint", problem);
        }
    }
    let region = raw::string(p, "storage.region", r.region.as_ref())
        .unwrap_or_else(|| "us-east-1".to_string());
    let key_id = raw::string(p, "storage.access_key_id", r.access_key_id.as_ref())
        .or_else(|| env_nonempty("AWS_ACCESS_KEY_ID"));
    let secret = secret(p, &r);
    if key_id.is_none() {
        p.push(
            "storage.access_key_id",
            "required with backend = \"s3\" (or set AWS_ACCESS_KEY_ID)",
        );
    }
    if secret.is_none() && r.secret_access_key_file.is_none() {
        p.push(
            "storage.secret_access_key",
            "required with backend = \"s3\" (or secret_access_key_file, or AWS_SECRET_ACCESS_KEY)",
        );
    }
    let path_style = raw::boolean(p, "storage.path_style", r.path_style.as_ref()).unwrap_or(false);
    let redirect = raw::boolean(p, "storage.redirect", r.redirect.as_ref()).unwrap_or(false);
    let prefix = prefix(p, &r);
    let ca_file = super::pem::ca_file(p, "storage.ca_file", r.ca_file.as_ref());
    Some(S3Config {
        bucket: bucket?,
        endpoint,
        region,
        access_key_id: key_id?,
        secret_access_key: secret?,
        path_style,
        prefix,
        redirect,
        ca_file,
    })
}

/// `storage.secret_access_key`, or the content of `secret_access_key_file` (not both), or
/// `AWS_SECRET_ACCESS_KEY`.
fn secret(p: &mut Problems, r: &RawStorage) -> Option<String> {
    match (
        raw::string(p, "storage.secret_access_key", r.secret_access_key.as_ref()),
        raw::string(
            p,
            "storage.secret_access_key_file",
            r.secret_access_key_file.as_ref(),
        ),
    ) {
        (Some(_), Some(_)) => {
            p.push(
                "storage.secret_access_key_file",
                "set either secret_access_key or secret_access_key_file, not both",
            );
            None
        }
        (Some(s), None) => Some(s),
        (None, Some(f)) => match std::fs::read_to_string(Path::new(&f)) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Ok(_) => {
                p.push("storage.secret_access_key_file", format!("{f} is empty"));
                None
            }
            Err(e) => {
                p.push("storage.secret_access_key_file", format!("{f}: {e}"));
                None
            }
        },
        (None, None) => env_nonempty("AWS_SECRET_ACCESS_KEY"),
    }
}

/// `storage.prefix`, without leading or trailing `/`; only plain path segments.
fn prefix(p: &mut Problems, r: &RawStorage) -> String {
    let prefix = raw::string(p, "storage.prefix", r.prefix.as_ref())
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    if prefix
        .split('/')
        .any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty()))
    {
        p.push(
            "storage.prefix",
            "must be path segments without empty, \".\" or \"..\" parts",
        );
    }
    prefix
}

pub(super) fn cluster(p: &mut Problems, raw: Option<RawCluster>) -> Option<ClusterConfig> {
    let r = raw?;
    let advertise = env_nonempty("WHARF_CLUSTER_ADVERTISE")
        .or_else(|| raw::string(p, "cluster.advertise", r.advertise.as_ref()));
    let advertise = match advertise {
        None => {
            p.push(
                "cluster.advertise",
                "required: this replica's URL as its peers reach it (or set WHARF_CLUSTER_ADVERTISE)",
            );
            None
        }
        Some(a) => peer_url(&a)
            .map_err(|e| p.push("cluster.advertise", e))
            .ok(),
    };
    let peer_timeout = positive_duration(
        p,
        "cluster.peer_timeout",
        r.peer_timeout.as_ref(),
        DEFAULT_PEER_TIMEOUT,
    );
    let peers = match (r.peers.as_ref(), r.peers_dns.as_ref()) {
        (Some(_), Some(_)) => {
            p.push(
                "cluster.peers_dns",
                "set either peers or peers_dns, not both",
            );
            None
        }
        (None, None) => {
            p.push(
                "cluster.peers",
                "required: a list of the replicas' URLs, or peers_dns",
            );
            None
        }
        (Some(v), None) => {
            let list = raw::string_list(p, "cluster.peers", Some(v));
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match peer_url(s) {
                    Ok(u) if !out.contains(&u) => out.push(u),
                    Ok(_) => {}
                    Err(e) => p.push(format!("cluster.peers[{i}]"), e),
                }
            }
            Some(Peers::Static(out))
        }
        (None, Some(v)) => {
            let s = raw::string(p, "cluster.peers_dns", Some(v))?;
            match s.rsplit_once(':').map(|(h, port)| (h, port.parse::<u16>())) {
                Some((h, Ok(port))) if !h.is_empty() && port > 0 => Some(Peers::Dns {
                    host: h.trim_matches(['[', ']']).to_string(),
                    port,
                }),
                _ => {
                    p.push(
                        "cluster.peers_dns",
                        format!("{s:?} must be host:port (the replicas' port)"),
                    );
                    None
                }
            }
        }
    };
    let ca_file = super::pem::ca_file(p, "cluster.ca_file", r.ca_file.as_ref());
    Some(ClusterConfig {
        advertise: advertise?,
        peers: peers?,
        peer_timeout,
        ca_file,
    })
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

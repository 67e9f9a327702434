//! The raw, untyped shape of the config file and the leaf-value helpers.
//!
//! Leaves are kept as [`toml::Value`] so that a wrong type is a validation problem
//! naming its key (reported together with every other problem), not a fatal
//! deserialization error. Unknown keys are collected with `serde_ignored` and
//! rendered as `upstream[0].tag_tll`.

use serde::Deserialize;
use toml::Value;

use super::Problems;

#[derive(Deserialize, Default)]
pub(super) struct RawConfig {
    pub listen: Option<Value>,
    pub max_connections: Option<Value>,
    pub max_connections_per_ip: Option<Value>,
    pub admin_max_connections: Option<Value>,
    pub header_read_timeout: Option<Value>,
    pub idle_timeout: Option<Value>,
    pub request_body_timeout: Option<Value>,
    pub http2_keepalive_interval: Option<Value>,
    pub http2_keepalive_timeout: Option<Value>,
    pub data_dir: Option<Value>,
    pub cache: Option<RawCache>,
    pub offline: Option<Value>,
    pub admin_listen: Option<Value>,
    pub fill: Option<RawFill>,
    pub auth: Option<RawAuth>,
    pub tls: Option<RawTls>,
    pub upstream: Option<Vec<RawUpstream>>,
    pub storage: Option<RawStorage>,
    pub cluster: Option<RawCluster>,
    pub notify: Option<Vec<RawNotify>>,
    pub admin: Option<RawAdmin>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAdmin {
    pub token_file: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCache {
    pub max_size: Option<Value>,
    pub high_watermark: Option<Value>,
    pub low_watermark: Option<Value>,
    pub pin: Option<Value>,
    pub max_idle: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawStorage {
    pub backend: Option<Value>,
    pub bucket: Option<Value>,
    pub endpoint: Option<Value>,
    pub region: Option<Value>,
    pub access_key_id: Option<Value>,
    pub secret_access_key: Option<Value>,
    pub secret_access_key_file: Option<Value>,
    pub path_style: Option<Value>,
    pub prefix: Option<Value>,
    pub redirect: Option<Value>,
    pub ca_file: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawCluster {
    pub advertise: Option<Value>,
    pub peers: Option<Value>,
    pub peers_dns: Option<Value>,
    pub peer_timeout: Option<Value>,
    pub ca_file: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawNotify {
    pub name: Option<Value>,
    pub url: Option<Value>,
    pub file: Option<Value>,
    pub events: Option<Value>,
    pub headers: Option<Value>,
    pub timeout: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawFill {
    pub timeout: Option<Value>,
    pub idle_timeout: Option<Value>,
    pub max_concurrent: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawTls {
    pub cert_file: Option<Value>,
    pub key_file: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAuth {
    pub token_ttl: Option<Value>,
    pub authz_ttl: Option<Value>,
    pub offline_grace: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawUpstream {
    pub name: Option<Value>,
    pub url: Option<Value>,
    pub default: Option<Value>,
    pub aliases: Option<Value>,
    pub ca_file: Option<Value>,
    pub tag_ttl: Option<Value>,
    pub allow_push: Option<Value>,
    pub referrers_ttl: Option<Value>,
    pub username: Option<Value>,
    pub password: Option<Value>,
    pub client_cert_file: Option<Value>,
    pub client_key_file: Option<Value>,
    pub hosts: Option<Value>,
    pub token_realm_hosts: Option<Value>,
    pub immutable_tags: Option<Value>,
    pub allow: Option<Value>,
    pub max_size: Option<Value>,
    pub deny: Option<Value>,
    pub stale_while_revalidate: Option<Value>,
    pub stale_if_error: Option<Value>,
    pub negative_ttl: Option<Value>,
    pub connect_timeout: Option<Value>,
    pub response_timeout: Option<Value>,
    pub retries: Option<Value>,
    pub breaker_failures: Option<Value>,
    pub breaker_cooldown: Option<Value>,
}

/// Renders a serde_ignored path as `a.b[2].c`.
fn render(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            render(parent, out);
            out.push_str(&format!("[{index}]"));
        }
        Path::Map { parent, key } => {
            render(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render(parent, out),
    }
}

/// Parses TOML into the raw shape; returns the unknown keys' paths alongside.
pub(super) fn parse(s: &str) -> Result<(RawConfig, Vec<String>), toml::de::Error> {
    let de = toml::Deserializer::parse(s)?;
    let mut unknown = Vec::new();
    let raw = serde_ignored::deserialize(de, |path| {
        let mut key = String::new();
        render(&path, &mut key);
        unknown.push(key);
    })?;
    Ok((raw, unknown))
}

/// The TOML type name of a value, for messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// A string leaf; None when absent or (after recording a problem) of another type.
pub(super) fn string(p: &mut Problems, key: &str, v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        other => {
            p.push(key, format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

/// A boolean leaf; None when absent or of another type.
pub(super) fn boolean(p: &mut Problems, key: &str, v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Boolean(b) => Some(*b),
        other => {
            p.push(
                key,
                format!("expected true or false, got {}", type_name(other)),
            );
            None
        }
    }
}

/// A non-negative integer leaf at most `max`; None when absent or (after recording a
/// problem) invalid.
pub(super) fn count(p: &mut Problems, key: &str, v: Option<&Value>, max: u32) -> Option<u32> {
    match v? {
        Value::Integer(n) => match u32::try_from(*n) {
            Ok(n) if n <= max => Some(n),
            _ => {
                p.push(
                    key,
                    format!("must be a whole number from 0 to {max}, got {n}"),
                );
                None
            }
        },
        other => {
            p.push(
                key,
                format!("expected a whole number, got {}", type_name(other)),
            );
            None
        }
    }
}

/// An array of strings; elements of another type are reported by index.
pub(super) fn string_list(p: &mut Problems, key: &str, v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(p, &format!("{key}[{i}]"), Some(item)))
            .collect(),
        Some(other) => {
            p.push(
                key,
                format!("expected an array of strings, got {}", type_name(other)),
            );
            Vec::new()
        }
    }
}

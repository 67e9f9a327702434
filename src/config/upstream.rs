//! Validation of the `[[upstream]]` tables.
//!
//! Invariants of the result: every name and alias is non-empty, holds no '/' or
//! whitespace, and is unique (ASCII case-insensitively) across all upstreams; each
//! url is `http` or `https` with a host, no credentials, no query and path "/"; at
//! most one upstream has `default == true` (exactly one when only one is configured).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use super::raw::{self, RawUpstream};
use super::units::parse_duration;
use super::{Problems, UpstreamConfig, UpstreamPolicy};

const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
const DEFAULT_REFERRERS_TTL: Duration = Duration::from_secs(60);

/// Checks a name or alias; records a problem and returns false when unusable.
fn check_ident(p: &mut Problems, key: &str, s: &str) -> bool {
    let problem = if s.is_empty() {
        "must not be empty"
    } else if s.contains('/') {
        "must not contain '/'"
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace or control characters"
    } else {
        return true;
    };
    p.push(key, format!("{problem}, got {s:?}"));
    false
}

/// Validates a URL; returns the normalised scheme+authority URI and its host[:port].
fn check_url(p: &mut Problems, key: &str, s: &str) -> Option<(Uri, String)> {
    let uri: Uri = match s.parse() {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("not a valid URL ({e}): {s:?}"));
            return None;
        }
    };
    let Some(scheme) = uri.scheme_str().map(str::to_ascii_lowercase) else {
        p.push(
            key,
            format!("must be an absolute http or https URL, got {s:?}"),
        );
        return None;
    };
    let mut ok = true;
    if scheme != "http" && scheme != "https" {
        p.push(key, format!("scheme must be http or https, got {scheme:?}"));
        ok = false;
    }
    let authority = uri.authority().cloned();
    match &authority {
        None => {
            p.push(key, "host is required");
            ok = false;
        }
        Some(a) if a.host().is_empty() => {
            p.push(key, "host is required");
            ok = false;
        }
        Some(a) if a.as_str().contains('@') => {
            p.push(
                key,
                "must not contain credentials; use username and password",
            );
            ok = false;
        }
        Some(_) => {}
    }
    if uri.query().is_some() {
        p.push(key, "must not have a query");
        ok = false;
    }
    if !matches!(uri.path(), "" | "/") {
        p.push(
            key,
            format!("path must be empty or \"/\", got {:?}", uri.path()),
        );
        ok = false;
    }
    let authority = authority.filter(|_| ok)?;
    match Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
    {
        Ok(u) => Some((u, authority.as_str().to_ascii_lowercase())),
        Err(e) => {
            p.push(key, format!("not a valid URL ({e}): {s:?}"));
            None
        }
    }
}

/// An optional `ca_file` key: the path, checked with [`check_ca_file`].
pub(super) fn ca_file(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Option<PathBuf> {
    let path = PathBuf::from(raw::string(p, key, v)?);
    check_ca_file(p, key, &path);
    Some(path)
}

/// Checks that `path` is a readable file holding at least one PEM certificate.
fn check_ca_file(p: &mut Problems, key: &str, path: &Path) {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => return p.push(key, format!("cannot read {shown}: {e}")),
        Ok(m) if !m.is_file() => return p.push(key, format!("{shown} is not a file")),
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Err(e) => p.push(key, format!("cannot read {shown}: {e}")),
        Ok(bytes) => {
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
                p.push(key, format!("{shown} contains no PEM certificate"));
            }
        }
    }
}

/// A list of host names (no scheme, port or path), lowercased; each bad one is a problem.
fn host_list(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (j, h) in raw::string_list(p, key, v).into_iter().enumerate() {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if ok {
            out.push(h.to_ascii_lowercase());
        } else {
            p.push(
                format!("{key}[{j}]"),
                format!("must be a host name (letters, digits, '.', '-'; no scheme, port or path), got {h:?}"),
            );
        }
    }
    out
}

/// A duration leaf that may be zero.
fn duration(p: &mut Problems, key: &str, v: Option<&toml::Value>, default: Duration) -> Duration {
    match raw::string(p, key, v) {
        Some(s) => parse_duration(&s).unwrap_or_else(|e| {
            p.push(key, e);
            default
        }),
        None => default,
    }
}

/// The resilience policy of upstream `i`.
fn policy(p: &mut Problems, i: usize, r: &RawUpstream) -> UpstreamPolicy {
    let k = |field: &str| format!("upstream[{i}].{field}");
    let d = UpstreamPolicy::default();
    let immutable_tags = raw::string_list(p, &k("immutable_tags"), r.immutable_tags.as_ref());
    for (j, re) in immutable_tags.iter().enumerate() {
        if let Err(e) = regex::Regex::new(re) {
            p.push(
                format!("upstream[{i}].immutable_tags[{j}]"),
                format!("not a valid regular expression: {e}"),
            );
        }
    }
    let positive = |p: &mut Problems, key: String, v: Option<&toml::Value>, default: Duration| {
        let d = duration(p, &key, v, default);
        if d.is_zero() {
            p.push(key, "must be greater than 0");
            return default;
        }
        d
    };
    UpstreamPolicy {
        immutable_tags,
        stale_while_revalidate: raw::boolean(
            p,
            &k("stale_while_revalidate"),
            r.stale_while_revalidate.as_ref(),
        )
        .unwrap_or(d.stale_while_revalidate),
        stale_if_error: duration(
            p,
            &k("stale_if_error"),
            r.stale_if_error.as_ref(),
            d.stale_if_error,
        ),
        negative_ttl: duration(
            p,
            &k("negative_ttl"),
            r.negative_ttl.as_ref(),
            d.negative_ttl,
        ),
        connect_timeout: positive(
            p,
            k("connect_timeout"),
            r.connect_timeout.as_ref(),
            d.connect_timeout,
        ),
        response_timeout: positive(
            p,
            k("response_timeout"),
            r.response_timeout.as_ref(),
            d.response_timeout,
        ),
        retries: raw::count(p, &k("retries"), r.retries.as_ref(), 10).unwrap_or(d.retries),
        breaker_failures: raw::count(p, &k("breaker_failures"), r.breaker_failures.as_ref(), 1000)
            .unwrap_or(d.breaker_failures),
        breaker_cooldown: positive(
            p,
            k("breaker_cooldown"),
            r.breaker_cooldown.as_ref(),
            d.breaker_cooldown,
        ),
    }
}

/// Validates all upstreams, recording every problem.
pub(super) fn validate(p: &mut Problems, raws: &[RawUpstream]) -> Vec<UpstreamConfig> {
    if raws.is_empty() {
        p.push(
            "upstream",
            "at least one upstream is required (leave out [[upstream]] entirely to use the built-in public registries)",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    // (lowercased name or alias, key that claimed it)
    let mut taken: Vec<(String, String)> = Vec::new();
    let mut claim = |p: &mut Problems, key: String, ident: &str| {
        let lower = ident.to_ascii_lowercase();
        if let Some((_, owner)) = taken.iter().find(|(n, _)| *n == lower) {
            p.push(&key, format!("{ident:?} is already used by {owner}"));
        } else {
            taken.push((lower, key));
        }
    };
    let mut default_owner: Option<usize> = None;

    for (i, r) in raws.iter().enumerate() {
        let k = |field: &str| format!("upstream[{i}].{field}");
        let url = match raw::string(p, &k("url"), r.url.as_ref()) {
            Some(s) => check_url(p, &k("url"), &s),
            None => {
                if r.url.is_none() {
                    p.push(k("url"), "is required");
                }
                None
            }
        };
        let name = match raw::string(p, &k("name"), r.name.as_ref()) {
            Some(n) => check_ident(p, &k("name"), &n).then_some(n),
            None => url.as_ref().map(|(_, host)| host.clone()),
        };
        if let Some(n) = &name {
            claim(p, k("name"), n);
        }
        let aliases = raw::string_list(p, &k("aliases"), r.aliases.as_ref());
        for (j, a) in aliases.iter().enumerate() {
            let key = format!("upstream[{i}].aliases[{j}]");
            if check_ident(p, &key, a) {
                claim(p, key, a);
            }
        }
        let default = raw::boolean(p, &k("default"), r.default.as_ref()).unwrap_or(false);
        if default {
            match default_owner {
                Some(first) => p.push(
                    k("default"),
                    format!("only one upstream may be the default; upstream[{first}] already is"),
                ),
                None => default_owner = Some(i),
            }
        }
        let ca_file = ca_file(p, &k("ca_file"), r.ca_file.as_ref());
        let tag_ttl = match raw::string(p, &k("tag_ttl"), r.tag_ttl.as_ref()) {
            Some(s) => parse_duration(&s).unwrap_or_else(|e| {
                p.push(k("tag_ttl"), e);
                DEFAULT_TAG_TTL
            }),
            None => DEFAULT_TAG_TTL,
        };
        let allow_push = raw::boolean(p, &k("allow_push"), r.allow_push.as_ref()).unwrap_or(false);
        let referrers_ttl = duration(
            p,
            &k("referrers_ttl"),
            r.referrers_ttl.as_ref(),
            DEFAULT_REFERRERS_TTL,
        );
        let username = raw::string(p, &k("username"), r.username.as_ref());
        let password = raw::string(p, &k("password"), r.password.as_ref());
        if r.username.is_some() && r.password.is_none() {
            p.push(k("password"), "is required when username is set");
        }
        if r.password.is_some() && r.username.is_none() {
            p.push(k("username"), "is required when password is set");
        }
        let policy = policy(p, i, r);
        let client_cert = match (
            raw::string(p, &k("client_cert_file"), r.client_cert_file.as_ref()),
            raw::string(p, &k("client_key_file"), r.client_key_file.as_ref()),
        ) {
            (Some(c), Some(key)) => {
                check_ca_file(p, &k("client_cert_file"), Path::new(&c));
                if !Path::new(&key).is_file() {
                    p.push(k("client_key_file"), format!("{key}: no such file"));
                }
                Some((PathBuf::from(c), PathBuf::from(key)))
            }
            (None, None) => None,
            _ => {
                p.push(
                    k("client_cert_file"),
                    "client_cert_file and client_key_file go together",
                );
                None
            }
        };
        let hosts = host_list(p, &k("hosts"), r.hosts.as_ref());
        for (j, h) in hosts.iter().enumerate() {
            claim(p, format!("upstream[{i}].hosts[{j}]"), &format!("host {h}"));
        }
        let token_realm_hosts = host_list(p, &k("token_realm_hosts"), r.token_realm_hosts.as_ref());
        if let (Some(name), Some((url, _))) = (name, url) {
            out.push(UpstreamConfig {
                name,
                url,
                default,
                aliases,
                ca_file,
                tag_ttl,
                allow_push,
                referrers_ttl,
                username,
                password,
                client_cert,
                hosts,
                token_realm_hosts,
                policy,
            });
        }
    }
    if default_owner.is_none() && raws.len() == 1 {
        if let Some(only) = out.first_mut() {
            only.default = true;
        }
    }
    out
}

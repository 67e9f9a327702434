//! Validation of the `[[upstream]]` tables.
//!
//! Invariants of the result: every name and alias is non-empty, holds no '/' or
//! whitespace, and is unique (ASCII case-insensitively) across all upstreams; each
//! url is `http` or `https` with a host, no credentials, no query and path "/"; at
//! most one upstream has `default == true` (exactly one when only one is configured).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use super::pem::{ca_file, check_ca_file};
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
    let mut claims = Claims::default();
    let mut default_owner: Option<usize> = None;
    let mut out = Vec::new();
    for (i, r) in raws.iter().enumerate() {
        out.extend(upstream(p, i, r, &mut claims, &mut default_owner));
    }
    if default_owner.is_none() && raws.len() == 1 {
        if let Some(only) = out.first_mut() {
            only.default = true;
        }
    }
    out
}

/// The names, aliases and hosts claimed so far, unique ASCII case-insensitively across all
/// upstreams: (lowercased ident, the key that claimed it).
#[derive(Default)]
struct Claims(Vec<(String, String)>);

impl Claims {
    /// Claims `ident` for `key`; a problem when another key already has it.
    fn claim(&mut self, p: &mut Problems, key: String, ident: &str) {
        let lower = ident.to_ascii_lowercase();
        if let Some((_, owner)) = self.0.iter().find(|(n, _)| *n == lower) {
            p.push(&key, format!("{ident:?} is already used by {owner}"));
        } else {
            self.0.push((lower, key));
        }
    }
}

/// Validates upstream `i`. `None` when it has no usable name or url (a problem says why).
/// `default_owner`: the first upstream that said `default = true`.
fn upstream(
    p: &mut Problems,
    i: usize,
    r: &RawUpstream,
    claims: &mut Claims,
    default_owner: &mut Option<usize>,
) -> Option<UpstreamConfig> {
    let k = |field: &str| format!("upstream[{i}].{field}");
    let url = url(p, i, r);
    let name = match raw::string(p, &k("name"), r.name.as_ref()) {
        Some(n) => check_ident(p, &k("name"), &n).then_some(n),
        None => url.as_ref().map(|(_, host)| host.clone()),
    };
    if let Some(n) = &name {
        claims.claim(p, k("name"), n);
    }
    let aliases = raw::string_list(p, &k("aliases"), r.aliases.as_ref());
    for (j, a) in aliases.iter().enumerate() {
        let key = format!("upstream[{i}].aliases[{j}]");
        if check_ident(p, &key, a) {
            claims.claim(p, key, a);
        }
    }
    let default = is_default(p, i, r, default_owner);
    let ca_file = ca_file(p, &k("ca_file"), r.ca_file.as_ref());
    let tag_ttl = duration(p, &k("tag_ttl"), r.tag_ttl.as_ref(), DEFAULT_TAG_TTL);
    let allow_push = raw::boolean(p, &k("allow_push"), r.allow_push.as_ref()).unwrap_or(false);
    let referrers_ttl = duration(
        p,
        &k("referrers_ttl"),
        r.referrers_ttl.as_ref(),
        DEFAULT_REFERRERS_TTL,
    );
    let (username, password) = credentials(p, i, r);
    let policy = policy(p, i, r);
    let client_cert = client_cert(p, i, r);
    let hosts = host_list(p, &k("hosts"), r.hosts.as_ref());
    for (j, h) in hosts.iter().enumerate() {
        claims.claim(p, format!("upstream[{i}].hosts[{j}]"), &format!("host {h}"));
    }
    let token_realm_hosts = host_list(p, &k("token_realm_hosts"), r.token_realm_hosts.as_ref());
    let rules = super::rules::rules(p, i, r);
    let max_size = r
        .max_size
        .as_ref()
        .map(|v| super::sections::size(p, &k("max_size"), Some(v), u64::MAX));
    let (Some(name), Some((url, _))) = (name, url) else {
        return None;
    };
    Some(UpstreamConfig {
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
        rules,
        max_size,
        policy,
    })
}

/// Upstream `i`'s required `url`, checked with [`check_url`].
fn url(p: &mut Problems, i: usize, r: &RawUpstream) -> Option<(Uri, String)> {
    let key = format!("upstream[{i}].url");
    match raw::string(p, &key, r.url.as_ref()) {
        Some(s) => check_url(p, &key, &s),
        None => {
            if r.url.is_none() {
                p.push(key, "is required");
            }
            None
        }
    }
}

/// Upstream `i`'s `default`; a problem when an earlier one (`default_owner`) already is.
fn is_default(
    p: &mut Problems,
    i: usize,
    r: &RawUpstream,
    default_owner: &mut Option<usize>,
) -> bool {
    let key = format!("upstream[{i}].default");
    let default = raw::boolean(p, &key, r.default.as_ref()).unwrap_or(false);
    if default {
        match default_owner {
            Some(first) => p.push(
                key,
                format!("only one upstream may be the default; upstream[{first}] already is"),
            ),
            None => *default_owner = Some(i),
        }
    }
    default
}

/// Upstream `i`'s `username` and `password`, which go together.
fn credentials(p: &mut Problems, i: usize, r: &RawUpstream) -> (Option<String>, Option<String>) {
    let k = |field: &str| format!("upstream[{i}].{field}");
    let username = raw::string(p, &k("username"), r.username.as_ref());
    let password = raw::string(p, &k("password"), r.password.as_ref());
    if r.username.is_some() && r.password.is_none() {
        p.push(k("password"), "is required when username is set");
    }
    if r.password.is_some() && r.username.is_none() {
        p.push(k("username"), "is required when password is set");
    }
    (username, password)
}

/// Upstream `i`'s `client_cert_file` and `client_key_file`, which go together.
fn client_cert(p: &mut Problems, i: usize, r: &RawUpstream) -> Option<(PathBuf, PathBuf)> {
    let k = |field: &str| format!("upstream[{i}].{field}");
    match (
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
    }
}

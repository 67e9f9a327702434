//! The validators of the config's sections, each short: the server's addresses and
//! directory, `[cache]`, `[fill]`, `[tls]`, `[auth]`, and the upstream list (the built-in one
//! when the file has none). Each records every problem it finds in [`Problems`], naming the
//! key, and returns the default where a value is unusable.

use super::raw::{self, RawAuth, RawCache, RawConfig, RawFill, RawTls};
use super::*;

pub(super) fn positive_duration(
    p: &mut Problems,
    key: &str,
    v: Option<&toml::Value>,
    default: Duration,
) -> Duration {
    let Some(s) = raw::string(p, key, v) else {
        return default;
    };
    match parse_duration(&s) {
        Ok(d) if d.is_zero() => {
            p.push(key, "must be greater than 0");
            default
        }
        Ok(d) => d,
        Err(e) => {
            p.push(key, e);
            default
        }
    }
}

pub(super) fn size(p: &mut Problems, key: &str, v: Option<&toml::Value>, default: u64) -> u64 {
    let parsed = match v {
        None => return default,
        Some(toml::Value::String(s)) => parse_size(s),
        Some(toml::Value::Integer(n)) => u64::try_from(*n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("size must be greater than 0, got {n}")),
        Some(other) => Err(format!(
            "expected a size like \"50GiB\" or a whole number of bytes, got {}",
            raw::type_name(other)
        )),
    };
    parsed.unwrap_or_else(|e| {
        p.push(key, e);
        default
    })
}

/// `listen`, `admin_listen` and `data_dir`.
pub(super) fn server(p: &mut Problems, raw: &RawConfig) -> (SocketAddr, SocketAddr, PathBuf) {
    let listen = match raw::string(p, "listen", raw.listen.as_ref()) {
        None => DEFAULT_LISTEN,
        Some(s) => s.trim().parse().unwrap_or_else(|e| {
            p.push(
                "listen",
                format!(
                    "expected an address like \"0.0.0.0:5000\" or \"[::1]:5000\", got {s:?} ({e})"
                ),
            );
            DEFAULT_LISTEN
        }),
    };
    let default_admin = SocketAddr::new(DEFAULT_LISTEN.ip(), 5001);
    let admin_listen = match raw::string(p, "admin_listen", raw.admin_listen.as_ref()) {
        None => default_admin,
        Some(s) => s.trim().parse().unwrap_or_else(|e| {
            p.push(
                "admin_listen",
                format!("expected an address like \"0.0.0.0:5001\", got {s:?} ({e})"),
            );
            default_admin
        }),
    };
    let data_dir = match raw::string(p, "data_dir", raw.data_dir.as_ref()) {
        Some(s) if s.is_empty() => {
            p.push("data_dir", "must not be empty");
            PathBuf::from(DEFAULT_DATA_DIR)
        }
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };
    (listen, admin_listen, data_dir)
}

/// A fraction in (0, 1].
fn fraction(p: &mut Problems, key: &str, v: Option<&toml::Value>, default: f64) -> f64 {
    match v {
        None => default,
        Some(toml::Value::Float(f)) if *f > 0.0 && *f <= 1.0 => *f,
        Some(other) => {
            p.push(
                key,
                format!("expected a fraction in (0, 1] such as 0.9, got {other}"),
            );
            default
        }
    }
}

/// `[cache]`.
pub(super) fn cache(p: &mut Problems, rc: RawCache) -> CacheConfig {
    let high = fraction(p, "cache.high_watermark", rc.high_watermark.as_ref(), 0.9);
    let low = fraction(p, "cache.low_watermark", rc.low_watermark.as_ref(), 0.8);
    if low >= high {
        p.push(
            "cache.low_watermark",
            format!("must be below cache.high_watermark ({high}), got {low}"),
        );
    }
    let pin = raw::string_list(p, "cache.pin", rc.pin.as_ref())
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Pin::parse(s)
                .map_err(|e| p.push(format!("cache.pin[{i}]"), e))
                .ok()
        })
        .collect();
    CacheConfig {
        max_size: size(p, "cache.max_size", rc.max_size.as_ref(), DEFAULT_MAX_SIZE),
        high_watermark: high,
        low_watermark: low,
        pin,
        max_idle: rc
            .max_idle
            .as_ref()
            .map(|v| positive_duration(p, "cache.max_idle", Some(v), Duration::from_secs(86_400))),
    }
}

/// `[fill]`.
pub(super) fn fill(p: &mut Problems, rf: RawFill) -> FillConfig {
    let timeout = rf.timeout.as_ref();
    let idle = rf.idle_timeout.as_ref();
    FillConfig {
        timeout: positive_duration(p, "fill.timeout", timeout, DEFAULT_FILL_TIMEOUT),
        idle_timeout: positive_duration(p, "fill.idle_timeout", idle, DEFAULT_IDLE_TIMEOUT),
        max_concurrent: match raw::count(
            p,
            "fill.max_concurrent",
            rf.max_concurrent.as_ref(),
            100_000,
        ) {
            Some(0) => {
                p.push("fill.max_concurrent", "must be greater than 0");
                DEFAULT_FILL_MAX_CONCURRENT
            }
            Some(n) => n,
            None => DEFAULT_FILL_MAX_CONCURRENT,
        },
    }
}

/// `[tls]`: both files named and present.
pub(super) fn tls(p: &mut Problems, t: RawTls) -> Option<TlsConfig> {
    let cert = raw::string(p, "tls.cert_file", t.cert_file.as_ref());
    let key = raw::string(p, "tls.key_file", t.key_file.as_ref());
    match (cert, key) {
        (Some(c), Some(k)) => {
            for (key, f) in [("tls.cert_file", &c), ("tls.key_file", &k)] {
                if !Path::new(f).is_file() {
                    p.push(key, format!("{f}: no such file"));
                }
            }
            Some(TlsConfig {
                cert_file: PathBuf::from(c),
                key_file: PathBuf::from(k),
            })
        }
        _ => {
            p.push("tls", "cert_file and key_file are both required");
            None
        }
    }
}

/// `[auth]`.
pub(super) fn auth(p: &mut Problems, ra: RawAuth) -> AuthConfig {
    AuthConfig {
        token_ttl: positive_duration(
            p,
            "auth.token_ttl",
            ra.token_ttl.as_ref(),
            DEFAULT_TOKEN_TTL,
        ),
        authz_ttl: positive_duration(
            p,
            "auth.authz_ttl",
            ra.authz_ttl.as_ref(),
            DEFAULT_AUTHZ_TTL,
        ),
        offline_grace: positive_duration(
            p,
            "auth.offline_grace",
            ra.offline_grace.as_ref(),
            DEFAULT_OFFLINE_GRACE,
        ),
    }
}

/// The `[[upstream]]` tables, or the built-in list when there are none.
pub(super) fn upstreams(p: &mut Problems, raw: &RawConfig) -> Vec<UpstreamConfig> {
    match &raw.upstream {
        Some(list) => upstream::validate(p, list),
        None => match raw::parse(EMBEDDED_DEFAULT) {
            Ok((builtin, _)) => upstream::validate(p, &builtin.upstream.unwrap_or_default()),
            Err(e) => {
                p.push("upstream", format!("built-in upstreams are invalid: {e}"));
                Vec::new()
            }
        },
    }
}

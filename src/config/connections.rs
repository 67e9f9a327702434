//! The top-level keys that bound what client connections may hold: how many are served at
//! once (in all, per client address, on the admin listener) and how long a connection may
//! sit without progress (request heads, request bodies, idle between requests, unanswered
//! HTTP/2 pings). Invariant of a [`ConnectionLimits`] that exists: every count and every
//! duration is > 0.

use super::raw::{self, RawConfig};
use super::{positive_duration, Problems};
use std::time::Duration;

const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 256;
const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 64;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest connection count accepted in the file.
const MAX_COUNT: u32 = 1_000_000;

/// What client connections may hold (see the README's configuration reference).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Client connections open at once on the registry listener; more wait to be accepted.
    pub max_connections: u32,
    /// Connections open at once from one client address (an IPv4 address, an IPv6 /64) on
    /// the registry listener; more are closed as soon as they are accepted.
    pub max_connections_per_ip: u32,
    /// Connections open at once on the admin listener; more wait to be accepted.
    pub admin_max_connections: u32,
    /// How long a client connection may take to send a complete request head (its first
    /// one included, whatever the protocol).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight once it has sent one.
    pub idle_timeout: Duration,
    /// Longest wait for the next chunk of a request body that a handler is reading.
    pub request_body_timeout: Duration,
    /// HTTP/2: a PING goes out after this long without a frame from the client...
    pub http2_keepalive_interval: Duration,
    /// ...and the connection is closed when its answer takes longer than this.
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            http2_keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
            http2_keepalive_timeout: DEFAULT_H2_KEEPALIVE_TIMEOUT,
        }
    }
}

/// A connection count from 1 to [`MAX_COUNT`].
fn positive_count(p: &mut Problems, key: &str, v: Option<&toml::Value>, default: u32) -> u32 {
    match raw::count(p, key, v, MAX_COUNT) {
        Some(0) => {
            p.push(key, "must be greater than 0");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// Validates the connection keys of `raw`.
pub(super) fn validate(p: &mut Problems, raw: &RawConfig) -> ConnectionLimits {
    let d = ConnectionLimits::default();
    let count = |p: &mut Problems, key: &str, v: &Option<toml::Value>, default: u32| {
        positive_count(p, key, v.as_ref(), default)
    };
    let duration = |p: &mut Problems, key: &str, v: &Option<toml::Value>, default: Duration| {
        positive_duration(p, key, v.as_ref(), default)
    };
    ConnectionLimits {
        max_connections: count(
            p,
            "max_connections",
            &raw.max_connections,
            d.max_connections,
        ),
        max_connections_per_ip: count(
            p,
            "max_connections_per_ip",
            &raw.max_connections_per_ip,
            d.max_connections_per_ip,
        ),
        admin_max_connections: count(
            p,
            "admin_max_connections",
            &raw.admin_max_connections,
            d.admin_max_connections,
        ),
        header_read_timeout: duration(
            p,
            "header_read_timeout",
            &raw.header_read_timeout,
            d.header_read_timeout,
        ),
        idle_timeout: duration(p, "idle_timeout", &raw.idle_timeout, d.idle_timeout),
        request_body_timeout: duration(
            p,
            "request_body_timeout",
            &raw.request_body_timeout,
            d.request_body_timeout,
        ),
        http2_keepalive_interval: duration(
            p,
            "http2_keepalive_interval",
            &raw.http2_keepalive_interval,
            d.http2_keepalive_interval,
        ),
        http2_keepalive_timeout: duration(
            p,
            "http2_keepalive_timeout",
            &raw.http2_keepalive_timeout,
            d.http2_keepalive_timeout,
        ),
    }
}

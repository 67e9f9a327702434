//! Prometheus metrics: one [`Metrics`] struct of registered handles, an explicit registry.
//!
//! Invariants: label values come only from configured upstream names and fixed enums, never
//! from request strings (bounded cardinality); every label combination is created at start,
//! so every family is exported from the first scrape; gauges that mirror live state are
//! computed at scrape time ([`Metrics::render`]).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub const KINDS: [&str; 5] = ["manifest", "blob", "tags", "referrers", "token"];
pub const RESULTS: [&str; 6] = ["hit", "miss", "stale", "coalesced", "denied", "error"];
pub const SOURCES: [&str; 2] = ["cache", "upstream"];
pub const FILL_RESULTS: [&str; 6] = [
    "committed",
    "digest_mismatch",
    "upstream_error",
    "aborted",
    "uncacheable",
    "busy",
];
pub const AUTHZ_RESULTS: [&str; 4] = ["allowed", "denied", "offline_allowed", "offline_denied"];
pub const REVALIDATION_RESULTS: [&str; 3] = ["unchanged", "changed", "error"];
pub const TEE_RESULTS: [&str; 3] = ["committed", "digest_mismatch", "abandoned"];
const METHODS: [&str; 2] = ["GET", "HEAD"];
const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];
const UPSTREAM_KINDS: [&str; 5] = ["manifest", "blob", "tags", "token", "other"];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub served_bytes: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_bytes: IntCounterVec,
    pub ttfb: HistogramVec,
    pub fills_in_progress: IntGauge,
    pub fill_waiters: IntGauge,
    pub fills: IntCounterVec,
    pub cache_size_bytes: IntGauge,
    pub cache_max_bytes: IntGauge,
    pub cache_blobs: IntGauge,
    pub cache_manifest_bytes: IntGauge,
    pub cache_manifests: IntGauge,
    pub evictions: IntCounter,
    pub evicted_bytes: IntCounter,
    pub disk_write_errors: IntCounter,
    pub upstream_up: IntGaugeVec,
    pub ratelimit_remaining: IntGaugeVec,
    pub ratelimit_limit: IntGaugeVec,
    pub tag_revalidations: IntCounterVec,
    pub authz_decisions: IntCounterVec,
    pub push_requests: IntCounterVec,
    pub upload_tees: IntCounterVec,
    pub peer_fills: IntCounterVec,
    pub shared_fills: IntCounterVec,
    pub shared_store_errors: IntCounterVec,
    pub shared_backstops: IntCounter,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    c
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    h
}

impl Metrics {
    /// Registers every metric (the names and labels are fixed: a failure here is a bug,
    /// caught by the tests, hence the panics) and creates every label combination for the
    /// configured `upstreams`.
    pub fn new(upstreams: &[String], max_bytes: u64) -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            requests: counter_vec(&r, "wharf_requests_total", "Client requests by upstream, kind and result.", &["upstream", "kind", "result"]),
            served_bytes: counter_vec(&r, "wharf_served_bytes_total", "Body bytes sent to clients, by where they came from.", &["upstream", "source"]),
            upstream_requests: counter_vec(&r, "wharf_upstream_requests_total", "Requests sent to upstreams, by method and status class.", &["upstream", "method", "status_class"]),
            upstream_duration: histogram_vec(&r, "wharf_upstream_request_duration_seconds", "Time until an upstream's response headers.", &["upstream", "kind"]),
            upstream_bytes: counter_vec(&r, "wharf_upstream_bytes_total", "Body bytes received from upstreams (blobs and manifests).", &["upstream"]),
            ttfb: histogram_vec(&r, "wharf_time_to_first_byte_seconds", "Time from a request's arrival to the first body byte sent.", &["kind", "source"]),
            fills_in_progress: gauge(&r, "wharf_fills_in_progress", "Blob fills running now."),
            fill_waiters: gauge(&r, "wharf_fill_waiters", "Clients streaming from a fill another client started."),
            fills: counter_vec(&r, "wharf_fills_total", "Finished blob fills by result.", &["result"]),
            cache_size_bytes: gauge(&r, "wharf_cache_size_bytes", "Bytes of verified blobs in the cache."),
            cache_max_bytes: gauge(&r, "wharf_cache_max_bytes", "Configured cache size bound."),
            cache_blobs: gauge(&r, "wharf_cache_blobs", "Verified blobs in the cache."),
            cache_manifest_bytes: gauge(&r, "wharf_cache_manifest_bytes", "Bytes of manifests in the cache (cache.max_size bounds them and the blobs together)."),
            cache_manifests: gauge(&r, "wharf_cache_manifests", "Manifests in the cache."),
            evictions: counter(&r, "wharf_evictions_total", "Blobs and manifests evicted from the cache."),
            evicted_bytes: counter(&r, "wharf_evicted_bytes_total", "Bytes evicted from the cache."),
            disk_write_errors: counter(&r, "wharf_disk_write_errors_total", "Fills whose temp file could not be written (disk full): relayed from memory, not cached."),
            upstream_up: gauge_vec(&r, "wharf_upstream_up", "1 while Wharf sends requests to the upstream, 0 while its circuit breaker is open.", &["upstream"]),
            ratelimit_remaining: gauge_vec(&r, "wharf_upstream_ratelimit_remaining", "The upstream's last ratelimit-remaining header (-1: never seen).", &["upstream"]),
            ratelimit_limit: gauge_vec(&r, "wharf_upstream_ratelimit_limit", "The upstream's last ratelimit-limit header (-1: never seen).", &["upstream"]),
            tag_revalidations: counter_vec(&r, "wharf_tag_revalidations_total", "Tag revalidations with the upstream, by result.", &["upstream", "result"]),
            authz_decisions: counter_vec(&r, "wharf_authz_decisions_total", "Authorization decisions on cached content, by result.", &["upstream", "result"]),
            push_requests: counter_vec(&r, "wharf_push_requests_total", "Push requests forwarded upstream, by the class of the upstream's answer (error: none).", &["upstream", "status_class"]),
            upload_tees: counter_vec(&r, "wharf_upload_tees_total", "Blob uploads teed into the cache, by result.", &["upstream", "result"]),
            peer_fills: counter_vec(&r, "wharf_peer_fills_total", "Fills that asked the digest's owner replica: served by it, or fetched upstream after it failed (fallback).", &["result"]),
            shared_fills: counter_vec(&r, "wharf_shared_fills_total", "Fills from the shared bucket: served from it, or fetched elsewhere after it failed (fallback).", &["result"]),
            shared_store_errors: counter_vec(&r, "wharf_shared_store_errors_total", "Failed operations on the shared bucket, by operation.", &["op"]),
            shared_backstops: counter(&r, "wharf_shared_backstop_uploads_total", "Blobs uploaded to the shared bucket by a replica that got them from their owner replica, because the owner did not (it stopped answering, or its upload was overdue)."),
            registry: r,
        };
        for res in ["served", "fallback"] {
            m.peer_fills.with_label_values(&[res]);
            m.shared_fills.with_label_values(&[res]);
        }
        for op in ["get", "put"] {
            m.shared_store_errors.with_label_values(&[op]);
        }
        let info = gauge_vec(
            &m.registry,
            "wharf_build_info",
            "Build information.",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.cache_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        for u in upstreams.iter().map(String::as_str) {
            for k in KINDS {
                for res in RESULTS {
                    m.requests.with_label_values(&[u, k, res]);
                }
            }
            for s in SOURCES {
                m.served_bytes.with_label_values(&[u, s]);
            }
        }
        // Token requests belong to no upstream.
        for res in RESULTS {
            m.requests.with_label_values(&["", "token", res]);
        }
        for u in upstreams.iter().map(String::as_str) {
            for meth in METHODS {
                for c in STATUS_CLASSES {
                    m.upstream_requests.with_label_values(&[u, meth, c]);
                }
            }
            for k in UPSTREAM_KINDS {
                m.upstream_duration.with_label_values(&[u, k]);
            }
            m.upstream_bytes.with_label_values(&[u]);
            m.upstream_up.with_label_values(&[u]).set(1);
            m.ratelimit_remaining.with_label_values(&[u]).set(-1);
            m.ratelimit_limit.with_label_values(&[u]).set(-1);
            for res in REVALIDATION_RESULTS {
                m.tag_revalidations.with_label_values(&[u, res]);
            }
            for res in AUTHZ_RESULTS {
                m.authz_decisions.with_label_values(&[u, res]);
            }
            for c in STATUS_CLASSES {
                m.push_requests.with_label_values(&[u, c]);
            }
            for res in TEE_RESULTS {
                m.upload_tees.with_label_values(&[u, res]);
            }
        }
        for k in KINDS {
            for s in SOURCES {
                m.ttfb.with_label_values(&[k, s]);
            }
        }
        for res in FILL_RESULTS {
            m.fills.with_label_values(&[res]);
        }
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }

    /// The kind label of an upstream request path.
    pub fn upstream_kind(path: &str) -> &'static str {
        if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/manifests/") {
            "manifest"
        } else if path.ends_with("/tags/list") {
            "tags"
        } else {
            "other"
        }
    }

    pub fn status_class(status: u16) -> &'static str {
        match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_from_the_start() {
        let m = Metrics::new(&["docker.io".to_string()], 1000);
        let text = String::from_utf8(m.render()).expect("utf8");
        for name in [
            "wharf_requests_total",
            "wharf_served_bytes_total",
            "wharf_upstream_requests_total",
            "wharf_upstream_request_duration_seconds",
            "wharf_upstream_bytes_total",
            "wharf_time_to_first_byte_seconds",
            "wharf_fills_in_progress",
            "wharf_fill_waiters",
            "wharf_fills_total",
            "wharf_cache_size_bytes",
            "wharf_cache_max_bytes",
            "wharf_cache_blobs",
            "wharf_cache_manifest_bytes",
            "wharf_cache_manifests",
            "wharf_evictions_total",
            "wharf_evicted_bytes_total",
            "wharf_upstream_up",
            "wharf_upstream_ratelimit_remaining",
            "wharf_upstream_ratelimit_limit",
            "wharf_tag_revalidations_total",
            "wharf_authz_decisions_total",
            "wharf_push_requests_total",
            "wharf_upload_tees_total",
            "wharf_peer_fills_total",
            "wharf_shared_fills_total",
            "wharf_shared_store_errors_total",
            "wharf_shared_backstop_uploads_total",
            "wharf_build_info",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(text.contains("wharf_cache_max_bytes 1000"));
        assert!(text.contains(r#"wharf_upstream_up{upstream="docker.io"} 1"#));
    }
}

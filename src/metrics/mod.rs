//! Prometheus metrics: one [`Metrics`] struct of registered handles, an explicit registry.
//!
//! Labels are typed: the values of every fixed label are an enum in `metrics/labels.rs`
//! (`as_str` is the exported string, `ALL` every value, declared by one `label!` macro), and
//! call sites count through the typed methods of [`Metrics`] (`m.fill_done(FillResult::Busy)`,
//! `m.authz(upstream, AuthzResult::Allowed)`, ...), so no call site spells a label value. The
//! other label values are configured upstream names and the HTTP method of the requests
//! Wharf sends upstream.
//!
//! Invariants: label values come only from configured upstream and notify sink names and fixed
//! enums, never from request strings (bounded cardinality); every label combination is created
//! at start (from each enum's `ALL`; the notify families once the sinks are known, by
//! [`Metrics::precreate_notify`]), so every family is exported from the first scrape; gauges that
//! mirror live state are computed at scrape time ([`Metrics::render`]).

mod handles;
mod labels;

use handles::{counter, counter_vec, gauge, gauge_vec, histogram_vec};

pub use labels::{
    AuthzResult, BucketOp, Delivery, FillResult, Kind, Relay, Removal, RequestResult, Revalidation,
    Rule, Source, StatusClass, TeeResult, UpstreamKind, PRECREATED_METHODS,
};
use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

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
    pub rule_refusals: IntCounterVec,
    pub removals: IntCounterVec,
    pub removed_bytes: IntCounterVec,
    pub upstream_cache_bytes: IntGaugeVec,
    pub upstream_cache_blobs: IntGaugeVec,
    pub upstream_max_bytes: IntGaugeVec,
    pub notify_dropped: IntCounterVec,
    pub notify_deliveries: IntCounterVec,
}

impl Metrics {
    /// Registers every metric (the names and labels are fixed: a failure here is a bug,
    /// caught by the tests, hence the panics) and creates every label combination for the
    /// configured `upstreams`.
    pub fn new(upstreams: &[String], max_bytes: u64) -> Metrics {
        let m = Metrics::register(Registry::new());
        let info = gauge_vec(
            &m.registry,
            "wharf_build_info",
            "Build information.",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.cache_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        m.precreate_fixed();
        m.precreate_requests(upstreams);
        m.precreate_upstreams(upstreams);
        m
    }

    /// Every metric, registered in `r` (no label combination created yet).
    fn register(r: Registry) -> Metrics {
        Metrics {
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
            rule_refusals: counter_vec(&r, "wharf_rule_refusals_total", "Requests refused by an upstream's repository rules before any cache read or upstream request, by the rule that refused them (deny: a deny pattern matched; allow: no allow pattern did).", &["upstream", "rule"]),
            removals: counter_vec(&r, "wharf_cache_removals_total", "Blobs and manifests removed from the cache, by reason: size (cache.max_size), quota (an upstream's max_size: blobs it no longer holds), idle (cache.max_idle), purge (an operator).", &["reason"]),
            removed_bytes: counter_vec(&r, "wharf_cache_removed_bytes_total", "Bytes of what wharf_cache_removals_total counts, by reason.", &["reason"]),
            upstream_cache_bytes: gauge_vec(&r, "wharf_upstream_cache_bytes", "Bytes of the cached blobs an upstream's repositories link (a blob linked by several upstreams counts for each); measured on each quota check and maintenance tick.", &["upstream"]),
            upstream_cache_blobs: gauge_vec(&r, "wharf_upstream_cache_blobs", "Cached blobs an upstream's repositories link.", &["upstream"]),
            upstream_max_bytes: gauge_vec(&r, "wharf_upstream_max_bytes", "An upstream's max_size (-1: none).", &["upstream"]),
            notify_dropped: counter_vec(&r, "wharf_notify_dropped_total", "Events dropped because the sink's queue was full.", &["sink"]),
            notify_deliveries: counter_vec(&r, "wharf_notify_deliveries_total", "Events handed to a sink, by result (failed: not delivered after every retry).", &["sink", "result"]),
            registry: r,
        }
    }

    /// The label combinations that do not depend on the configuration.
    fn precreate_fixed(&self) {
        for res in Relay::ALL {
            self.peer_fills.with_label_values(&[res.as_str()]);
            self.shared_fills.with_label_values(&[res.as_str()]);
        }
        for op in BucketOp::ALL {
            self.shared_store_errors.with_label_values(&[op.as_str()]);
        }
        for k in Kind::ALL {
            for s in Source::ALL {
                self.ttfb.with_label_values(&[k.as_str(), s.as_str()]);
            }
        }
        for reason in Removal::ALL {
            self.removals.with_label_values(&[reason.as_str()]);
            self.removed_bytes.with_label_values(&[reason.as_str()]);
        }
        for res in FillResult::ALL {
            self.fills.with_label_values(&[res.as_str()]);
        }
    }

    /// `wharf_requests_total` and `wharf_served_bytes_total` for every upstream.
    fn precreate_requests(&self, upstreams: &[String]) {
        for u in upstreams.iter().map(String::as_str) {
            for k in Kind::ALL {
                for res in RequestResult::ALL {
                    self.requests
                        .with_label_values(&[u, k.as_str(), res.as_str()]);
                }
            }
            for s in Source::ALL {
                self.served_bytes.with_label_values(&[u, s.as_str()]);
            }
        }
        // Token requests belong to no upstream.
        for res in RequestResult::ALL {
            self.requests
                .with_label_values(&["", Kind::Token.as_str(), res.as_str()]);
        }
    }

    /// The per-upstream families other than client requests.
    fn precreate_upstreams(&self, upstreams: &[String]) {
        for u in upstreams.iter().map(String::as_str) {
            for meth in PRECREATED_METHODS {
                for c in StatusClass::ALL {
                    self.upstream_requests
                        .with_label_values(&[u, meth.as_str(), c.as_str()]);
                }
            }
            for k in UpstreamKind::ALL {
                self.upstream_duration.with_label_values(&[u, k.as_str()]);
            }
            self.upstream_bytes.with_label_values(&[u]);
            self.upstream_up.with_label_values(&[u]).set(1);
            self.ratelimit_remaining.with_label_values(&[u]).set(-1);
            self.ratelimit_limit.with_label_values(&[u]).set(-1);
            for res in Revalidation::ALL {
                self.tag_revalidations.with_label_values(&[u, res.as_str()]);
            }
            for res in AuthzResult::ALL {
                self.authz_decisions.with_label_values(&[u, res.as_str()]);
            }
            for c in StatusClass::ALL {
                self.push_requests.with_label_values(&[u, c.as_str()]);
            }
            for res in TeeResult::ALL {
                self.upload_tees.with_label_values(&[u, res.as_str()]);
            }
            for rule in Rule::ALL {
                self.rule_refusals.with_label_values(&[u, rule.as_str()]);
            }
            self.upstream_cache_bytes.with_label_values(&[u]).set(0);
            self.upstream_cache_blobs.with_label_values(&[u]).set(0);
            self.upstream_max_bytes.with_label_values(&[u]).set(-1);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }

    /// Counts a client request (`upstream`: "" for token requests).
    pub fn request(&self, upstream: &str, kind: Kind, result: RequestResult) {
        self.requests
            .with_label_values(&[upstream, kind.as_str(), result.as_str()])
            .inc();
    }

    /// The counter of body bytes served to clients of `upstream` from `source`.
    pub fn served_bytes_from(&self, upstream: &str, source: Source) -> IntCounter {
        self.served_bytes
            .with_label_values(&[upstream, source.as_str()])
    }

    /// The time-to-first-byte histogram of `kind` requests served from `source`.
    pub fn ttfb_of(&self, kind: Kind, source: Source) -> Histogram {
        self.ttfb
            .with_label_values(&[kind.as_str(), source.as_str()])
    }

    /// Counts a request sent to `upstream` by the class of its answer, with the time until
    /// its response headers (`method` is the request's: GET and HEAD, or a push's).
    pub fn upstream_request(
        &self,
        upstream: &str,
        method: &http::Method,
        kind: UpstreamKind,
        class: StatusClass,
        seconds: f64,
    ) {
        self.upstream_requests
            .with_label_values(&[upstream, method.as_str(), class.as_str()])
            .inc();
        self.upstream_duration
            .with_label_values(&[upstream, kind.as_str()])
            .observe(seconds);
    }

    /// Counts a finished blob fill.
    pub fn fill_done(&self, result: FillResult) {
        self.fills.with_label_values(&[result.as_str()]).inc();
    }

    /// Counts a tag revalidation with `upstream`.
    pub fn tag_revalidated(&self, upstream: &str, result: Revalidation) {
        self.tag_revalidations
            .with_label_values(&[upstream, result.as_str()])
            .inc();
    }

    /// Counts `count` blobs or manifests (`bytes` bytes) removed from the cache for `reason`.
    pub fn removed(&self, reason: Removal, count: u64, bytes: u64) {
        self.removals
            .with_label_values(&[reason.as_str()])
            .inc_by(count);
        self.removed_bytes
            .with_label_values(&[reason.as_str()])
            .inc_by(bytes);
    }

    /// Sets what `upstream`'s repositories hold.
    pub fn upstream_usage(&self, upstream: &str, bytes: u64, blobs: u64) {
        let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.upstream_cache_bytes
            .with_label_values(&[upstream])
            .set(g(bytes));
        self.upstream_cache_blobs
            .with_label_values(&[upstream])
            .set(g(blobs));
    }

    /// Counts a request refused by `upstream`'s repository rules.
    pub fn rule_refused(&self, upstream: &str, rule: Rule) {
        self.rule_refusals
            .with_label_values(&[upstream, rule.as_str()])
            .inc();
    }

    /// Counts an authorization decision on content cached from `upstream`.
    pub fn authz(&self, upstream: &str, result: AuthzResult) {
        self.authz_decisions
            .with_label_values(&[upstream, result.as_str()])
            .inc();
    }

    /// Counts a push request forwarded to `upstream`, by the class of its answer.
    pub fn push_forwarded(&self, upstream: &str, class: StatusClass) {
        self.push_requests
            .with_label_values(&[upstream, class.as_str()])
            .inc();
    }

    /// Counts a blob upload to `upstream` teed into the cache, by how the tee ended.
    pub fn upload_teed(&self, upstream: &str, result: TeeResult) {
        self.upload_tees
            .with_label_values(&[upstream, result.as_str()])
            .inc();
    }

    /// Counts a fill that asked the digest's owner replica.
    pub fn peer_fill(&self, result: Relay) {
        self.peer_fills.with_label_values(&[result.as_str()]).inc();
    }

    /// Counts a fill that looked in the shared bucket.
    pub fn shared_fill(&self, result: Relay) {
        self.shared_fills
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// The notify families for the configured sinks (called once they are known).
    pub fn precreate_notify(&self, sinks: &[String]) {
        for s in sinks.iter().map(String::as_str) {
            self.notify_dropped.with_label_values(&[s]);
            for d in Delivery::ALL {
                self.notify_deliveries.with_label_values(&[s, d.as_str()]);
            }
        }
    }

    /// Counts an event a sink's full queue dropped.
    pub fn notify_dropped(&self, sink: &str) {
        self.notify_dropped.with_label_values(&[sink]).inc();
    }

    /// Counts `n` events a sink delivered or gave up on.
    pub fn notify_delivery(&self, sink: &str, result: Delivery, n: u64) {
        self.notify_deliveries
            .with_label_values(&[sink, result.as_str()])
            .inc_by(n);
    }

    /// Counts a failed operation on the shared bucket.
    pub fn shared_store_error(&self, op: BucketOp) {
        self.shared_store_errors
            .with_label_values(&[op.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests;

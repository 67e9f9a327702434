//! The values of every fixed metric label, as enums: a call site names a variant, never a
//! string, and each enum's `ALL` is what [`super::Metrics::new`] pre-creates. The strings
//! (`as_str`) are exported as they are: dashboards, alerts and tests match them, so a change
//! here is a change of Wharf's interface.

/// Declares a label enum with its exported strings, `as_str` and `ALL` (every value, in the
/// order given).
macro_rules! label {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$variant),+];

            /// The label value as exported.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label! {
    /// `reason` of `wharf_cache_removals_total`: why something left the cache.
    Removal {
        Size => "size",
        Quota => "quota",
        Idle => "idle",
        Purge => "purge",
    }
}

label! {
    /// `rule` of `wharf_rule_refusals_total`: which of an upstream's repository rules refused
    /// a request.
    Rule {
        Allow => "allow",
        Deny => "deny",
    }
}

label! {
    /// `result` of `wharf_notify_deliveries_total`: what became of events handed to a sink
    /// (failed: every retry failed, the events are gone).
    Delivery {
        Delivered => "delivered",
        Failed => "failed",
    }
}

label! {
    /// `kind` of `wharf_requests_total` and `wharf_time_to_first_byte_seconds`: what a client
    /// asked for.
    Kind {
        Manifest => "manifest",
        Blob => "blob",
        Tags => "tags",
        Referrers => "referrers",
        Token => "token",
    }
}

label! {
    /// `result` of `wharf_requests_total`: how a client request was answered.
    RequestResult {
        Hit => "hit",
        Miss => "miss",
        Stale => "stale",
        Coalesced => "coalesced",
        Denied => "denied",
        Error => "error",
    }
}

label! {
    /// `source` of `wharf_served_bytes_total` and `wharf_time_to_first_byte_seconds`.
    Source {
        Cache => "cache",
        Upstream => "upstream",
    }
}

label! {
    /// `result` of `wharf_fills_total`: how a blob fill ended.
    FillResult {
        Committed => "committed",
        DigestMismatch => "digest_mismatch",
        UpstreamError => "upstream_error",
        Aborted => "aborted",
        Uncacheable => "uncacheable",
        /// No fill slot was free.
        Busy => "busy",
    }
}

label! {
    /// `result` of `wharf_authz_decisions_total`.
    AuthzResult {
        Allowed => "allowed",
        Denied => "denied",
        /// Decided by the offline rule while the upstream failed.
        OfflineAllowed => "offline_allowed",
        OfflineDenied => "offline_denied",
    }
}

label! {
    /// `result` of `wharf_tag_revalidations_total`.
    Revalidation {
        Unchanged => "unchanged",
        Changed => "changed",
        Error => "error",
    }
}

label! {
    /// `result` of `wharf_upload_tees_total`: how a blob upload teed into the cache ended.
    TeeResult {
        Committed => "committed",
        DigestMismatch => "digest_mismatch",
        Abandoned => "abandoned",
    }
}

label! {
    /// `result` of `wharf_peer_fills_total` and `wharf_shared_fills_total`: the owner replica
    /// (or the bucket) served the blob, or the fill went elsewhere after it failed.
    Relay {
        Served => "served",
        Fallback => "fallback",
    }
}

label! {
    /// `op` of `wharf_shared_store_errors_total`.
    BucketOp {
        Get => "get",
        Put => "put",
    }
}

label! {
    /// `kind` of `wharf_upstream_request_duration_seconds`, from the request's path
    /// ([`UpstreamKind::of_path`]).
    UpstreamKind {
        Manifest => "manifest",
        Blob => "blob",
        Tags => "tags",
        Token => "token",
        Other => "other",
    }
}

label! {
    /// `status_class` of `wharf_upstream_requests_total` and `wharf_push_requests_total`
    /// ([`StatusClass::of`]).
    StatusClass {
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        /// 5xx, and any status outside 200..=499.
        ServerError => "5xx",
        /// No response: the request failed or timed out.
        Error => "error",
    }
}

/// The `method` values of `wharf_upstream_requests_total` created at start (pushes add
/// their own methods as they happen; the label is the request's method, a bounded set).
pub const PRECREATED_METHODS: [http::Method; 2] = [http::Method::GET, http::Method::HEAD];

impl UpstreamKind {
    /// The kind of an upstream request to `path`.
    pub fn of_path(path: &str) -> UpstreamKind {
        if path.contains("/blobs/") {
            UpstreamKind::Blob
        } else if path.contains("/manifests/") {
            UpstreamKind::Manifest
        } else if path.ends_with("/tags/list") {
            UpstreamKind::Tags
        } else {
            UpstreamKind::Other
        }
    }
}

impl StatusClass {
    /// The class of an HTTP status.
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

impl RequestResult {
    /// The `source` of a request's body: the cache for hits and stale answers, the upstream
    /// otherwise.
    pub fn source(self) -> Source {
        match self {
            RequestResult::Hit | RequestResult::Stale => Source::Cache,
            _ => Source::Upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exported strings, exactly: dashboards, alerts and the e2e tests match them.
    fn strings<T: Copy, const N: usize>(
        all: [T; N],
        f: fn(T) -> &'static str,
    ) -> Vec<&'static str> {
        all.into_iter().map(f).collect()
    }

    #[test]
    fn every_label_value_is_the_exported_string() {
        let cases: [(&str, Vec<&str>, &[&str]); 14] = [
            (
                "Removal",
                strings(Removal::ALL, Removal::as_str),
                &["size", "quota", "idle", "purge"],
            ),
            ("Rule", strings(Rule::ALL, Rule::as_str), &["allow", "deny"]),
            (
                "Delivery",
                strings(Delivery::ALL, Delivery::as_str),
                &["delivered", "failed"],
            ),
            (
                "Kind",
                strings(Kind::ALL, Kind::as_str),
                &["manifest", "blob", "tags", "referrers", "token"],
            ),
            (
                "RequestResult",
                strings(RequestResult::ALL, RequestResult::as_str),
                &["hit", "miss", "stale", "coalesced", "denied", "error"],
            ),
            (
                "Source",
                strings(Source::ALL, Source::as_str),
                &["cache", "upstream"],
            ),
            (
                "FillResult",
                strings(FillResult::ALL, FillResult::as_str),
                &[
                    "committed",
                    "digest_mismatch",
                    "upstream_error",
                    "aborted",
                    "uncacheable",
                    "busy",
                ],
            ),
            (
                "AuthzResult",
                strings(AuthzResult::ALL, AuthzResult::as_str),
                &["allowed", "denied", "offline_allowed", "offline_denied"],
            ),
            (
                "Revalidation",
                strings(Revalidation::ALL, Revalidation::as_str),
                &["unchanged", "changed", "error"],
            ),
            (
                "TeeResult",
                strings(TeeResult::ALL, TeeResult::as_str),
                &["committed", "digest_mismatch", "abandoned"],
            ),
            (
                "Relay",
                strings(Relay::ALL, Relay::as_str),
                &["served", "fallback"],
            ),
            (
                "BucketOp",
                strings(BucketOp::ALL, BucketOp::as_str),
                &["get", "put"],
            ),
            (
                "UpstreamKind",
                strings(UpstreamKind::ALL, UpstreamKind::as_str),
                &["manifest", "blob", "tags", "token", "other"],
            ),
            (
                "StatusClass",
                strings(StatusClass::ALL, StatusClass::as_str),
                &["2xx", "3xx", "4xx", "5xx", "error"],
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
            let distinct: std::collections::HashSet<_> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "{name}: values not distinct");
        }
        let methods: Vec<&str> = PRECREATED_METHODS
            .iter()
            .map(http::Method::as_str)
            .collect();
        assert_eq!(methods, ["GET", "HEAD"]);
    }

    #[test]
    fn display_is_the_label_value() {
        assert_eq!(FillResult::DigestMismatch.to_string(), "digest_mismatch");
        assert_eq!(StatusClass::Error.to_string(), "error");
    }

    #[test]
    fn classes_and_kinds_as_before() {
        assert_eq!(StatusClass::of(204), StatusClass::Success);
        assert_eq!(StatusClass::of(307), StatusClass::Redirection);
        assert_eq!(StatusClass::of(404), StatusClass::ClientError);
        assert_eq!(StatusClass::of(503), StatusClass::ServerError);
        assert_eq!(StatusClass::of(101), StatusClass::ServerError);
        assert_eq!(
            UpstreamKind::of_path("/v2/a/blobs/sha256:x"),
            UpstreamKind::Blob
        );
        assert_eq!(
            UpstreamKind::of_path("/v2/a/manifests/v1"),
            UpstreamKind::Manifest
        );
        assert_eq!(UpstreamKind::of_path("/v2/a/tags/list"), UpstreamKind::Tags);
        assert_eq!(UpstreamKind::of_path("/token"), UpstreamKind::Other);
        assert_eq!(RequestResult::Stale.source(), Source::Cache);
        assert_eq!(RequestResult::Coalesced.source(), Source::Upstream);
    }
}

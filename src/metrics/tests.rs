//! Unit tests of the metrics: every family and every label value is exported from the start.

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

#[test]
fn every_label_value_is_created_at_start() {
    let m = Metrics::new(&["docker.io".to_string()], 1000);
    let text = String::from_utf8(m.render()).expect("utf8");
    let has = |family: &str, label: &str, value: &str| {
        let want = format!(r#"{label}="{value}""#);
        assert!(
            text.lines()
                .any(|l| l.starts_with(family) && l.contains(&want)),
            "{family} {want} missing"
        );
    };
    for v in Kind::ALL {
        has("wharf_requests_total", "kind", v.as_str());
    }
    for v in RequestResult::ALL {
        has("wharf_requests_total", "result", v.as_str());
    }
    for v in Source::ALL {
        has("wharf_served_bytes_total", "source", v.as_str());
    }
    for v in FillResult::ALL {
        has("wharf_fills_total", "result", v.as_str());
    }
    for v in AuthzResult::ALL {
        has("wharf_authz_decisions_total", "result", v.as_str());
    }
    for v in Revalidation::ALL {
        has("wharf_tag_revalidations_total", "result", v.as_str());
    }
    for v in TeeResult::ALL {
        has("wharf_upload_tees_total", "result", v.as_str());
    }
    for v in Relay::ALL {
        has("wharf_peer_fills_total", "result", v.as_str());
        has("wharf_shared_fills_total", "result", v.as_str());
    }
    for v in BucketOp::ALL {
        has("wharf_shared_store_errors_total", "op", v.as_str());
    }
    for v in UpstreamKind::ALL {
        has(
            "wharf_upstream_request_duration_seconds",
            "kind",
            v.as_str(),
        );
    }
    for v in StatusClass::ALL {
        has("wharf_upstream_requests_total", "status_class", v.as_str());
        has("wharf_push_requests_total", "status_class", v.as_str());
    }
}

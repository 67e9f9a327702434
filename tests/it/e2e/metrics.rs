//! Metrics end to end: `skopeo` pulls through the `wharf` binary twice (miss, then hit), a
//! real Prometheus scrapes Wharf's admin listener, and every metric the Grafana dashboard
//! (`dashboards/wharf.json`) uses is exported, is stored by Prometheus, and every dashboard
//! query runs in Prometheus.
//!
//! Needs `prometheus` on PATH besides the e2e tools (Debian package `prometheus`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::dashboard::{self, family, WHARF_METRICS};
use super::proc;
use super::prometheus::{http_get, Exposition, Prometheus};
use super::wharf::{Wharf, UPSTREAM_NAME};
use super::Setup;

const JOB: &str = "wharf";
/// The dashboard panel whose query must show a hit ratio above 0 after the second pull.
const HIT_RATIO_PANEL: &str = "Hit ratio by requests, per upstream";

/// Calls `check` every 250 ms until it returns `Some` (then says what it returned), for at
/// most 30 s; panics with `what`, Prometheus' view of its targets and `logs` otherwise.
fn poll(
    prom: &Prometheus,
    what: &str,
    logs: &dyn Fn() -> String,
    mut check: impl FnMut() -> Option<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(seen) = check() {
            eprintln!("e2e: {what}: {seen}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s\ntargets: {:?}\n{}",
            prom.api("targets"),
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `proc::tools_present`, plus `prometheus`.
fn tools_present(test: &str) -> bool {
    if !proc::tools_present(test) {
        return false;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join("prometheus").is_file());
    if found {
        return true;
    }
    if std::env::var("WHARF_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("e2e test {test} SKIPPED: missing [\"prometheus\"] (WHARF_SKIP_E2E=1)");
        return false;
    }
    panic!(
        "e2e test {test} needs [\"prometheus\"] on PATH (Debian: apt-get install prometheus), \
         or set WHARF_SKIP_E2E=1 to skip it"
    );
}

/// The values a label of a `wharf_*` family may take (`None`: any non-empty value).
fn allowed(family: &str, label: &str) -> Option<Option<&'static [&'static str]>> {
    let values: &'static [&'static str] = match (family, label) {
        (_, "upstream") => &[UPSTREAM_NAME, ""],
        ("wharf_upstream_request_duration_seconds", "kind") => {
            &["manifest", "blob", "tags", "token", "other"]
        }
        (_, "kind") => &["manifest", "blob", "tags", "referrers", "token"],
        (_, "source") => &["cache", "upstream"],
        (_, "method") => &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        (_, "status_class") => &["2xx", "3xx", "4xx", "5xx", "error"],
        ("wharf_requests_total", "result") => {
            &["hit", "miss", "stale", "coalesced", "denied", "error"]
        }
        ("wharf_fills_total", "result") => &[
            "committed",
            "digest_mismatch",
            "upstream_error",
            "aborted",
            "uncacheable",
            "busy",
        ],
        ("wharf_tag_revalidations_total", "result") => &["unchanged", "changed", "error"],
        ("wharf_authz_decisions_total", "result") => {
            &["allowed", "denied", "offline_allowed", "offline_denied"]
        }
        ("wharf_upload_tees_total", "result") => &["committed", "digest_mismatch", "abandoned"],
        ("wharf_peer_fills_total" | "wharf_shared_fills_total", "result") => {
            &["served", "fallback"]
        }
        ("wharf_shared_store_errors_total", "op") => &["get", "put"],
        ("wharf_rule_refusals_total", "rule") => &["allow", "deny"],
        ("wharf_cache_removals_total" | "wharf_cache_removed_bytes_total", "reason") => {
            &["size", "quota", "idle", "purge"]
        }
        ("wharf_notify_deliveries_total", "result") => &["delivered", "failed"],
        (_, "sink") => return Some(None),
        ("wharf_build_info", "version") | (_, "le") => return Some(None),
        _ => return None,
    };
    Some(Some(values))
}

/// Problems with a scrape: dashboard metrics not exported (or of the wrong type), and label
/// names or values outside the documented sets.
fn scrape_problems(scrape: &Exposition, dash: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    let types: BTreeMap<&str, &str> = WHARF_METRICS.iter().copied().collect();
    for fam in dashboard::used_families(dash) {
        match (scrape.types.get(&fam), types.get(fam.as_str())) {
            (None, _) => problems.push(format!("no `# TYPE {fam} ...` in /metrics")),
            (Some(got), Some(want)) if got != want => {
                problems.push(format!("{fam} is a {got}, the dashboard expects a {want}"))
            }
            _ => {}
        }
    }
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with("wharf_"))
    {
        let fam = if scrape.types.contains_key(&s.name) {
            s.name.as_str()
        } else {
            family(&s.name)
        };
        for (label, value) in &s.labels {
            let ok = match allowed(fam, label) {
                None => false,
                Some(None) => !value.is_empty(),
                Some(Some(values)) => values.contains(&value.as_str()),
            };
            if !ok {
                problems.push(format!("{}: label {label}={value:?}", s.name));
            }
        }
    }
    problems
}

#[test]
fn e2e_metrics_scraped_by_prometheus_cover_the_dashboard() {
    if !tools_present("e2e_metrics_scraped_by_prometheus_cover_the_dashboard") {
        return;
    }
    let dash = dashboard::load();
    let started = Instant::now();
    let s = Setup::new();
    // A file sink, so that the notify families have their label combinations.
    let keys = format!(
        "tag_ttl = \"1s\"\n\n[[notify]]\nname = \"events\"\nfile = {}\n",
        super::wharf::quoted(s.dir.path().join("events.jsonl"))
    );
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, &keys, &[]);
    let admin = wharf.admin_port;
    let health = http_get(admin, "/healthz");
    assert!(
        matches!(&health, Ok((200, body)) if body.trim() == "ok"),
        "/healthz: {health:?}\n{}",
        wharf.proc.logs()
    );
    let ready = http_get(admin, "/readyz");
    assert!(
        matches!(ready, Ok((200, _))),
        "/readyz: {ready:?}\n{}",
        wharf.proc.logs()
    );
    let prom = Prometheus::start(s.dir.path(), JOB, &[format!("127.0.0.1:{admin}")]);
    let logs = || format!("{}\n{}", wharf.proc.logs(), prom.proc.logs());
    // A first scrape before any pull, so that rate() sees the pulls' increments.
    let up = format!("up{{job=\"{JOB}\"}}");
    poll(&prom, "Prometheus' first scrape of Wharf", &logs, || {
        prom.scalar(&up)
            .filter(|v| *v == 1.0)
            .map(|v| format!("up = {v}"))
    });

    // Every image by tag, twice: the first pull fills the cache, the second hits it.
    let host = wharf.host();
    let tls = ["--src-tls-verify=false"];
    for round in ["miss", "hit"] {
        for (i, image) in s.images.iter().enumerate() {
            let source = format!("docker://{host}/{}:{}", image.repo, image.tag);
            s.pull(i, &source, &tls, &format!("metrics-{round}-{i}"), &logs);
        }
    }

    // Wharf's own answer: every metric the dashboard uses, with documented labels only.
    let (status, text) = http_get(admin, "/metrics").unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(status, 200, "/metrics: {text}");
    let scrape = Exposition::parse(&text).unwrap_or_else(|e| panic!("/metrics: {e}\n{text}"));
    let problems = scrape_problems(&scrape, &dash);
    assert!(
        problems.is_empty(),
        "/metrics after a pull:\n{}\n----- /metrics -----\n{text}",
        problems.join("\n")
    );
    let requests = |result| scrape.sum("wharf_requests_total", &[("result", result)]);
    assert!(requests("miss") > 0.0, "no misses in /metrics:\n{text}");
    assert!(requests("hit") > 0.0, "no hits in /metrics:\n{text}");
    let cache_bytes = [("source", "cache")];
    let served = scrape.sum("wharf_served_bytes_total", &cache_bytes);
    assert!(served > 0.0, "no bytes served from cache:\n{text}");
    assert_eq!(scrape.sum("wharf_build_info", &[]), 1.0, "{text}");

    // Prometheus sees the hits and the misses, and the dashboard's hit ratio shows them.
    let hit = r#"sum(wharf_requests_total{result="hit"})"#;
    let miss = r#"sum(wharf_requests_total{result="miss"})"#;
    poll(&prom, "hits and misses in Prometheus", &logs, || {
        let (h, m) = (prom.scalar(hit)?, prom.scalar(miss)?);
        (h > 0.0 && m > 0.0).then(|| format!("{h} hits, {m} misses"))
    });
    let exprs = dashboard::exprs(&dash);
    let (_, ratio) = exprs
        .iter()
        .find(|(panel, _)| panel == HIT_RATIO_PANEL)
        .unwrap_or_else(|| panic!("no panel {HIT_RATIO_PANEL:?} in the dashboard"));
    let ratio = dashboard::runnable(ratio);
    poll(&prom, "a hit ratio above 0 on the dashboard", &logs, || {
        let values = prom.values(&ratio);
        let above = values.iter().any(|v| *v > 0.0);
        above.then(|| format!("{HIT_RATIO_PANEL}: {values:?}"))
    });

    // Prometheus stores every series the dashboard uses, and runs every dashboard query.
    let stored = prom.names().unwrap_or_else(|e| panic!("names: {e}"));
    let missing: Vec<(String, _)> = dashboard::used_series(&dash)
        .into_iter()
        .filter(|(series, _)| !stored.contains(series))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard series Prometheus has not stored (series, panels): {missing:#?}"
    );
    let mut failed = Vec::new();
    let mut empty = Vec::new();
    for (panel, expr) in exprs {
        let promql = dashboard::runnable(&expr);
        match prom.query(&promql) {
            Err(e) => failed.push(format!("{panel:?}: {promql}\n  -> {e}")),
            Ok(r) if r.as_array().is_some_and(Vec::is_empty) => empty.push(panel),
            Ok(_) => {}
        }
    }
    assert!(
        failed.is_empty(),
        "dashboard queries Prometheus rejects:\n{}",
        failed.join("\n")
    );
    eprintln!("e2e: dashboard panels with an empty query after a pull: {empty:?}");
    eprintln!("e2e: metrics test took {:?}", started.elapsed());
}

#[test]
fn scrape_problems_name_missing_metrics_wrong_types_and_stray_labels() {
    let dash = serde_json::json!({"panels": [{"targets": [
        {"expr": "rate(wharf_fills_total[1m]) + wharf_cache_blobs"},
        {"expr": "histogram_quantile(0.9, rate(wharf_time_to_first_byte_seconds_bucket[1m]))"}
    ]}]});
    let text = "# TYPE wharf_fills_total gauge\nwharf_fills_total{result=\"committed\"} 1\n\
                # TYPE wharf_time_to_first_byte_seconds histogram\n\
                wharf_time_to_first_byte_seconds_bucket{kind=\"blob\",source=\"cache\",le=\"+Inf\"} 1\n\
                wharf_time_to_first_byte_seconds_count{kind=\"blob\",source=\"disk\"} 1\n\
                # TYPE wharf_requests_total counter\n\
                wharf_requests_total{upstream=\"registry.test\",repo=\"e2e/app\"} 1\n";
    let scrape = Exposition::parse(text).expect("parses");
    let problems = scrape_problems(&scrape, &dash);
    let expected = [
        "wharf_fills_total is a gauge, the dashboard expects a counter",
        "no `# TYPE wharf_cache_blobs ...` in /metrics",
        "wharf_time_to_first_byte_seconds_count: label source=\"disk\"",
        "wharf_requests_total: label repo=\"e2e/app\"",
    ];
    let mut got = problems.clone();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

//! `dashboards/wharf.json`, the Grafana dashboard: its PromQL expressions, the metric names
//! they use, and static checks that need no external software (the e2e test in `metrics`
//! checks the names against a real scrape and runs every expression in a real Prometheus).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use regex::Regex;
use serde_json::Value;

/// Every metric Wharf exports, with its Prometheus type.
pub const WHARF_METRICS: &[(&str, &str)] = &[
    ("wharf_requests_total", "counter"),
    ("wharf_served_bytes_total", "counter"),
    ("wharf_upstream_requests_total", "counter"),
    ("wharf_upstream_request_duration_seconds", "histogram"),
    ("wharf_upstream_bytes_total", "counter"),
    ("wharf_time_to_first_byte_seconds", "histogram"),
    ("wharf_fills_in_progress", "gauge"),
    ("wharf_fill_waiters", "gauge"),
    ("wharf_fills_total", "counter"),
    ("wharf_cache_size_bytes", "gauge"),
    ("wharf_cache_max_bytes", "gauge"),
    ("wharf_cache_blobs", "gauge"),
    ("wharf_cache_manifest_bytes", "gauge"),
    ("wharf_cache_manifests", "gauge"),
    ("wharf_evictions_total", "counter"),
    ("wharf_evicted_bytes_total", "counter"),
    ("wharf_upstream_up", "gauge"),
    ("wharf_upstream_ratelimit_remaining", "gauge"),
    ("wharf_upstream_ratelimit_limit", "gauge"),
    ("wharf_tag_revalidations_total", "counter"),
    ("wharf_authz_decisions_total", "counter"),
    ("wharf_push_requests_total", "counter"),
    ("wharf_upload_tees_total", "counter"),
    ("wharf_peer_fills_total", "counter"),
    ("wharf_shared_fills_total", "counter"),
    ("wharf_shared_store_errors_total", "counter"),
    ("wharf_shared_backstop_uploads_total", "counter"),
    ("wharf_rule_refusals_total", "counter"),
    ("wharf_cache_removals_total", "counter"),
    ("wharf_cache_removed_bytes_total", "counter"),
    ("wharf_upstream_cache_bytes", "gauge"),
    ("wharf_upstream_cache_blobs", "gauge"),
    ("wharf_upstream_max_bytes", "gauge"),
    ("wharf_notify_dropped_total", "counter"),
    ("wharf_notify_deliveries_total", "counter"),
    ("wharf_build_info", "gauge"),
];

/// Suffixes of a histogram's series.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

/// Grafana's built-in variables the dashboard may use, and a value that stands in for each
/// when an expression is sent to Prometheus directly.
const BUILTINS: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
];

pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards/wharf.json")
}

pub fn load() -> Value {
    let file = path();
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()))
}

/// Every panel, rows included, with the panels nested in collapsed rows (and in the legacy
/// `rows[].panels` layout), depth first.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: Option<&'a Value>, out: &mut Vec<&'a Value>) {
        for p in list.and_then(Value::as_array).into_iter().flatten() {
            out.push(p);
            walk(p.get("panels"), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard.get("panels"), &mut out);
    for row in dashboard
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(row.get("panels"), &mut out);
    }
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn title(panel: &Value) -> String {
    panel["title"].as_str().unwrap_or("<untitled>").to_string()
}

/// `(panel title, expr)` for every target of every panel.
pub fn exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((title(p), expr.to_string()));
            }
        }
    }
    out
}

/// The `wharf_*` identifiers in `expr`, as written (histogram suffixes kept).
pub fn series_names(expr: &str) -> BTreeSet<String> {
    let re = Regex::new(r"wharf_[a-z0-9_]+").expect("regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// A series name with a histogram suffix stripped: the metric family's name.
pub fn family(series: &str) -> &str {
    HISTOGRAM_SUFFIXES
        .iter()
        .find_map(|s| series.strip_suffix(s))
        .unwrap_or(series)
}

/// Every series name the dashboard uses (histogram suffixes kept), with the panels using it.
pub fn used_series(dashboard: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (panel, expr) in exprs(dashboard) {
        for name in series_names(&expr) {
            out.entry(name).or_default().insert(panel.clone());
        }
    }
    out
}

/// Every metric family the dashboard uses (histogram suffixes stripped).
pub fn used_families(dashboard: &Value) -> BTreeSet<String> {
    let series = used_series(dashboard);
    series.keys().map(|s| family(s).to_string()).collect()
}

/// `expr` with the dashboard's variables replaced so that Prometheus can run it: template
/// variables select everything (`.*`, their "All" value), built-ins get fixed durations.
pub fn runnable(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in BUILTINS {
        out = out.replace(var, value);
    }
    let re = Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").expect("regex");
    re.replace_all(&out, ".*").into_owned()
}

fn template_vars(dashboard: &Value) -> Vec<&Value> {
    let list = dashboard["templating"]["list"].as_array();
    list.into_iter().flatten().collect()
}

#[test]
fn dashboard_is_an_importable_grafana_dashboard() {
    let d = load();
    let mut problems = Vec::new();
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    assert!(schema >= 36, "schemaVersion {schema}: too old");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "no uid");
    assert!(
        d["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title"
    );
    let vars = template_vars(&d);
    let ds = vars.iter().find(|v| v["name"] == "datasource");
    let ds = ds.expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource", "datasource variable type");
    assert_eq!(ds["query"], "prometheus", "datasource variable query");
    let ds_ref = |v: &Value| v["uid"] == "${datasource}" && v["type"] == "prometheus";
    for v in vars.iter().filter(|v| v["type"] == "query") {
        if !ds_ref(&v["datasource"]) {
            problems.push(format!(
                "variable {}: datasource {}",
                v["name"], v["datasource"]
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let t = title(p);
        let id = p["id"].as_u64();
        if !id.is_some_and(|id| ids.insert(id)) {
            problems.push(format!(
                "panel {t:?}: missing or duplicate id {:?}",
                p["id"]
            ));
        }
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        let fits =
            matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24);
        if !fits || g["y"].as_u64().is_none() {
            problems.push(format!("panel {t:?}: bad gridPos {g}"));
        }
        if is_row(p) {
            continue;
        }
        if !ds_ref(&p["datasource"]) {
            problems.push(format!("panel {t:?}: datasource {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("panel {t:?}: no targets"));
        }
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            if expr.trim().is_empty() || series_names(expr).is_empty() {
                problems.push(format!(
                    "panel {t:?}: target without a wharf_ expr: {target}"
                ));
            }
            if !target["datasource"].is_null() && !ds_ref(&target["datasource"]) {
                problems.push(format!(
                    "panel {t:?}: target datasource {}",
                    target["datasource"]
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn dashboard_queries_use_wharf_metrics_as_their_types_allow() {
    let d = load();
    let types: BTreeMap<&str, &str> = WHARF_METRICS.iter().copied().collect();
    let var_names: BTreeSet<String> = template_vars(&d)
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let var_re = Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").expect("regex");
    let mut problems = Vec::new();
    for (panel, expr) in exprs(&d) {
        for series in series_names(&expr) {
            let fam = family(&series);
            let suffixed = fam != series;
            match types.get(fam).copied() {
                None if types.contains_key(series.as_str()) => {}
                None => problems.push(format!("{panel:?}: unknown metric {series}")),
                Some("histogram") if !suffixed => {
                    problems.push(format!("{panel:?}: histogram {series} without a suffix"))
                }
                Some(t) if suffixed && t != "histogram" => {
                    problems.push(format!("{panel:?}: {series} on a {t}"))
                }
                _ => {}
            }
        }
        if expr.contains("histogram_quantile") && !(expr.contains("_bucket") && expr.contains("le"))
        {
            problems.push(format!(
                "{panel:?}: histogram_quantile without _bucket by le"
            ));
        }
        for cap in var_re.captures_iter(&expr) {
            let name = &cap[1];
            let builtin = BUILTINS.iter().any(|(b, _)| b[1..] == *name);
            if !builtin && !var_names.contains(name) {
                problems.push(format!("{panel:?}: undefined variable ${name}"));
            }
        }
    }
    // Every metric Wharf exports has a place on the dashboard.
    let used = used_families(&d);
    for (name, _) in WHARF_METRICS {
        if !used.contains(*name) {
            problems.push(format!("metric {name} is on no panel"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn dashboard_metric_name_extraction() {
    let expr = "histogram_quantile(0.9, sum by (le) (rate(wharf_time_to_first_byte_seconds_bucket\
                {instance=~\"$instance\"}[$__rate_interval]))) / wharf_fills_total";
    let names: Vec<String> = series_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "wharf_fills_total",
            "wharf_time_to_first_byte_seconds_bucket"
        ]
    );
    assert_eq!(family(&names[1]), "wharf_time_to_first_byte_seconds");
    assert_eq!(family("wharf_fills_total"), "wharf_fills_total");
    assert_eq!(
        runnable("rate(x{instance=~\"$instance\", upstream=~\"${upstream}\"}[$__rate_interval])"),
        "rate(x{instance=~\".*\", upstream=~\".*\"}[1m])"
    );
    // Collapsed rows' panels are found.
    let d: Value = serde_json::json!({"panels": [
        {"type": "row", "panels": [{"targets": [{"expr": "wharf_cache_blobs"}]}]},
        {"targets": [{"expr": "wharf_upstream_up"}]}
    ]});
    let fams: Vec<String> = used_families(&d).into_iter().collect();
    assert_eq!(fams, ["wharf_cache_blobs", "wharf_upstream_up"]);
}

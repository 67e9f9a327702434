//! `cache.max_idle` and `upstream.max_size` against the real registry and skopeo: an idle
//! image is swept and costs the upstream its blobs again; an upstream held under its quota
//! while a second upstream (the same registry under another name) keeps the blobs it links.

use super::prometheus::http_get;
use super::{proc, Setup, Wharf, UPSTREAM_NAME};
use crate::support::scrape::sample;
use std::time::{Duration, Instant};

/// Polls the admin port's `/metrics` until `ok` (at most 20 s); the last text and whether.
fn metrics_until(admin: u16, ok: impl Fn(&str) -> bool) -> (String, bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http_get(admin, "/metrics")
            .map(|(_, t)| t)
            .unwrap_or_default();
        if ok(&text) || Instant::now() >= deadline {
            let held = ok(&text);
            return (text, held);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn e2e_an_idle_image_is_swept_and_fetched_again() {
    if !proc::tools_present("e2e_an_idle_image_is_swept_and_fetched_again") {
        return;
    }
    let s = Setup::new();
    let keys = "tag_ttl = \"1s\"\n[cache]\nmax_idle = \"2s\"\n";
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, keys, &[]);
    let (host, tls) = (wharf.host(), ["--src-tls-verify=false"]);
    let logs = || wharf.proc.logs();
    let source = format!("docker://{host}/e2e/docker:v1");
    let before = s.upstream.blob_gets();
    s.pull(2, &source, &tls, "idle-cold", &logs);
    assert_eq!(
        s.upstream.blob_gets() - before,
        s.expected[2].blobs,
        "cold pull"
    );
    let (text, swept) = metrics_until(wharf.admin_port, |t| {
        sample(t, "wharf_cache_removals_total{reason=\"idle\"}") >= s.expected[2].blobs as f64
    });
    assert!(swept, "the idle image was swept:\n{text}\n{}", logs());
    let before = s.upstream.blob_gets();
    s.pull(2, &source, &tls, "idle-again", &logs);
    assert_eq!(
        s.upstream.blob_gets() - before,
        s.expected[2].blobs,
        "swept blobs are fetched again"
    );
}

#[test]
fn e2e_a_quota_holds_one_upstream_while_another_keeps_its_blobs() {
    if !proc::tools_present("e2e_a_quota_holds_one_upstream_while_another_keeps_its_blobs") {
        return;
    }
    let s = Setup::new();
    let ca = serde_json::to_string(&s.certs.ca_pem.to_string_lossy()).expect("ca");
    let url = serde_json::to_string(&s.upstream.url()).expect("url");
    let keys = format!(
        "tag_ttl = \"1s\"\nmax_size = \"1MiB\"\n[[upstream]]\nname = \"second\"\nurl = {url}\nca_file = {ca}\n"
    );
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, &keys, &[]);
    let (host, tls) = (wharf.host(), ["--src-tls-verify=false"]);
    let logs = || wharf.proc.logs();
    // e2e/app has a 3 MiB layer: through `second` (no quota) first, then the quota'd one.
    let via_second = format!("docker://{host}/second/e2e/app:v1");
    let via_first = format!("docker://{host}/{UPSTREAM_NAME}/e2e/app:v1");
    s.pull(0, &via_second, &tls, "quota-second", &logs);
    s.pull(0, &via_first, &tls, "quota-first", &logs);
    let gauge = format!("wharf_upstream_cache_bytes{{upstream=\"{UPSTREAM_NAME}\"}}");
    let (text, held) = metrics_until(wharf.admin_port, |t| {
        sample(t, "wharf_cache_removals_total{reason=\"quota\"}") >= 1.0
            && sample(t, &gauge) <= 0.8 * (1 << 20) as f64
    });
    assert!(
        held,
        "{UPSTREAM_NAME} held under 1 MiB:\n{text}\n{}",
        logs()
    );
    assert!(
        sample(&text, "wharf_upstream_cache_bytes{upstream=\"second\"}") >= (3 << 20) as f64,
        "second keeps its blobs:\n{text}"
    );
    let before = s.upstream.blob_gets();
    s.pull(0, &via_second, &tls, "quota-second-again", &logs);
    assert_eq!(
        s.upstream.blob_gets(),
        before,
        "second's blobs stayed on disk"
    );
}

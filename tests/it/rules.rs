//! Repository rules (`allow`, `deny`): a refused repository is answered `403 DENIED`, with a
//! message naming the upstream and the rule, before any cache read or upstream request, on
//! every route that names a repository (pulls, HEADs, tags lists, referrers, pushes, tokens).

use crate::support::{self, get, request, scrape::sample, scrape::scrape, Fake};

const RULES: &str = r#"
allow = ["library/*", "myorg/**"]
deny = ["library/evil*"]
allow_push = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_repository_costs_no_upstream_request_and_names_the_rule() {
    let fake = Fake::start().await;
    let (_, alpine) = fake.put_image("library/alpine", "3", &[b"alpine layer"]);
    fake.put_image("library/evil", "1", &[b"evil layer"]);
    fake.put_image("other/app", "1", &[b"other layer"]);
    let evil_blob = fake.put_blob_in("library/evil", b"evil blob");
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "docker.io", &fake.url(), RULES).await;
    let base = format!("http://{}", w.addr);
    let denied = "repository library/evil is refused by docker.io's deny rule \"library/evil*\"";
    for (method, path) in [
        ("GET", "/v2/library/evil/manifests/1".to_string()),
        ("HEAD", "/v2/library/evil/manifests/1".to_string()),
        ("GET", "/v2/evil/manifests/1".to_string()),
        ("GET", format!("/v2/library/evil/blobs/{evil_blob}")),
        ("GET", "/v2/library/evil/tags/list".to_string()),
        ("GET", format!("/v2/library/evil/referrers/{evil_blob}")),
        ("POST", "/v2/library/evil/blobs/uploads/".to_string()),
    ] {
        let r = request(method, &format!("{base}{path}"), &[]).await;
        assert_eq!(r.status, 403, "{method} {path}");
        if method != "HEAD" {
            assert_eq!(r.error_code(), "DENIED", "{method} {path}");
            let message = r.json()["errors"][0]["message"].clone();
            assert_eq!(message, denied, "{method} {path}");
        }
    }
    let r = get(&format!("{base}/v2/other/app/manifests/1")).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "repository other/app is not in docker.io's allow rules"
    );
    assert_eq!(fake.total(), 0, "refusals reach no upstream");
    // An allowed repository is served as ever.
    let r = get(&format!("{base}/v2/library/alpine/manifests/3")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), alpine.as_slice());
    assert_eq!(fake.count("GET manifest"), 1);
    let text = scrape(w.admin_addr).await;
    let refusals = |rule| {
        sample(
            &text,
            &format!("wharf_rule_refusals_total{{rule=\"{rule}\",upstream=\"docker.io\"}}"),
        )
    };
    assert_eq!(refusals("deny"), 7.0, "{text}");
    assert_eq!(refusals("allow"), 1.0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_a_refused_repository_checks_no_credentials_upstream() {
    let fake = Fake::start().await;
    fake.put_image("library/evil", "1", &[b"evil layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "docker.io", &fake.url(), RULES).await;
    let auth = support::basic("alice", "secret");
    let url = format!(
        "http://{}/token?service=wharf&scope=repository:library/evil:pull",
        w.addr
    );
    let r = request("GET", &url, &[("authorization", auth.as_str())]).await;
    assert_eq!(r.status, 200, "a token, good for nothing refused");
    let token = r.json()["token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");
    let r = request(
        "GET",
        &format!("http://{}/v2/library/evil/manifests/1", w.addr),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "DENIED");
    assert_eq!(
        fake.total(),
        0,
        "neither the token nor the pull asked the upstream"
    );
    w.shutdown().await;
}

//! Redirects: loops end, `Authorization` never leaves the upstream's own origin, an upstream
//! cannot send Wharf into a network of another kind than its own (issue 18: this host, seen
//! from an upstream reached through `0.0.0.0`, and the other way round), and what comes back
//! through a redirect is checked (a tags list is parsed and re-emitted).

use super::{assert_error, lossy, Env};
use crate::support::{data, get, Fake};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_ends_after_five_hops_and_is_not_retried() {
    let env = Env::start("").await; // default retries = 2
    let blob = data(20_000, 140);
    let d = env.fake.put_blob(&blob);
    let (_, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    // Every blob and manifest GET redirects to itself (absolute and relative forms).
    env.fake.redirect_next(
        "GET blob",
        u64::MAX,
        &format!("{}/v2/org/app/blobs/{d}", env.fake.url()),
    );
    env.fake
        .redirect_next("GET manifest", u64::MAX, "/v2/org/app/manifests/v1");
    let r = get(&env.blob("org/app", &d)).await;
    assert_error(&r, 502, "UNAVAILABLE", "blob redirect loop");
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "UNAVAILABLE", "manifest redirect loop");
    assert_eq!(
        (env.fake.count("GET blob"), env.fake.count("GET manifest")),
        (6, 6),
        "the first request and five redirects each, no retry"
    );
    assert_eq!(env.upstream_requests("GET", "3xx").await, 12.0);
    assert_eq!(env.fills("upstream_error").await, 1.0);
    env.assert_blob_not_cached(&d, "redirect loop").await;

    env.fake.clear_faults();
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "after the loop: {}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice());
    assert!(get(&env.manifest("org/app", "v1")).await.bytes().as_ref() == m.as_slice());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_gets_no_authorization() {
    // The registry wants tokens; its blobs live on a "CDN" (another origin) that does not.
    let registry = Fake::start_with_auth().await;
    let cdn = Fake::start().await;
    let blob = data(50_000, 141);
    let d = registry.put_blob(&blob);
    cdn.put_blob(&blob);
    let (_, m) = registry.put_image("org/app", "v1", &[b"layer"]);
    let env = Env::with_fake(registry, "").await;
    // A first pull teaches Wharf the registry's token scheme.
    assert!(get(&env.manifest("org/app", "v1")).await.bytes().as_ref() == m.as_slice());
    env.fake.redirect_next(
        "GET blob",
        1,
        &format!("{}/v2/org/app/blobs/{d}?X-Signature=abc", cdn.url()),
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice(), "bytes from the CDN");

    let to_registry: Vec<_> = env
        .fake
        .requests()
        .into_iter()
        .filter(|s| s.method == "GET" && s.uri.contains("/blobs/"))
        .collect();
    assert!(
        to_registry
            .last()
            .and_then(|s| s.authorization.as_deref())
            .is_some_and(|a| a.starts_with("Bearer ")),
        "the registry got the token: {to_registry:?}"
    );
    let to_cdn = cdn.requests();
    assert_eq!(to_cdn.len(), 1, "{to_cdn:?}");
    assert_eq!(
        to_cdn[0].uri,
        format!("/v2/org/app/blobs/{d}?X-Signature=abc"),
        "the Location is followed as given"
    );
    assert_eq!(
        to_cdn[0].authorization, None,
        "Authorization must not follow a redirect to another host"
    );
    assert_eq!(env.upstream_requests("GET", "3xx").await, 1.0);
    // Verified and cached: the next request asks neither host.
    let before = (env.fake.total(), cdn.total());
    assert!(get(&env.blob("org/app", &d)).await.bytes().as_ref() == blob.as_slice());
    assert_eq!((env.fake.total(), cdn.total()), before);
    env.shutdown().await;
}

/// The tags list URL of `repo` on the Wharf of `env`.
fn tags_url(env: &Env, repo: &str) -> String {
    format!("http://{}/v2/{repo}/tags/list", env.w.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tags_list_redirected_to_the_admin_metrics_is_refused_not_streamed() {
    // The issue's repro: `tags/list` answered with Wharf's own admin `/metrics`. A loopback
    // upstream may reach loopback, so the request is made; what comes back is no tags list.
    let env = Env::start("").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    let metrics = format!("http://{}/metrics", env.w.admin_addr);
    env.fake.redirect_next("GET tags", 1, &metrics);
    let r = get(&tags_url(&env, "org/app")).await;
    assert_error(&r, 502, "UNAVAILABLE", "metrics as a tags list");
    assert!(
        !lossy(&r).contains("wharf_"),
        "no metric reaches the client: {}",
        lossy(&r)
    );
    assert!(
        lossy(&r).contains("invalid tags list"),
        "the message says why: {}",
        lossy(&r)
    );
    assert_eq!(env.fake.count("GET tags"), 1, "not retried");
    // Through `0.0.0.0` (this host under another name): refused before any connection.
    let port = env.w.admin_addr.port();
    env.fake
        .redirect_next("GET tags", 1, &format!("http://0.0.0.0:{port}/metrics"));
    let r = get(&tags_url(&env, "org/app")).await;
    assert_error(&r, 502, "UNAVAILABLE", "metrics through 0.0.0.0");
    assert!(
        lossy(&r).contains("refused to connect to 0.0.0.0"),
        "{}",
        lossy(&r)
    );
    // The upstream's own answer is served.
    let r = get(&tags_url(&env, "org/app")).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "org/app", "tags": ["v1"]})
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tags_list_is_re_emitted_not_streamed() {
    // A "service" on loopback whose answers the test controls: blobs of a second fake.
    let svc = Fake::start().await;
    let env = Env::start("").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    let at = |d: &str| format!("{}/v2/any/blobs/{d}", svc.url());
    // A tags list with more in it than a tags list: only the tags come back, under the name
    // the client asked for.
    let padded = br#"{"name":"elsewhere/x","tags":["v1","v2"],"secret":"s3cr3t"}"#;
    env.fake
        .redirect_next("GET tags", 1, &at(&svc.put_blob(padded)));
    let r = get(&tags_url(&env, "org/app")).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "org/app", "tags": ["v1", "v2"]})
    );
    assert!(!lossy(&r).contains("s3cr3t"));
    // A metadata service's JSON, an oversized list, a tag that is no tag: 502 each.
    let metadata = br#"{"instance-id":"i-0123","iam":{"role":"admin"}}"#.to_vec();
    let mut huge = br#"{"name":"org/app","tags":["#.to_vec();
    while huge.len() <= 4 * 1024 * 1024 {
        huge.extend_from_slice(br#""aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","#);
    }
    huge.extend_from_slice(br#""z"]}"#);
    let bad_tag = br#"{"name":"org/app","tags":["v1","../../etc"]}"#.to_vec();
    for (what, body) in [("metadata", metadata), ("huge", huge), ("bad tag", bad_tag)] {
        env.fake
            .redirect_next("GET tags", 1, &at(&svc.put_blob(&body)));
        let r = get(&tags_url(&env, "org/app")).await;
        assert_error(&r, 502, "UNAVAILABLE", what);
        assert!(!lossy(&r).contains("i-0123"), "{what}: {}", lossy(&r));
    }
    assert_eq!(svc.count("GET blob"), 4);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_upstream_cannot_reach_this_host_through_0_0_0_0() {
    // A "metadata service" on this host, serving a valid manifest: the address is refused,
    // not the content.
    let svc = Fake::start().await;
    let env = Env::start("").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    svc.put_image("org/app", "v1", &[b"layer"]);
    let port = svc.url().rsplit(':').next().expect("port").to_string();
    env.fake.redirect_next(
        "GET manifest",
        1,
        &format!("http://0.0.0.0:{port}/v2/org/app/manifests/v1"),
    );
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "UNAVAILABLE", "manifest through 0.0.0.0");
    assert_eq!(svc.total(), 0, "the service was never asked");
    assert_eq!(env.fake.count("GET manifest"), 1, "not retried");
    // Loopback to loopback stays allowed (a registry and its storage on one host).
    env.fake.redirect_next(
        "GET manifest",
        1,
        &format!("{}/v2/org/app/manifests/v1", svc.url()),
    );
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert_eq!(svc.count("GET manifest"), 1);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_on_0_0_0_0_cannot_send_wharf_to_loopback() {
    // The upstream is configured as `http://0.0.0.0:<port>` (unspecified, not loopback, the
    // way a public upstream is not): its redirects to 127.0.0.1 or `localhost` are refused
    // by address and by name, like a public registry's redirect to the admin listener.
    let fake = Fake::start().await;
    let port = fake.url().rsplit(':').next().expect("port").to_string();
    let env = Env::with_fake_at(fake, &format!("http://0.0.0.0:{port}"), "").await;
    let svc = Fake::start().await;
    let blob = data(30_000, 142);
    let d = env.fake.put_blob(&blob);
    svc.put_blob(&blob);
    let (_, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    svc.put_image("org/app", "v1", &[b"layer"]);
    assert!(get(&env.manifest("org/app", "v1")).await.bytes().as_ref() == m.as_slice());

    let svc_port = svc.url().rsplit(':').next().expect("port").to_string();
    env.fake.redirect_next(
        "GET blob",
        1,
        &format!("http://127.0.0.1:{svc_port}/v2/org/app/blobs/{d}"),
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_error(&r, 502, "UNAVAILABLE", "blob to 127.0.0.1");
    assert!(lossy(&r).contains("loopback address"), "{}", lossy(&r));
    env.assert_blob_not_cached(&d, "refused redirect").await;
    let tag = "v2";
    env.fake.put_image("org/app", tag, &[b"layer2"]);
    env.fake.redirect_next(
        "GET manifest",
        1,
        &format!("http://localhost:{svc_port}/v2/org/app/manifests/v1"),
    );
    let r = get(&env.manifest("org/app", tag)).await;
    assert_error(&r, 502, "UNAVAILABLE", "manifest to localhost");
    env.fake.redirect_next(
        "GET tags",
        1,
        &format!("http://{}/metrics", env.w.admin_addr),
    );
    let r = get(&tags_url(&env, "org/app")).await;
    assert_error(&r, 502, "UNAVAILABLE", "tags list to the admin listener");
    assert!(lossy(&r).contains("refused to connect"), "{}", lossy(&r));
    assert_eq!(svc.total(), 0, "the loopback service was never asked");
    assert_eq!(env.upstream_requests("GET", "error").await, 3.0);

    // A redirect within the upstream's own host is followed, and the blob is served.
    env.fake.redirect_next(
        "GET blob",
        1,
        &format!("http://0.0.0.0:{port}/v2/other/blobs/{d}"),
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_services_json_after_a_redirect_is_no_manifest() {
    // A "metadata service" on loopback, reached from a loopback upstream (the same kind of
    // network, so the address policy lets the redirect through): its JSON has no media type
    // and no manifest fields, so it is refused, never served or cached as a manifest.
    let env = Env::start("retries = 0").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    let metadata = Fake::start().await;
    let secret = br#"{"instance-id":"i-0123","iam":{"role":"admin","token":"s3cr3t"}}"#;
    metadata.put_manifest("meta/data", Some("latest"), "application/json", secret);
    let location = format!("{}/v2/meta/data/manifests/latest", metadata.url());
    env.fake.redirect_next("GET manifest", 1, &location);
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "MANIFEST_INVALID", "metadata JSON as a manifest");
    assert!(!lossy(&r).contains("s3cr3t"), "{}", lossy(&r));
    assert_eq!(
        metadata.count("GET manifest"),
        1,
        "the redirect was followed"
    );
    // Healed: the real manifest, asked for again.
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    env.shutdown().await;
}

//! Routing (prefix, `?ns=`, default, Docker Hub's `library/`), the API surface, error
//! envelopes and the upstream token dance.

use crate::support::{self, data, digest_of, get, request, Fake};
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_endpoint_answers_with_the_api_version() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let r = get(&format!("http://{}/v2/", w.addr)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(fake.total(), 0, "the base endpoint needs no upstream");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_ns_and_default_routing_reach_the_same_image() {
    let fake = Fake::start().await;
    let (d, m) = fake.put_image("org/app", "v1", &[b"abc"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test:5000", &fake.url(), "").await;
    for path in [
        "/v2/org/app/manifests/v1",
        "/v2/up.test:5000/org/app/manifests/v1",
        "/v2/org/app/manifests/v1?ns=up.test:5000",
    ] {
        let r = get(&format!("http://{}{path}", w.addr)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.bytes().as_ref(), m.as_slice(), "{path}");
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(r.header("etag"), Some(format!("\"{d}\"").as_str()));
    }
    assert_eq!(
        fake.count("GET manifest"),
        1,
        "one upstream fetch for all three forms"
    );
    let r = get(&format!(
        "http://{}/v2/org/app/manifests/v1?ns=nowhere.test",
        w.addr
    ))
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_single_segment_names_get_library() {
    let fake = Fake::start().await;
    let (_, m) = fake.put_image("library/alpine", "3", &[b"alpine layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "docker.io", &fake.url(), "").await;
    for path in [
        "/v2/alpine/manifests/3",
        "/v2/library/alpine/manifests/3",
        "/v2/docker.io/alpine/manifests/3",
    ] {
        let r = get(&format!("http://{}{path}", w.addr)).await;
        assert_eq!(r.bytes().as_ref(), m.as_slice(), "{path}");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_spec_error_codes_without_touching_upstream() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}", w.addr);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/v2/app/blobs/sha256:1234", 400, "DIGEST_INVALID"),
        (
            "GET",
            "/v2/app/blobs/sha256:..%2f..%2fetc%2fpasswd",
            400,
            "DIGEST_INVALID",
        ),
        ("GET", "/v2/App/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/a/../b/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/a%2fb/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/app/manifests/.bad", 404, "MANIFEST_UNKNOWN"),
        ("PUT", "/v2/app/manifests/v1", 405, "UNSUPPORTED"),
        ("DELETE", "/v2/app/manifests/v1", 405, "UNSUPPORTED"),
        ("POST", "/v2/app/blobs/uploads/", 405, "UNSUPPORTED"),
        ("GET", "/v2/app/nothing/here", 404, "NAME_UNKNOWN"),
    ];
    for (method, path, status, code) in cases {
        let r = request(method, &format!("{base}{path}"), &[]).await;
        assert_eq!(r.status.as_u16(), *status, "{method} {path}");
        assert_eq!(r.error_code(), *code, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(fake.total(), 0, "invalid requests never reach the upstream");
    // Unknown things upstream: the upstream's 404 becomes the right code.
    let r = get(&format!("{base}/v2/app/manifests/missing")).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = get(&format!("{base}/v2/app/blobs/{}", digest_of(b"nope"))).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let r = get(&format!("{base}/v2/app/tags/list")).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "NAME_UNKNOWN")
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_head_on_a_miss_does_not_download() {
    let fake = Fake::start().await;
    let blob = data(64 * 1024, 9);
    let d = fake.put_blob(&blob);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    let r = request("HEAD", &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("65536"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!((fake.count("HEAD blob"), fake.count("GET blob")), (1, 0));
    assert_eq!(get(&url).await.bytes().len(), 65536);
    let r = request("HEAD", &url, &[]).await;
    assert_eq!(r.header("content-length"), Some("65536"));
    assert_eq!(
        (fake.count("HEAD blob"), fake.count("GET blob")),
        (1, 1),
        "HEAD on a hit is local"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_is_passed_through_with_pagination() {
    let fake = Fake::start().await;
    fake.put_image("org/app", "v1", &[b"1"]);
    fake.put_image("org/app", "v2", &[b"2"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let r = get(&format!("http://{}/v2/org/app/tags/list?n=10", w.addr)).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(r.bytes()).expect("json");
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_dance_one_token_serves_many_pulls() {
    let fake = Fake::start().await;
    fake.token_auth.store(true, Ordering::SeqCst);
    let layers: Vec<Vec<u8>> = (0..5).map(|i| data(10_000 + i, i as u64)).collect();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let (d, m) = fake.put_image("org/private", "v1", &refs);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/private", w.addr);
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), m.as_slice());
    let gets: Vec<_> = layers
        .iter()
        .map(|l| {
            let url = format!("{base}/blobs/{}", digest_of(l));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for (g, l) in gets.into_iter().zip(&layers) {
        assert_eq!(g.await.expect("join").bytes().as_ref(), l.as_slice());
    }
    assert_eq!(get(&format!("{base}/manifests/{d}")).await.status, 200);
    assert_eq!(
        fake.tokens_issued.load(Ordering::SeqCst),
        1,
        "one token for the whole pull"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_narrow_accept_costs_one_upstream_get() {
    let fake = Fake::start().await;
    let (_, m) = fake.put_image("org/app", "v1", &[b"layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/org/app/manifests/v1", w.addr);
    assert_eq!(get(&url).await.bytes().as_ref(), m.as_slice());
    assert_eq!(fake.count("GET manifest"), 1);
    // An old client that only takes Docker schema2: the cached OCI manifest is not for it.
    let docker_v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let r = request("GET", &url, &[("accept", docker_v2)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        fake.count("GET manifest"),
        2,
        "exactly one more upstream GET, with its Accept"
    );
    // A client that takes it is still served from the cache.
    assert_eq!(get(&url).await.bytes().as_ref(), m.as_slice());
    assert_eq!(fake.count("GET manifest"), 2);
    w.shutdown().await;
}

//! Hostile request input: traversal, lengths, algorithms, ranges, headers, query strings.

use super::{raw_exchange, token, Env};
use crate::support::{data, digest_of, request, Resp};

const HEX: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn lossy(r: &Resp) -> String {
    match &r.body {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(e) => format!("<error: {e}>"),
    }
}

/// Sends each `(method, path, status, code)` (with the token dance) and checks the answer.
async fn expect_all(env: &Env, cases: &[(&str, String, u16, &str)]) {
    for (method, path, status, code) in cases {
        let r = request(method, &env.url(path), &[]).await;
        assert_eq!(
            r.status.as_u16(),
            *status,
            "{method} {path}: status (body {})",
            lossy(&r)
        );
        assert_eq!(r.error_code(), *code, "{method} {path}: error code");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_refused_before_the_upstream() {
    let env = Env::start("").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    let s = |p: &str| p.to_string();
    let cases = vec![
        (
            "GET",
            s("/v2/../../etc/passwd/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        ("GET", s("/v2/org/../app/manifests/v1"), 400, "NAME_INVALID"),
        (
            "GET",
            s("/v2/%2e%2e/%2e%2e/etc/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/%2E%2E/app/blobs/sha256:{HEX}"),
            400,
            "NAME_INVALID",
        ),
        ("GET", s("/v2/org%2fapp/manifests/v1"), 400, "NAME_INVALID"),
        (
            "GET",
            s("/v2/org%2F..%2Fapp/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        ("GET", s("/v2/org%5capp/manifests/v1"), 400, "NAME_INVALID"),
        ("GET", s("/v2/org%00app/manifests/v1"), 400, "NAME_INVALID"),
        (
            "GET",
            s("/v2/up.test/../org/app/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            s("/v2/org/app/tags/../manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            s("/v2/org/app/manifests/..%2f..%2fetc%2fpasswd"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            s("/v2/org/app/manifests/%2e%2e"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            s("/v2/org/app/manifests/.."),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            s("/v2/org/app/manifests/v1%00"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            s("/v2/org/app/blobs/sha256:..%2f..%2fblobs"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256%3a{HEX}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256:{HEX}%00"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256:%2e%2e%2f{}", &HEX[9..]),
            400,
            "DIGEST_INVALID",
        ),
        ("HEAD", s("/v2/org/app/blobs/..%2F..%2Fmeta"), 400, ""),
        (
            "GET",
            s("/v2/org/app/manifests/v1?ns=..%2F..%2Fetc"),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "GET",
            s("/v2/org/app/manifests/v1?ns=up.test%2F..%2Fx"),
            404,
            "NAME_UNKNOWN",
        ),
    ];
    for (method, path, status, code) in &cases {
        let r = request(method, &env.url(path), &[]).await;
        assert_eq!(r.status.as_u16(), *status, "{method} {path}: {}", lossy(&r));
        if *method == "GET" {
            assert_eq!(r.error_code(), *code, "{method} {path}: error code");
        }
    }
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.assert_disk_untouched("traversal");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_nul_and_control_bytes_are_refused_by_the_parser() {
    let env = Env::start("").await;
    let t = token(&env.w).await;
    for path in [
        "/v2/org\0app/manifests/v1".to_string(),
        "/v2/org/app/manifests/v1\0".to_string(),
        format!("/v2/org/app/blobs/sha256:{HEX}\0/../../x"),
        "/v2/org\x7fapp/manifests/v1".to_string(),
        "/v2/org app/manifests/v1".to_string(),
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: wharf\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        );
        let (status, out) = raw_exchange(env.w.addr, req.as_bytes()).await;
        assert_eq!(
            status,
            400,
            "{path:?}: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        );
    }
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.assert_disk_untouched("raw bytes");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_tags_past_the_limits_are_refused_and_at_the_limits_accepted() {
    let env = Env::start("").await;
    let name_255 = format!("org/{}", "a".repeat(251));
    let name_256 = format!("org/{}", "a".repeat(252));
    let many = "a/".repeat(200) + "a";
    let tag_128 = "t".repeat(128);
    let tag_129 = "t".repeat(129);
    let long_path = format!("{}/manifests/v1", "b".repeat(40_000));
    let cases = vec![
        (
            "GET",
            format!("/v2/{name_256}/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/{name_256}/blobs/sha256:{HEX}"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/{name_256}/tags/list"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/{many}/manifests/v1"),
            400,
            "NAME_INVALID",
        ),
        ("GET", format!("/v2/{long_path}"), 400, "NAME_INVALID"),
        (
            "GET",
            format!("/v2/org/app/manifests/{tag_129}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/org/app/manifests/{}", "t".repeat(10_000)),
            404,
            "MANIFEST_UNKNOWN",
        ),
    ];
    expect_all(&env, &cases).await;
    assert_eq!(
        env.fake.total(),
        0,
        "over the limits: nothing reached the upstream"
    );
    env.assert_disk_untouched("over the limits");

    // Exactly at the limits: valid, so asked upstream (where they do not exist).
    let cases = vec![
        (
            "GET",
            format!("/v2/{name_255}/manifests/v1"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/org/app/manifests/{tag_128}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
    ];
    expect_all(&env, &cases).await;
    let seen: Vec<String> = env.fake.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        seen,
        vec![
            format!("/v2/{name_255}/manifests/v1"),
            format!("/v2/org/app/manifests/{tag_128}"),
        ],
        "at the limits: one upstream request each, names intact"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_digest_algorithms_are_unsupported() {
    let env = Env::start("").await;
    let cases = vec![
        (
            "GET",
            format!("/v2/org/app/blobs/sha512:{}", "ab".repeat(64)),
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/md5:{}", "ab".repeat(16)),
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/org/app/blobs/multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
                .to_string(),
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            format!("/v2/org/app/manifests/sha384:{}", "ab".repeat(48)),
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/{}:{HEX}", "x".repeat(5000)),
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/SHA256:{HEX}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256:{}", HEX.to_uppercase()),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256+:{HEX}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/org/app/blobs/sha256:{HEX}{HEX}"),
            400,
            "DIGEST_INVALID",
        ),
    ];
    expect_all(&env, &cases).await;
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.assert_disk_untouched("digest algorithms");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ranges_serve_the_whole_blob_or_416() {
    let env = Env::start("").await;
    let blob = data(100_000, 150);
    let d = env.fake.put_blob(&blob);
    let url = env.url(&format!("/v2/org/app/blobs/{d}"));
    assert!(request("GET", &url, &[]).await.bytes().as_ref() == blob.as_slice());
    let before = env.fake.total();
    let many = format!(
        "bytes={}",
        (0..2000)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let whole: [&str; 11] = [
        "bytes=0-1,5-6",
        "bytes=10-20, 30-40",
        many.as_str(),
        "bytes=5-4",
        "bytes=99999-0",
        "bytes=18446744073709551616-",
        "bytes=-18446744073709551616",
        "bytes=0-18446744073709551616",
        "bytes=1-2-3",
        "bytes=--5",
        "items=0-1",
    ];
    for h in whole {
        let r = request("GET", &url, &[("range", h)]).await;
        let shown = &h[..h.len().min(40)];
        assert_eq!(r.status, 200, "{shown}: ignored, whole blob");
        assert_eq!(r.header("content-range"), None, "{shown}");
        assert!(r.bytes().as_ref() == blob.as_slice(), "{shown}: bytes");
    }
    // The largest end there is: the whole blob as a 206.
    let r = request("GET", &url, &[("range", "bytes=0-18446744073709551615")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 0-99999/100000"));
    assert!(r.bytes().as_ref() == blob.as_slice());
    for h in ["bytes=100000-", "bytes=18446744073709551615-", "bytes=-0"] {
        let r = request("GET", &url, &[("range", h)]).await;
        assert_eq!(r.status, 416, "{h}");
        assert_eq!(r.error_code(), "RANGE_INVALID", "{h}");
        assert_eq!(r.header("content-range"), Some("bytes */100000"), "{h}");
    }
    assert_eq!(
        env.fake.total(),
        before,
        "a cached blob: nothing went upstream"
    );
    assert_eq!(digest_of(&blob), d);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_are_refused_by_hyper_with_431() {
    let env = Env::start("").await;
    let d = env.fake.put_blob(&data(1000, 151));
    let t = token(&env.w).await;
    let path = format!("/v2/org/app/blobs/{d}");
    let big_value = "x".repeat(100 * 1024);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, extra) in [
        ("one 100 KiB header", format!("X-Big: {big_value}\r\n")),
        ("200 headers", many),
        ("a 100 KiB cookie", format!("Cookie: a={big_value}\r\n")),
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: wharf\r\nAuthorization: Bearer {t}\r\n{extra}Connection: close\r\n\r\n"
        );
        let (status, _) = raw_exchange(env.w.addr, req.as_bytes()).await;
        assert_eq!(status, 431, "{what}");
    }
    let long_uri = format!("{path}?{}", "q=1&".repeat(30_000));
    let req = format!("GET {long_uri} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n");
    let (status, _) = raw_exchange(env.w.addr, req.as_bytes()).await;
    assert!(
        matches!(status, 414 | 431),
        "a 120 KB request line: {status}"
    );

    // HTTP/2 (prior knowledge): over the 16 KiB header list limit, a 431; far over it, the
    // connection is refused with GOAWAY(ENHANCE_YOUR_CALM).
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for (size, want) in [(20 * 1024, "431"), (100 * 1024, "ENHANCE_YOUR_CALM")] {
        let req = http::Request::get(env.url(&path))
            .header("authorization", format!("Bearer {t}"))
            .header("x-big", "y".repeat(size))
            .body(http_body_util::Empty::new())
            .expect("request");
        let got = match client.request(req).await {
            Ok(r) => r.status().as_str().to_string(),
            Err(e) => format!("{e:?}"),
        };
        assert!(got.contains(want), "h2, a {size}-byte header: {got}");
    }
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.assert_disk_untouched("huge headers");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_query_parameters_change_nothing() {
    let env = Env::start("").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake.put_image("org/app", "v2", &[b"layer 2"]);
    let junk: String = (0..3000).map(|i| format!("p{i}=x&")).collect();
    let r = request("GET", &env.url(&format!("/v2/?{junk}")), &[]).await;
    assert_eq!(r.status, 200, "base: {}", lossy(&r));
    let r = request(
        "GET",
        &env.url(&format!("/v2/org/app/blobs/sha256:{HEX}x?{junk}")),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let many_ns: String = (0..2000).map(|_| "ns=nowhere.test&").collect();
    let r = request(
        "GET",
        &env.url(&format!("/v2/org/app/manifests/v1?{many_ns}")),
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");

    // A legitimate request drowned in junk: only the pagination Wharf understands goes on,
    // and only well-formed values of it.
    let r = request(
        "GET",
        &env.url(&format!("/v2/org/app/tags/list?{junk}n=1&last=v0&{junk}")),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "tags: {}", lossy(&r));
    let r = request(
        "GET",
        &env.url("/v2/org/app/tags/list?n=1;rm&last=a%26b=c&last=x/../y"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "tags: {}", lossy(&r));
    let seen: Vec<String> = env.fake.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        seen,
        vec![
            "/v2/org/app/tags/list?n=1&last=v0".to_string(),
            "/v2/org/app/tags/list".to_string()
        ],
        "the upstream saw sane pagination only"
    );
    env.assert_disk_untouched("query parameters");
    env.shutdown().await;
}

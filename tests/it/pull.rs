//! Pull-path behaviour against the fake upstream: single-flight fills, verification,
//! persistence, tag freshness, routing and errors.

use crate::support::{self, data, digest_of, eventually, get, request, BlobBehavior, Fake};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_cold_requests_make_one_upstream_get() {
    let fake = Fake::start().await;
    let blob = data(4 * 1024 * 1024, 1);
    let d = fake.put_blob(&blob);
    // Slow enough that every client arrives while the fill is running.
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 128 * 1024,
            delay: Duration::from_millis(15),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    let reqs: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get(&url).await }
            })
        })
        .collect();
    for r in reqs {
        let r = r.await.expect("join");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        assert_eq!(r.header("content-length"), Some("4194304"));
        assert_eq!(
            digest_of(r.bytes()),
            d,
            "every client gets the verified bytes"
        );
    }
    assert_eq!(fake.count("GET blob"), 1, "exactly one upstream blob GET");
    // And the next request is a pure cache hit.
    let r = get(&url).await;
    assert_eq!(r.bytes().as_ref(), blob.as_slice());
    assert_eq!(fake.count("GET blob"), 1);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_disconnects_does_not_stop_the_fill() {
    let fake = Fake::start().await;
    let blob = data(2 * 1024 * 1024, 2);
    let d = fake.put_blob(&blob);
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: Duration::from_millis(5),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    {
        // Read the headers and one chunk, then hang up.
        use http_body_util::BodyExt;
        let token = get(&format!("http://{}/token?service=wharf", w.addr))
            .await
            .json()["token"]
            .as_str()
            .expect("a token")
            .to_string();
        let req = http::Request::get(&url)
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("req");
        let resp = support::client().request(req).await.expect("resp");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.expect("a frame").expect("ok");
        assert!(first.is_data());
    }
    let store = w.registry.store().clone();
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    assert!(
        eventually(Duration::from_secs(20), || store.files().exists(&digest)).await,
        "the abandoned fill still commits"
    );
    let r = get(&url).await;
    assert_eq!(digest_of(r.bytes()), d);
    assert_eq!(
        fake.count("GET blob"),
        1,
        "served from the cache, no second fetch"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_bytes_from_upstream_are_never_served_or_cached() {
    let fake = Fake::start().await;
    let blob = data(300 * 1024, 3);
    let d = fake.put_blob(&blob);
    let mut bad = blob.clone();
    bad[1000] ^= 0xff;
    fake.set_behavior(
        &d,
        BlobBehavior {
            corrupt: Some(bad),
            chunk: 32 * 1024,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    let r = get(&url).await;
    assert!(
        r.body.is_err(),
        "the body must end in an error, not a 200 of wrong bytes"
    );
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    assert!(
        !w.registry.store().files().exists(&digest),
        "nothing cached"
    );
    assert_eq!(tmp_files(dir.path()), 0, "temp file removed");
    // The upstream heals: the next request refetches and succeeds.
    fake.clear_behavior(&d);
    let r = get(&url).await;
    assert_eq!(r.bytes().as_ref(), blob.as_slice());
    assert_eq!(fake.count("GET blob"), 2);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_that_breaks_mid_body_resets_the_client() {
    let fake = Fake::start().await;
    let blob = data(512 * 1024, 4);
    let d = fake.put_blob(&blob);
    // Slow enough that the client is streaming when the upstream breaks.
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: Duration::from_millis(20),
            fail_after: Some(200 * 1024),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    let r = get(&url).await;
    assert_eq!(r.status, 200, "headers were sent before the break");
    assert!(
        r.body.is_err(),
        "the body must end in an error, got {:?} bytes",
        r.body.as_ref().map(|b| b.len())
    );
    assert_eq!(tmp_files(dir.path()), 0, "temp file removed");
    fake.clear_behavior(&d);
    assert_eq!(get(&url).await.bytes().as_ref(), blob.as_slice());
    w.shutdown().await;
}

fn tmp_files(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_the_cache() {
    let fake = Fake::start().await;
    let layer = data(100 * 1024, 5);
    let (md, manifest) = fake.put_image("org/app", "v1", &[&layer]);
    let ld = digest_of(&layer);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    assert_eq!(
        get(&format!("{base}/manifests/v1")).await.bytes().as_ref(),
        manifest.as_slice()
    );
    assert_eq!(
        get(&format!("{base}/blobs/{ld}")).await.bytes().as_ref(),
        layer.as_slice()
    );
    w.shutdown().await;

    fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = fake.total();
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), manifest.as_slice());
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(
        get(&format!("{base}/manifests/{md}"))
            .await
            .bytes()
            .as_ref(),
        manifest.as_slice()
    );
    assert_eq!(
        get(&format!("{base}/blobs/{ld}")).await.bytes().as_ref(),
        layer.as_slice()
    );
    assert_eq!(
        fake.total(),
        before,
        "no upstream request within tag_ttl after restart"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_are_revalidated_with_head_after_tag_ttl_and_served_stale_on_error() {
    let fake = Fake::start().await;
    let (d1, m1) = fake.put_image("org/app", "latest", &[b"layer one"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "tag_ttl = \"1s\"").await;
    let url = format!("http://{}/v2/org/app/manifests/latest", w.addr);
    assert_eq!(get(&url).await.bytes().as_ref(), m1.as_slice());
    assert_eq!(
        (fake.count("GET manifest"), fake.count("HEAD manifest")),
        (1, 0)
    );
    // Fresh: no upstream traffic.
    assert_eq!(get(&url).await.bytes().as_ref(), m1.as_slice());
    assert_eq!(
        (fake.count("GET manifest"), fake.count("HEAD manifest")),
        (1, 0)
    );
    // Stale and unchanged: one HEAD, no GET.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&url).await.header("docker-content-digest"),
        Some(d1.as_str())
    );
    assert_eq!(
        (fake.count("GET manifest"), fake.count("HEAD manifest")),
        (1, 1)
    );
    // Moved upstream: HEAD, then GET of the new manifest.
    let (d2, m2) = fake.put_image("org/app", "latest", &[b"layer two"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&url).await;
    assert_eq!(r.bytes().as_ref(), m2.as_slice());
    assert_eq!(r.header("docker-content-digest"), Some(d2.as_str()));
    assert_eq!(
        (fake.count("GET manifest"), fake.count("HEAD manifest")),
        (2, 2)
    );
    // Upstream down: the cached resolution is served.
    fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), m2.as_slice());
    // An uncached tag while down is an error, not a 200.
    let r = get(&format!("http://{}/v2/org/app/manifests/other", w.addr)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "UNAVAILABLE");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_requests_on_cached_and_in_progress_blobs() {
    let fake = Fake::start().await;
    let blob = data(1024 * 1024, 6);
    let d = fake.put_blob(&blob);
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    // Start a fill, then ask for a range while it runs.
    let full = tokio::spawn({
        let url = url.clone();
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r = request("GET", &url, &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/1048576"));
    assert_eq!(r.bytes().as_ref(), &blob[100..200]);
    assert_eq!(full.await.expect("join").bytes().as_ref(), blob.as_slice());
    assert_eq!(fake.count("GET blob"), 1);
    // Cached: suffix, open-ended, unsatisfiable, and ignored forms.
    let r = request("GET", &url, &[("range", "bytes=-10")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.bytes().as_ref(), &blob[blob.len() - 10..]);
    let r = request("GET", &url, &[("range", "bytes=1048000-")]).await;
    assert_eq!(
        r.header("content-range"),
        Some("bytes 1048000-1048575/1048576")
    );
    assert_eq!(r.bytes().as_ref(), &blob[1048000..]);
    let r = request("GET", &url, &[("range", "bytes=2000000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1048576"));
    let r = request("GET", &url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status, 200, "multiple ranges are ignored");
    assert_eq!(r.bytes().len(), blob.len());
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truncated_cached_blob_is_quarantined_and_refetched() {
    let fake = Fake::start().await;
    let blob = data(200 * 1024, 12);
    let d = fake.put_blob(&blob);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    assert_eq!(get(&url).await.bytes().as_ref(), blob.as_slice());
    // The commit may finish just after the client's last (verified) byte.
    w.registry.drain_fills(Duration::from_secs(10)).await;
    // Damage the cached file behind Wharf's back.
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    let path = w.registry.store().files().path(&digest);
    std::fs::write(&path, &blob[..1000]).expect("truncate");
    let r = get(&url).await;
    assert_eq!(
        r.bytes().as_ref(),
        blob.as_slice(),
        "served correctly, refetched"
    );
    assert_eq!(fake.count("GET blob"), 2);
    w.registry.drain_fills(Duration::from_secs(10)).await;
    assert!(
        dir.path().join("quarantine").join(digest.hex()).exists(),
        "damaged file kept aside"
    );
    assert_eq!(
        std::fs::metadata(&path).expect("refetched").len(),
        blob.len() as u64
    );
    w.shutdown().await;
}

/// The commit's fsyncs are not on the client's path: the last byte goes out once the digest
/// is verified. A commit that then fails (here: a file where the blob's directory must go)
/// still gives the client the whole blob; it is just not cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failing_after_verification_still_serves_the_blob() {
    let fake = Fake::start().await;
    let layer = data(300_000, 77);
    let d = fake.put_blob(&layer);
    let dir = tempfile::tempdir().expect("tmp");
    // Three chunks 150 ms apart: time to put the blocker in place once the fill is under way
    // (the cache lookup before it must see an ordinary, empty cache).
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 100_000,
            delay: Duration::from_millis(150),
            ..Default::default()
        },
    );
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let hex = d.trim_start_matches("sha256:");
    let shard = dir.path().join("blobs/sha256").join(&hex[..2]);
    let url = format!("http://{}/v2/org/app/blobs/{d}", w.addr);
    let pull = tokio::spawn(async move { get(&url).await });
    assert!(
        eventually(Duration::from_secs(5), || fake.count("GET blob") == 1).await,
        "the fill started"
    );
    std::fs::create_dir_all(shard.parent().expect("parent")).expect("mkdir");
    std::fs::write(&shard, b"in the way").expect("block the shard directory");
    let r = pull.await.expect("pull");
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    assert!(!shard.is_dir(), "nothing was committed");
    w.shutdown().await;
}

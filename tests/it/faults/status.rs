//! Error statuses from the upstream: 5xx bursts and 429s, on blobs and manifests.

use super::{assert_error, lossy, Env};
use crate::support::{data, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_500_502_503_are_clean_errors_and_not_remembered() {
    // Default retries (2): 502 and 503 are retried, 500 is not.
    let env = Env::start("").await;
    let mut upstream_5xx = 0.0;
    let mut gets = 0;
    for (i, status) in [500u16, 502, 503].into_iter().enumerate() {
        let what = format!("burst of {status}");
        let attempts = if status == 500 { 1 } else { 3 };
        let blob = data(40_000, 120 + i as u64);
        let d = env.fake.put_blob(&blob);
        let tag = format!("t{status}");
        let (md, m) = env.fake.put_image("org/app", &tag, &[b"layer"]);

        // A burst longer than the retries: every request of the burst fails cleanly.
        env.fake.fail_next(3, status);
        let r = get(&env.blob("org/app", &d)).await;
        assert_error(&r, 502, "UNAVAILABLE", &format!("{what}: blob"));
        env.fake.fail_next(3, status);
        let r = get(&env.manifest("org/app", &tag)).await;
        assert_error(&r, 502, "UNAVAILABLE", &format!("{what}: manifest"));
        gets += attempts;
        assert_eq!(env.fake.count("GET blob"), gets, "{what}: blob GETs");
        assert_eq!(
            env.fake.count("GET manifest"),
            gets,
            "{what}: manifest GETs"
        );
        upstream_5xx += 2.0 * attempts as f64;
        assert_eq!(
            env.upstream_requests("GET", "5xx").await,
            upstream_5xx,
            "{what}"
        );
        env.assert_blob_not_cached(&d, &what).await;
        env.assert_manifest_not_cached(&md, "org/app", &tag, &what);
        env.fake.clear_faults();

        // The burst is over: the next requests go upstream again and succeed.
        let r = get(&env.blob("org/app", &d)).await;
        assert_eq!(r.status, 200, "{what}: blob afterwards: {}", lossy(&r));
        assert!(r.bytes().as_ref() == blob.as_slice(), "{what}: blob bytes");
        let r = get(&env.manifest("org/app", &tag)).await;
        assert_eq!(r.status, 200, "{what}: manifest afterwards: {}", lossy(&r));
        assert!(r.bytes().as_ref() == m.as_slice(), "{what}: manifest bytes");
        gets += 1;
    }
    assert_eq!(env.fills("upstream_error").await, 3.0);
    assert_eq!(env.fills("committed").await, 3.0);
    assert_eq!(env.requests("blob", "error").await, 3.0);
    assert_eq!(env.requests("manifest", "error").await, 3.0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_passed_on_once_with_its_retry_after() {
    let env = Env::start("").await;
    let blob = data(30_000, 130);
    let d = env.fake.put_blob(&blob);
    let (md, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake.fail_always(429, Some("17"));
    let r = get(&env.blob("org/app", &d)).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "blob");
    assert_eq!(r.header("retry-after"), Some("17"), "blob Retry-After");
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "manifest");
    assert_eq!(r.header("retry-after"), Some("17"), "manifest Retry-After");
    assert_eq!(env.fake.total(), 2, "a 429 is not retried");
    assert_eq!(env.upstream_requests("GET", "4xx").await, 2.0);
    assert_eq!(env.requests("blob", "error").await, 1.0);
    assert_eq!(env.requests("manifest", "error").await, 1.0);
    env.assert_blob_not_cached(&d, "429").await;
    env.assert_manifest_not_cached(&md, "org/app", "v1", "429");
    env.fake.clear_faults();
    assert!(get(&env.blob("org/app", &d)).await.bytes().as_ref() == blob.as_slice());
    assert!(get(&env.manifest("org/app", "v1")).await.bytes().as_ref() == m.as_slice());
    assert_eq!(env.fake.total(), 4);
    env.shutdown().await;
}

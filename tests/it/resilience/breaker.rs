//! The circuit breaker: `breaker_failures` consecutive failed upstream requests (transport
//! errors and 5xx, per attempt) open it; for `breaker_cooldown` nothing goes upstream;
//! then one request goes through, and its outcome closes or re-opens it.

use super::{assert_error, assert_manifest, lossy, sleep_ms, Env};
use crate::support::{data, digest_of, get};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_consecutive_failures_and_closes_after_the_cooldown() {
    let env = Env::start(
        "tag_ttl = \"1s\"\nretries = 0\nbreaker_failures = 3\nbreaker_cooldown = \"2s\"",
    )
    .await;
    let layer = data(20_000, 7);
    let layer_d = digest_of(&layer);
    let (d1, m1) = env.fake.put_image("org/app", "v1", &[&layer]);
    for tag in ["probe", "after"] {
        env.fake.put_image("org/app", tag, &[tag.as_bytes()]);
    }
    let v1 = env.manifest("org/app", "v1");
    assert_manifest(&get(&v1).await, &d1, &m1, "warm-up");
    let r = get(&env.blob("org/app", &layer_d)).await;
    assert_eq!(r.status, 200, "warm-up layer: {}", lossy(&r));
    sleep_ms(1100).await; // v1 is stale now

    env.fake.down.store(true, Ordering::SeqCst);
    let before = env.fake.total();
    for i in 0..3 {
        let r = get(&env.manifest("org/app", &format!("missing-{i}"))).await;
        assert_error(&r, 502, "UNAVAILABLE", &format!("failure {i}"));
    }
    assert_eq!(env.fake.total(), before + 3, "three failed attempts");
    let opened = Instant::now();

    // Open: nothing goes upstream; the cache answers as for an unreachable upstream.
    let r = get(&env.manifest("org/app", "missing-x")).await;
    assert_error(&r, 502, "UNAVAILABLE", "uncached, breaker open");
    assert_manifest(&get(&v1).await, &d1, &m1, "stale tag, breaker open");
    let by_digest = get(&env.manifest("org/app", &d1)).await;
    assert_manifest(&by_digest, &d1, &m1, "by digest, breaker open");
    let r = get(&env.blob("org/app", &layer_d)).await;
    assert_eq!(r.status, 200, "cached layer, breaker open: {}", lossy(&r));
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    assert_eq!(
        env.fake.total(),
        before + 3,
        "the open breaker sent requests upstream"
    );
    assert!(
        opened.elapsed() < Duration::from_millis(1800),
        "test too slow to check the open state ({:?})",
        opened.elapsed()
    );

    // After the cooldown one request goes through; it fails, and the breaker re-opens.
    until(opened + Duration::from_millis(2200)).await;
    let r = get(&env.manifest("org/app", "missing-y")).await;
    assert_error(&r, 502, "UNAVAILABLE", "half-open probe fails");
    assert_eq!(env.fake.total(), before + 4, "one probe after the cooldown");
    let reopened = Instant::now();
    let r = get(&env.manifest("org/app", "missing-z")).await;
    assert_error(&r, 502, "UNAVAILABLE", "re-opened");
    assert_eq!(env.fake.total(), before + 4, "re-opened: nothing upstream");

    // Healthy upstream, but still within the new cooldown: still nothing upstream.
    env.fake.down.store(false, Ordering::SeqCst);
    assert_manifest(&get(&v1).await, &d1, &m1, "stale tag, re-opened");
    let r = get(&env.manifest("org/app", "probe")).await;
    assert_error(
        &r,
        502,
        "UNAVAILABLE",
        "uncached, re-opened, upstream healthy",
    );
    assert_eq!(env.fake.total(), before + 4, "re-opened: nothing upstream");

    // After it: the probe succeeds and closes the breaker; requests flow again.
    until(reopened + Duration::from_millis(2200)).await;
    let r = get(&env.manifest("org/app", "probe")).await;
    assert_eq!(r.status, 200, "successful probe: {}", lossy(&r));
    assert_eq!(env.fake.total(), before + 5);
    let r = get(&env.manifest("org/app", "after")).await;
    assert_eq!(r.status, 200, "closed: {}", lossy(&r));
    assert_eq!(
        env.fake.total(),
        before + 6,
        "closed: requests reach the upstream"
    );
    assert_manifest(&get(&v1).await, &d1, &m1, "stale tag, closed");
    assert_eq!(
        env.fake.count("HEAD manifest"),
        1,
        "closed: the stale tag is revalidated"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_consecutive_transport_errors_and_5xx_count() {
    let env = Env::start(
        "retries = 0\nnegative_ttl = \"0s\"\nbreaker_failures = 3\nbreaker_cooldown = \"30s\"",
    )
    .await;
    for tag in ["ok1", "ok2", "last"] {
        env.fake.put_image("org/app", tag, &[tag.as_bytes()]);
    }
    // 404s and 429s are answers, not failures.
    for i in 0..4 {
        let r = get(&env.manifest("org/app", &format!("missing-{i}"))).await;
        assert_error(&r, 404, "MANIFEST_UNKNOWN", "404");
    }
    env.fake.fail_next(4, 429);
    for i in 0..4 {
        let r = get(&env.manifest("org/app", "ok1")).await;
        assert_error(&r, 429, "TOOMANYREQUESTS", &format!("429 {i}"));
    }
    assert_eq!(env.fake.total(), 8);
    // Two failures, a success, two failures: never three in a row.
    env.fake.fail_next(2, 503);
    for _ in 0..2 {
        assert_error(
            &get(&env.manifest("org/app", "ok2")).await,
            502,
            "UNAVAILABLE",
            "503",
        );
    }
    let r = get(&env.manifest("org/app", "ok1")).await;
    assert_eq!(r.status, 200, "success between failures: {}", lossy(&r));
    env.fake.fail_next(1, 500);
    env.fake.drop_next(None, 1);
    for what in ["500", "dropped connection"] {
        let r = get(&env.manifest("org/app", "ok2")).await;
        assert_error(&r, 502, "UNAVAILABLE", what);
    }
    assert_eq!(env.fake.total(), 13);
    // Still closed: the next request reaches the upstream.
    let r = get(&env.manifest("org/app", "last")).await;
    assert_eq!(r.status, 200, "breaker still closed: {}", lossy(&r));
    assert_eq!(env.fake.total(), 14);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_attempt_counts_toward_the_breaker() {
    let env = Env::start("retries = 2\nbreaker_failures = 3\nbreaker_cooldown = \"30s\"").await;
    for tag in ["a", "b"] {
        env.fake.put_image("org/app", tag, &[tag.as_bytes()]);
    }
    env.fake.down.store(true, Ordering::SeqCst);
    let r = get(&env.manifest("org/app", "a")).await;
    assert_error(&r, 502, "UNAVAILABLE", "3 failed attempts");
    assert_eq!(env.fake.total(), 3, "one attempt + 2 retries");
    // Those were 3 failures: open, though the upstream is healthy now.
    env.fake.down.store(false, Ordering::SeqCst);
    let r = get(&env.manifest("org/app", "b")).await;
    assert_error(&r, 502, "UNAVAILABLE", "breaker open");
    assert_eq!(env.fake.total(), 3, "open: nothing upstream");
    env.shutdown().await;
}

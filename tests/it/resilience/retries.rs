//! `retries` and `response_timeout`: idempotent upstream requests that fail before any byte
//! reached a client are retried (connection errors, timeouts, 502/503/504); nothing else is,
//! and a blob body that breaks mid-stream never is.

use super::{assert_error, assert_manifest, lossy, sleep_ms, Env};
use crate::support::{self, data, digest_of, get, BlobBehavior, Fake};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_fails_twice_with_503_is_retried_to_success() {
    let env = Env::start("breaker_failures = 100").await; // default retries = 2
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake.fail_next(2, 503);
    assert_manifest(
        &get(&env.manifest("org/app", "v1")).await,
        &d,
        &m,
        "after 2 × 503",
    );
    assert_eq!(
        env.fake.count("GET manifest"),
        3,
        "two failures and one success"
    );
    assert_eq!(env.fake.total(), 3);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_gets_are_retried_on_502_503_504_and_dropped_connections() {
    let env = Env::start("breaker_failures = 100").await;
    let mut gets = 0;
    for (i, status) in [502u16, 503, 504, 0].into_iter().enumerate() {
        let blob = data(50_000, 10 + i as u64);
        let d = env.fake.put_blob(&blob);
        if status == 0 {
            env.fake.drop_next(Some("GET blob"), 2);
        } else {
            env.fake.fail_next_kind("GET blob", 2, status);
        }
        let r = get(&env.blob("org/app", &d)).await;
        let what = if status == 0 {
            "dropped".into()
        } else {
            status.to_string()
        };
        assert_eq!(r.status, 200, "blob after 2 × {what}: {}", lossy(&r));
        assert_eq!(r.bytes().as_ref(), blob.as_slice(), "blob after 2 × {what}");
        gets += 3;
        assert_eq!(env.fake.count("GET blob"), gets, "2 × {what} + 1 success");
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_the_configured_number() {
    let env = Env::start("retries = 2\nbreaker_failures = 100").await;
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake.fail_next(3, 503);
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "UNAVAILABLE", "3 × 503 with retries = 2");
    assert_eq!(env.fake.total(), 3, "one attempt + 2 retries");
    // Not remembered: the next request fetches.
    assert_manifest(
        &get(&env.manifest("org/app", "v1")).await,
        &d,
        &m,
        "afterwards",
    );
    assert_eq!(env.fake.total(), 4);
    env.shutdown().await;

    let env = Env::start("retries = 0\nbreaker_failures = 100").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake.fail_next(1, 503);
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "UNAVAILABLE", "503 with retries = 0");
    assert_eq!(env.fake.total(), 1, "retries = 0: one attempt");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_transient_failures_are_retried() {
    let env = Env::start("breaker_failures = 100").await;
    for tag in ["a", "b", "c"] {
        env.fake.put_image("org/app", tag, &[tag.as_bytes()]);
    }
    env.fake.fail_next(1, 500);
    let r = get(&env.manifest("org/app", "a")).await;
    assert_error(&r, 502, "UNAVAILABLE", "upstream 500");
    assert_eq!(env.fake.total(), 1, "a 500 is not retried");
    env.fake.fail_next(1, 429);
    let r = get(&env.manifest("org/app", "b")).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "upstream 429");
    assert_eq!(env.fake.total(), 2, "a 429 is not retried");
    let r = get(&env.manifest("org/app", "missing")).await;
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "upstream 404");
    assert_eq!(env.fake.total(), 3, "a 404 is not retried");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_response_times_out_and_is_retried() {
    let env = Env::start("response_timeout = \"300ms\"\nretries = 1\nbreaker_failures = 100").await;
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    env.fake
        .delay_next("GET manifest", 1, Duration::from_secs(3));
    let started = Instant::now();
    assert_manifest(
        &get(&env.manifest("org/app", "v1")).await,
        &d,
        &m,
        "after a timeout",
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "did not time out at 300 ms: {took:?}"
    );
    assert_eq!(
        env.fake.count("GET manifest"),
        2,
        "the slow attempt and the retry"
    );

    // Every attempt slow: an error, still well before the upstream would have answered.
    env.fake.put_image("org/app", "v2", &[b"layer 2"]);
    env.fake
        .delay_next("GET manifest", 2, Duration::from_secs(3));
    let started = Instant::now();
    let r = get(&env.manifest("org/app", "v2")).await;
    let took = started.elapsed();
    assert_error(&r, 502, "UNAVAILABLE", "two timeouts with retries = 1");
    assert!(
        took < Duration::from_millis(2500),
        "did not time out at 300 ms: {took:?}"
    );
    assert_eq!(env.fake.count("GET manifest"), 4);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_retried_too() {
    let fake = Fake::start_with_auth().await;
    let (d, m) = fake.put_image("pub/app", "v1", &[b"public layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "breaker_failures = 100").await;
    fake.fail_next_kind("token", 2, 503);
    let r = get(&format!("http://{}/v2/pub/app/manifests/v1", w.addr)).await;
    assert_manifest(&r, &d, &m, "after 2 × 503 from the token service");
    let tokens = fake.count("GET token") + fake.count("POST token");
    assert_eq!(tokens, 3, "two failed token requests and one success");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_breaks_mid_body_is_not_retried() {
    let env = Env::start("breaker_failures = 100").await; // default retries = 2
    let blob = data(512 * 1024, 4);
    let d = env.fake.put_blob(&blob);
    env.fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: Duration::from_millis(10),
            fail_after: Some(200 * 1024),
            ..Default::default()
        },
    );
    let url = env.blob("org/app", &d);
    let r = get(&url).await;
    assert_eq!(r.status, 200, "headers were sent before the break");
    assert!(
        r.body.is_err(),
        "the body must end in an error, got {:?} bytes",
        r.body.as_ref().map(|b| b.len())
    );
    sleep_ms(500).await;
    assert_eq!(
        env.fake.count("GET blob"),
        1,
        "a body that broke mid-stream is not retried"
    );
    // The next request starts a new fetch.
    env.fake.clear_behavior(&d);
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert_eq!(digest_of(r.bytes()), d);
    assert_eq!(env.fake.count("GET blob"), 2);
    env.shutdown().await;
}

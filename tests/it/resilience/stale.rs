//! `stale_if_error` and upstream 429s.

use super::{assert_error, assert_manifest, lossy, Env};
use crate::support::{data, get};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Sleeps until `at`.
async fn until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_within_the_window_and_refuses_past_it() {
    let env = Env::start(
        "tag_ttl = \"1s\"\nstale_if_error = \"1s\"\nretries = 0\nbreaker_failures = 100",
    )
    .await;
    let (d1, m1) = env.fake.put_image("org/app", "latest", &[b"layer one"]);
    let url = env.manifest("org/app", "latest");
    assert_manifest(&get(&url).await, &d1, &m1, "first pull");
    // The last successful check is a little before this.
    let checked = Instant::now();
    env.fake.down.store(true, Ordering::SeqCst);

    // Stale, upstream failing, within tag_ttl + stale_if_error = 2 s: served.
    until(checked + Duration::from_millis(1200)).await;
    let heads = env.fake.count("HEAD manifest");
    assert_manifest(
        &get(&url).await,
        &d1,
        &m1,
        "1.2 s after the check, upstream 503",
    );
    assert_eq!(
        env.fake.count("HEAD manifest"),
        heads + 1,
        "the revalidation was tried"
    );

    // Past the window (a failed check does not count as a successful one): refused.
    until(checked + Duration::from_millis(2400)).await;
    let r = get(&url).await;
    assert_error(
        &r,
        502,
        "UNAVAILABLE",
        "2.4 s after the check, upstream 503",
    );

    // A 429 past the window is passed through, with its Retry-After.
    env.fake.down.store(false, Ordering::SeqCst);
    env.fake.fail_always(429, Some("42"));
    let r = get(&url).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "past the window, upstream 429");
    assert_eq!(
        r.header("retry-after"),
        Some("42"),
        "Retry-After passed through"
    );

    // The upstream heals: a successful check, served again.
    env.fake.clear_faults();
    assert_manifest(&get(&url).await, &d1, &m1, "upstream healthy again");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_serves_the_cached_copy_or_is_passed_through_with_retry_after() {
    // Default retries: a 429 must not be retried.
    let env = Env::start("tag_ttl = \"1s\"\nbreaker_failures = 100").await;
    let layer = data(10_000, 42);
    let (d1, m1) = env.fake.put_image("org/app", "latest", &[&layer]);
    let (_, _) = env.fake.put_image("org/app", "other", &[b"other layer"]);
    let uncached_blob = env.fake.put_blob(&data(5_000, 43));
    let layer_d = crate::support::digest_of(&layer);
    let url = env.manifest("org/app", "latest");
    assert_manifest(&get(&url).await, &d1, &m1, "first pull");
    let r = get(&env.blob("org/app", &layer_d)).await;
    assert_eq!(r.status, 200, "layer: {}", lossy(&r));
    tokio::time::sleep(Duration::from_millis(1100)).await;

    env.fake.fail_always(429, Some("7"));
    let before = env.fake.total();
    // Cached (stale) tag: served, after one HEAD that got the 429.
    assert_manifest(&get(&url).await, &d1, &m1, "cached tag, upstream 429");
    assert_eq!(
        env.fake.total(),
        before + 1,
        "one revalidation attempt, no retry of a 429"
    );
    // Cached blob: no upstream request.
    let r = get(&env.blob("org/app", &layer_d)).await;
    assert_eq!(r.status, 200, "cached layer: {}", lossy(&r));
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    assert_eq!(env.fake.total(), before + 1);

    // Uncached tag and blob: 429 with the upstream's Retry-After, one attempt each.
    let r = get(&env.manifest("org/app", "other")).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "uncached tag, upstream 429");
    assert_eq!(
        r.header("retry-after"),
        Some("7"),
        "uncached tag Retry-After"
    );
    assert_eq!(env.fake.total(), before + 2, "a 429 is not retried");
    let r = get(&env.blob("org/app", &uncached_blob)).await;
    assert_error(&r, 429, "TOOMANYREQUESTS", "uncached blob, upstream 429");
    assert_eq!(
        r.header("retry-after"),
        Some("7"),
        "uncached blob Retry-After"
    );
    assert_eq!(env.fake.total(), before + 3, "a 429 is not retried");

    // And a 429 is not remembered as a miss: once it stops, the tag is fetched.
    env.fake.clear_faults();
    let r = get(&env.manifest("org/app", "other")).await;
    assert_eq!(r.status, 200, "after the 429s: {}", lossy(&r));
    env.shutdown().await;
}

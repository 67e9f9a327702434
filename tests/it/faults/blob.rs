//! Broken blob bodies: resets, wrong bytes, lying `Content-Length`, slow drips. Three clients
//! share each fill; none of them gets a complete body of unverified bytes.

use super::{lossy, Env, IDLE};
use crate::support::{data, digest_of, get, BlobBehavior};
use std::time::Duration;

/// Serves a 512 KiB blob the way `behavior(&blob)` says to three concurrent clients and
/// checks the contract: every client's body fails (after a 200: the headers went out before
/// the fault), one upstream GET, nothing cached, the fill counted as `fill_result`; then the
/// upstream heals and the next request fetches and serves the right bytes.
async fn broken_blob(
    seed: u64,
    behavior: impl Fn(&[u8]) -> BlobBehavior,
    fill_result: &str,
    what: &str,
) {
    let env = Env::start("").await;
    let blob = data(512 * 1024, seed);
    let d = env.fake.put_blob(&blob);
    env.fake.set_behavior(&d, behavior(&blob));
    let url = env.blob("org/app", &d);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let r = c.await.expect("join");
        assert_eq!(r.status, 200, "{what}: client {i}: {}", lossy(&r));
        assert!(
            r.body.is_err(),
            "{what}: client {i} got a complete body of {:?} bytes (digest {})",
            r.body.as_ref().map(|b| b.len()),
            r.body.as_ref().map(|b| digest_of(b)).unwrap_or_default()
        );
    }
    assert_eq!(
        env.fake.count("GET blob"),
        1,
        "{what}: one upstream GET for the three clients, not retried once streaming"
    );
    env.assert_blob_not_cached(&d, what).await;
    assert_eq!(env.fills(fill_result).await, 1.0, "{what}: fills_total");
    assert_eq!(
        env.fills("committed").await,
        0.0,
        "{what}: nothing committed"
    );
    assert_eq!(env.requests("blob", "miss").await, 1.0, "{what}: miss");
    assert_eq!(
        env.requests("blob", "coalesced").await,
        2.0,
        "{what}: coalesced"
    );

    env.fake.clear_behavior(&d);
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{what}: after healing: {}", lossy(&r));
    assert!(
        r.bytes().as_ref() == blob.as_slice(),
        "{what}: wrong bytes after healing"
    );
    assert_eq!(env.fake.count("GET blob"), 2, "{what}: asked again");
    assert_eq!(
        env.fills("committed").await,
        1.0,
        "{what}: committed after healing"
    );
    env.shutdown().await;
}

/// 32 KiB chunks 40 ms apart: the fill lasts long enough for all three clients to join it.
fn slow() -> BlobBehavior {
    BlobBehavior {
        chunk: 32 * 1024,
        delay: Duration::from_millis(40),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_mid_blob_resets_every_client_of_the_fill() {
    let behavior = |_: &[u8]| BlobBehavior {
        fail_after: Some(300 * 1024),
        ..slow()
    };
    broken_blob(101, behavior, "upstream_error", "reset mid-blob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_bytes_of_the_right_length_reach_no_client_complete() {
    let behavior = |blob: &[u8]| {
        let mut bad = blob.to_vec();
        bad[blob.len() - 1] ^= 1; // even the very last byte
        BlobBehavior {
            corrupt: Some(bad),
            ..slow()
        }
    };
    broken_blob(102, behavior, "digest_mismatch", "wrong bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_content_length_is_a_digest_mismatch() {
    // Declares fewer bytes than the blob has: the body is a well-framed prefix.
    let behavior = |blob: &[u8]| BlobBehavior {
        content_length: Some(blob.len() as u64 - 1000),
        ..slow()
    };
    broken_blob(103, behavior, "digest_mismatch", "Content-Length short").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_content_length_is_a_broken_body() {
    // Declares more bytes than it sends, then closes the connection.
    let behavior = |blob: &[u8]| BlobBehavior {
        content_length: Some(blob.len() as u64 + 1000),
        ..slow()
    };
    broken_blob(104, behavior, "upstream_error", "Content-Length long").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drip_above_the_idle_timeout_is_abandoned() {
    // The first chunk arrives at once, the next one after 1.5 idle timeouts.
    let behavior = |_: &[u8]| BlobBehavior {
        chunk: 256 * 1024,
        delay: IDLE + IDLE / 2,
        ..Default::default()
    };
    broken_blob(
        105,
        behavior,
        "upstream_error",
        "drip above the idle timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drip_below_the_idle_timeout_is_served() {
    let env = Env::start("").await;
    let blob = data(256 * 1024, 106);
    let d = env.fake.put_blob(&blob);
    // Four chunks, each after 40% of the idle timeout: 1.6 idle timeouts in all.
    env.fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: IDLE * 2 / 5,
            ..Default::default()
        },
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice(), "wrong bytes");
    assert_eq!(env.fills("committed").await, 1.0);
    assert_eq!(env.fills("upstream_error").await, 0.0);
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    assert!(env.w.registry.store().files().exists(&digest), "cached");
    // Cached: the next request does not go upstream.
    assert!(get(&env.blob("org/app", &d)).await.bytes().as_ref() == blob.as_slice());
    assert_eq!(env.fake.count("GET blob"), 1);
    env.shutdown().await;
}

//! `fill.max_concurrent`: at most that many blob downloads at once; clients joining a
//! running fill take no slot; a fill that gets none in time answers `429` with `Retry-After`.

use super::Env;
use crate::support::{data, get, BlobBehavior, Fake};
use std::time::Duration;

/// A slow blob (about `chunks` × 250 ms) present under every repository.
fn slow_blob(fake: &Fake, seed: u64, chunks: usize) -> (String, Vec<u8>) {
    let bytes = data(1000 * chunks, seed);
    let d = fake.put_blob(&bytes);
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 1000,
            delay: Duration::from_millis(250),
            ..Default::default()
        },
    );
    (d, bytes)
}

fn spawn_get(url: String) -> tokio::task::JoinHandle<crate::support::Resp> {
    tokio::spawn(async move { get(&url).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrent_fills_download_at_once() {
    let env = Env::start(Fake::start().await, "", "max_concurrent = 2", "").await;
    let blobs: Vec<_> = (0..4).map(|i| slow_blob(&env.fake, i, 4)).collect();
    let tasks: Vec<_> = blobs
        .iter()
        .map(|(d, _)| spawn_get(env.url(&format!("org/app/blobs/{d}"))))
        .collect();
    // Each download takes about a second: half-way through, two have started, not four.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        env.fake.count("GET blob"),
        2,
        "4 clients, 4 digests, max_concurrent = 2"
    );
    for (t, (d, bytes)) in tasks.into_iter().zip(&blobs) {
        let r = t.await.expect("client");
        assert_eq!(r.status, 200, "{d}");
        assert!(r.bytes().as_ref() == bytes.as_slice(), "bytes of {d}");
    }
    assert_eq!(
        env.fake.count("GET blob"),
        4,
        "the other two waited for a slot"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_without_a_slot_gets_429_and_joiners_take_none() {
    let fill = "max_concurrent = 1\nidle_timeout = \"1s\"";
    let env = Env::start(Fake::start().await, "", fill, "").await;
    let (a, a_bytes) = slow_blob(&env.fake, 1, 8);
    let b = env.fake.put_blob(&data(3000, 2));
    let url_a = env.url(&format!("org/app/blobs/{a}"));
    let first = spawn_get(url_a.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second client of the same digest joins the running fill: no slot, no upstream GET.
    let joined = spawn_get(url_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another digest waits for the one slot for idle_timeout, then gives up.
    let r = get(&env.url(&format!("org/app/blobs/{b}"))).await;
    assert_eq!(r.status, 429, "no slot within idle_timeout");
    assert_eq!(r.error_code(), "TOOMANYREQUESTS");
    assert!(r.header("retry-after").is_some(), "with a Retry-After");
    for t in [first, joined] {
        let r = t.await.expect("client");
        assert_eq!(r.status, 200);
        assert!(r.bytes().as_ref() == a_bytes.as_slice());
    }
    assert_eq!(
        env.fake.count("GET blob"),
        1,
        "only the slow blob was fetched"
    );
    // With the slot free again, the refused digest is fetched.
    let r = get(&env.url(&format!("org/app/blobs/{b}"))).await;
    assert_eq!(r.status, 200);
    env.shutdown().await;
}

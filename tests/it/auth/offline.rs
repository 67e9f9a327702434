//! An unreachable upstream (the fake's `down`: 503 for everything, the token service too):
//! cached content goes only to clients the upstream authorized within `offline_grace`, or
//! for repositories that were public when last checked.

use super::{assert_refused_auth, assert_served, Img, Who, World};
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn pull(world: &World, who: Who, img: &Img, what: &str) {
    for (part, content) in img.parts() {
        let r = who.get(&world.url(img.repo, &part)).await;
        assert_served(
            &r,
            &content,
            &format!("{what}: {who:?} {}/{part}", img.repo),
        );
    }
}

async fn refused(world: &World, who: Who, img: &Img, what: &str) {
    for (part, content) in img.parts() {
        let r = who.get(&world.url(img.repo, &part)).await;
        assert_refused_auth(
            &r,
            &content,
            &format!("{what}: {who:?} {}/{part}", img.repo),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_serves_the_cache_only_to_clients_authorized_before() {
    // Decisions expire at once, so every hit below must fall back to the offline rule.
    let world = World::start("[auth]\nauthz_ttl = \"1s\"", "").await;
    pull(&world, Who::Anonymous, &world.public, "up").await;
    pull(&world, Who::Alice, &world.private, "up").await;
    refused(&world, Who::Bob, &world.private, "up").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    world.fake.down.store(true, Ordering::SeqCst);

    pull(&world, Who::Anonymous, &world.public, "down").await;
    pull(&world, Who::AliceBasic, &world.private, "down").await;
    // A fresh `docker pull` as alice: a new Wharf token first.
    pull(&world, Who::Alice, &world.private, "down, new session").await;
    // Alice may pull the public image too: it was public when last checked.
    pull(&world, Who::AliceBasic, &world.public, "down").await;

    refused(&world, Who::Anonymous, &world.private, "down").await;
    refused(&world, Who::WrongBasic, &world.private, "down").await;
    refused(&world, Who::Bob, &world.private, "down").await;
    // Through the token dance a wrong password may fail at /token (the upstream cannot
    // check it); whatever the status, never the content.
    for (part, content) in world.private.parts() {
        let r = Who::WrongPassword
            .get(&world.url("private/app", &part))
            .await;
        assert_ne!(r.status, 200, "down: wrong password {part}");
        super::assert_no_content(&r, &content, "down: wrong password");
    }
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_grace_ends_private_access_but_not_public() {
    // No breaker and no retries: the test wants the very next request after the outage to
    // reach the upstream, and no backoff eating into the 2 s grace.
    let world = World::start(
        "[auth]\nauthz_ttl = \"1s\"\noffline_grace = \"2s\"",
        "breaker_failures = 0\nretries = 0",
    )
    .await;
    pull(&world, Who::Anonymous, &world.public, "up").await;
    pull(&world, Who::AliceBasic, &world.private, "up").await;
    world.fake.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    pull(
        &world,
        Who::AliceBasic,
        &world.private,
        "down, within grace",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    refused(&world, Who::AliceBasic, &world.private, "down, grace over").await;
    pull(&world, Who::Anonymous, &world.public, "down, grace over").await;
    pull(&world, Who::AliceBasic, &world.public, "down, grace over").await;
    // Back up: alice is checked again and served.
    world.fake.down.store(false, Ordering::SeqCst);
    pull(&world, Who::AliceBasic, &world.private, "up again").await;
    world.shutdown().await;
}

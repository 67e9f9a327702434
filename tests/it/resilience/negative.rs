//! `negative_ttl`: upstream 404s for manifests are remembered.

use super::{assert_error, assert_manifest, sleep_ms, Env};
use crate::support::{digest_of, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_manifest_is_remembered_for_negative_ttl() {
    let env = Env::start("negative_ttl = \"2s\"\nretries = 0").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    let missing_tag = env.manifest("org/app", "nope");
    for i in 0..5 {
        let r = get(&missing_tag).await;
        assert_error(&r, 404, "MANIFEST_UNKNOWN", &format!("missing tag {i}"));
    }
    assert_eq!(
        env.fake.total(),
        1,
        "5 requests for a missing tag: one upstream request ({:?})",
        env.manifest_counts()
    );
    // It appears upstream, but the miss is remembered until negative_ttl ends.
    let (d, m) = env.fake.put_image("org/app", "nope", &[b"late layer"]);
    let r = get(&missing_tag).await;
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "remembered miss");
    assert_eq!(
        env.fake.total(),
        1,
        "a remembered miss asks nothing upstream"
    );

    // By digest too.
    let missing_digest = env.manifest("org/app", &digest_of(b"no such manifest"));
    for i in 0..3 {
        let r = get(&missing_digest).await;
        assert_error(&r, 404, "MANIFEST_UNKNOWN", &format!("missing digest {i}"));
    }
    assert_eq!(env.fake.total(), 2, "one upstream request for the digest");

    // After negative_ttl: asked again.
    sleep_ms(2100).await;
    assert_manifest(&get(&missing_tag).await, &d, &m, "after negative_ttl");
    let r = get(&missing_digest).await;
    assert_error(
        &r,
        404,
        "MANIFEST_UNKNOWN",
        "missing digest after negative_ttl",
    );
    assert_eq!(
        env.fake.total(),
        4,
        "one more request each after negative_ttl"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_ttl_zero_remembers_nothing() {
    let env = Env::start("negative_ttl = \"0s\"\nretries = 0").await;
    env.fake.put_image("org/app", "v1", &[b"layer"]);
    for i in 0..3 {
        let r = get(&env.manifest("org/app", "nope")).await;
        assert_error(&r, 404, "MANIFEST_UNKNOWN", &format!("missing tag {i}"));
    }
    assert_eq!(env.fake.total(), 3, "every miss goes upstream");
    let (d, m) = env.fake.put_image("org/app", "nope", &[b"late layer"]);
    let r = get(&env.manifest("org/app", "nope")).await;
    assert_manifest(&r, &d, &m, "visible at once");
    env.shutdown().await;
}

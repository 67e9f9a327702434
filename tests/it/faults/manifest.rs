//! Manifests the upstream gets wrong: too large, the wrong digest, missing children, a body
//! that drips, a `Content-Length` that lies, a `mediaType` that is no media type.

use super::{assert_error, lossy, Env, IDLE};
use crate::support::{data, digest_of, get, BlobBehavior, Resp};
use std::time::Duration;
use wharf::oci::manifest::MAX_MANIFEST_SIZE;
use wharf::oci::media::{OCI_INDEX, OCI_MANIFEST};

/// An OCI image manifest of exactly `size` bytes (padded with an annotation).
fn manifest_of_size(size: usize) -> Vec<u8> {
    let config = digest_of(b"{}");
    let head = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"pad":""#
    );
    let tail = r#""}}"#;
    let pad = size - head.len() - tail.len();
    let mut m = head.into_bytes();
    m.extend(std::iter::repeat_n(b'x', pad));
    m.extend_from_slice(tail.as_bytes());
    assert_eq!(m.len(), size);
    m
}

/// `r` is a 200 of exactly `bytes`, with their digest.
fn assert_manifest(r: &Resp, bytes: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", lossy(r));
    assert!(r.bytes().as_ref() == bytes, "{what}: wrong bytes");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_of(bytes).as_str()),
        "{what}: digest header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_4_mib_is_refused_and_one_of_4_mib_is_served() {
    let env = Env::start("retries = 0").await;
    let big = manifest_of_size(MAX_MANIFEST_SIZE + 1);
    let big_d = env
        .fake
        .put_manifest("org/app", Some("big"), OCI_MANIFEST, &big);
    let r = get(&env.manifest("org/app", "big")).await;
    assert_error(&r, 502, "MANIFEST_INVALID", "4 MiB + 1 by tag");
    let r = get(&env.manifest("org/app", &big_d)).await;
    assert_error(&r, 502, "MANIFEST_INVALID", "4 MiB + 1 by digest");
    // Without a Content-Length (chunked) it is cut off at the limit too.
    env.fake.set_behavior(
        &big_d,
        BlobBehavior {
            chunked: true,
            chunk: 256 * 1024,
            ..Default::default()
        },
    );
    let r = get(&env.manifest("org/app", "big")).await;
    assert_error(&r, 502, "MANIFEST_INVALID", "4 MiB + 1 chunked");
    assert_eq!(env.fake.count("GET manifest"), 3);
    env.assert_manifest_not_cached(&big_d, "org/app", "big", "4 MiB + 1");
    assert_eq!(env.requests("manifest", "error").await, 3.0);

    // Exactly at the limit: served, byte for byte.
    let max = manifest_of_size(MAX_MANIFEST_SIZE);
    env.fake
        .put_manifest("org/app", Some("max"), OCI_MANIFEST, &max);
    assert_manifest(&get(&env.manifest("org/app", "max")).await, &max, "4 MiB");

    // The upstream heals (the tag now points at a sane manifest): asked again, served.
    let (_, small) = env.fake.put_image("org/app", "big", &[b"layer"]);
    assert_manifest(
        &get(&env.manifest("org/app", "big")).await,
        &small,
        "healed",
    );
    assert_eq!(env.fake.count("GET manifest"), 5);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_the_wrong_digest_is_refused() {
    let env = Env::start("").await;
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    let (_, other) = env.fake.put_image("org/other", "v1", &[b"other layer"]);
    env.fake.replace_manifest_bytes(&d, &other);
    for i in 0..2 {
        let r = get(&env.manifest("org/app", &d)).await;
        assert_error(&r, 502, "DIGEST_INVALID", &format!("wrong digest {i}"));
    }
    assert_eq!(env.fake.count("GET manifest"), 2, "not remembered");
    env.assert_manifest_not_cached(&d, "org/app", "v1", "wrong digest");
    let other_d = wharf::oci::Digest::parse(&digest_of(&other)).expect("digest");
    assert!(
        env.w
            .registry
            .store()
            .get_manifest(&other_d)
            .expect("get")
            .is_none(),
        "the bytes were not stored under their own digest either"
    );
    assert_eq!(env.requests("manifest", "error").await, 2.0);

    env.fake.replace_manifest_bytes(&d, &m);
    assert_manifest(&get(&env.manifest("org/app", &d)).await, &m, "healed");
    assert_eq!(env.fake.count("GET manifest"), 3);
    assert_eq!(env.requests("manifest", "miss").await, 1.0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_with_missing_children_is_served_and_its_children_are_404() {
    let env = Env::start("negative_ttl = \"1s\"").await;
    let layer = data(5_000, 110);
    let (c1, m1) = env.fake.put_image("org/app", "amd64", &[&layer]);
    // The arm64 child exists nowhere yet.
    let (c2, m2) = {
        let staging = crate::support::Fake::start().await;
        staging.put_image("org/app", "arm64", &[b"arm layer"])
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{c1}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{c2}","size":{},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
        m1.len(),
        m2.len()
    );
    env.fake
        .put_manifest("org/app", Some("multi"), OCI_INDEX, index.as_bytes());
    let r = get(&env.manifest("org/app", "multi")).await;
    assert_manifest(&r, index.as_bytes(), "the index");
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_manifest(
        &get(&env.manifest("org/app", &c1)).await,
        &m1,
        "present child",
    );
    let r = get(&env.blob("org/app", &digest_of(&layer))).await;
    assert!(
        r.bytes().as_ref() == layer.as_slice(),
        "present child's layer"
    );

    let r = get(&env.manifest("org/app", &c2)).await;
    assert_error(&r, 404, "MANIFEST_UNKNOWN", "missing child");
    let c2d = wharf::oci::Digest::parse(&c2).expect("digest");
    assert!(
        env.w
            .registry
            .store()
            .get_manifest(&c2d)
            .expect("get")
            .is_none(),
        "nothing stored for the missing child"
    );
    assert_eq!(env.requests("manifest", "error").await, 1.0);
    let gets = env.fake.count("GET manifest");

    // The child is pushed upstream; once the remembered 404 expires it is served.
    env.fake.put_manifest("org/app", None, OCI_MANIFEST, &m2);
    env.fake.put_blob_in("org/app", b"arm layer");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_manifest(
        &get(&env.manifest("org/app", &c2)).await,
        &m2,
        "child pushed",
    );
    assert_eq!(env.fake.count("GET manifest"), gets + 1, "asked again");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_dripping_past_the_idle_timeout_is_abandoned() {
    let env = Env::start("retries = 0").await;
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    // Below the idle timeout: a few bytes every 40% of it.
    let chunk = m.len() / 3 + 1;
    env.fake.set_behavior(
        &d,
        BlobBehavior {
            chunk,
            delay: IDLE * 2 / 5,
            ..Default::default()
        },
    );
    assert_manifest(&get(&env.manifest("org/app", &d)).await, &m, "slow drip");

    // Above it: the request ends (it used to wait for ever), nothing is kept.
    let (d2, m2) = env.fake.put_image("org/app", "v2", &[b"layer 2"]);
    env.fake.set_behavior(
        &d2,
        BlobBehavior {
            chunk: m2.len() / 2,
            delay: IDLE * 3,
            ..Default::default()
        },
    );
    let r = get(&env.manifest("org/app", "v2")).await;
    assert_error(&r, 502, "UNAVAILABLE", "stalled manifest body");
    env.assert_manifest_not_cached(&d2, "org/app", "v2", "stalled manifest body");
    assert_eq!(env.requests("manifest", "error").await, 1.0);
    let gets = env.fake.count("GET manifest");

    env.fake.clear_behavior(&d2);
    assert_manifest(&get(&env.manifest("org/app", "v2")).await, &m2, "healed");
    assert_eq!(env.fake.count("GET manifest"), gets + 1);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_content_length_on_a_manifest_is_refused() {
    let env = Env::start("retries = 0").await;
    let (d, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);
    let cases: [(u64, &str, &str); 3] = [
        // Longer than sent: the connection closes short.
        (m.len() as u64 + 10, "v1", "UNAVAILABLE"),
        // Shorter: a cut-off document, by tag not JSON, by digest not the digest.
        (m.len() as u64 - 10, "v1", "MANIFEST_INVALID"),
        (m.len() as u64 - 10, d.as_str(), "DIGEST_INVALID"),
    ];
    for (declared, reference, code) in cases {
        env.fake.set_behavior(
            &d,
            BlobBehavior {
                content_length: Some(declared),
                ..Default::default()
            },
        );
        let what = format!("Content-Length {declared} of {} for {reference}", m.len());
        let r = get(&env.manifest("org/app", reference)).await;
        assert_error(&r, 502, code, &what);
        env.assert_manifest_not_cached(&d, "org/app", "v1", &what);
    }
    assert_eq!(env.fake.count("GET manifest"), 3);
    assert_eq!(env.requests("manifest", "error").await, 3.0);
    env.fake.clear_behavior(&d);
    assert_manifest(&get(&env.manifest("org/app", "v1")).await, &m, "healed");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_a_hostile_media_type_is_refused() {
    let env = Env::start("retries = 0").await;
    let long = format!("application/{}", "x".repeat(70_000));
    for (i, media_type) in [
        "application/vnd.oci.image.manifest.v1+json\\r\\nx-injected: 1",
        "text/plain; charset=utf-8",
        long.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let tag = format!("t{i}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
            digest_of(b"{}")
        );
        let d = env
            .fake
            .put_manifest("org/app", Some(&tag), OCI_MANIFEST, m.as_bytes());
        let what = format!("mediaType {:?}", &media_type[..media_type.len().min(60)]);
        let r = get(&env.manifest("org/app", &tag)).await;
        assert_error(&r, 502, "MANIFEST_INVALID", &what);
        let r = get(&env.manifest("org/app", &d)).await;
        assert_error(&r, 502, "MANIFEST_INVALID", &format!("{what} by digest"));
        env.assert_manifest_not_cached(&d, "org/app", &tag, &what);
    }
    assert_eq!(env.requests("manifest", "error").await, 6.0);
    // A sane manifest under the same tag is served.
    let (_, m) = env.fake.put_image("org/app", "t0", &[b"layer"]);
    assert_manifest(&get(&env.manifest("org/app", "t0")).await, &m, "healed");
    env.shutdown().await;
}

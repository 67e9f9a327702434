//! `tag_ttl`, `immutable_tags` and `stale_while_revalidate`. (The basic HEAD-then-GET
//! revalidation is also in `pull.rs`; here every upstream request is counted, not only the
//! manifest ones.)

use super::{assert_manifest, sleep_ms, Env};
use crate::support::{eventually, get, request};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_tag_costs_no_upstream_request_and_a_stale_one_exactly_one_head() {
    let env = Env::start("tag_ttl = \"1s\"\nretries = 0").await;
    let (d1, m1) = env.fake.put_image("org/app", "latest", &[b"layer one"]);
    let url = env.manifest("org/app", "latest");
    assert_manifest(&get(&url).await, &d1, &m1, "first pull");
    assert_eq!(env.manifest_counts(), (1, 0), "(GET, HEAD) after the fill");
    let filled = env.fake.total();

    // Fresh: GETs and HEADs by tag and by digest are answered from the cache.
    for i in 0..3 {
        assert_manifest(&get(&url).await, &d1, &m1, &format!("fresh GET {i}"));
        let r = request("HEAD", &url, &[]).await;
        assert_eq!(r.status, 200, "fresh HEAD {i}");
        assert_eq!(r.header("docker-content-digest"), Some(d1.as_str()));
        let by_digest = get(&env.manifest("org/app", &d1)).await;
        assert_manifest(&by_digest, &d1, &m1, "fresh by digest");
    }
    assert_eq!(
        env.fake.total(),
        filled,
        "within tag_ttl no upstream request at all (saw {:?})",
        env.manifest_counts()
    );

    // Stale and unchanged upstream: one HEAD, no GET; then fresh again.
    sleep_ms(1100).await;
    assert_manifest(&get(&url).await, &d1, &m1, "stale, unchanged");
    assert_manifest(&get(&url).await, &d1, &m1, "fresh again");
    assert_eq!(
        env.manifest_counts(),
        (1, 1),
        "(GET, HEAD) after a revalidation"
    );
    assert_eq!(env.fake.total(), filled + 1, "only the HEAD went upstream");

    // Moved upstream: one HEAD and one GET, then the old digest is still there by digest.
    let (d2, m2) = env.fake.put_image("org/app", "latest", &[b"layer two"]);
    sleep_ms(1100).await;
    assert_manifest(&get(&url).await, &d2, &m2, "stale, moved");
    assert_eq!(env.manifest_counts(), (2, 2), "(GET, HEAD) after a move");
    assert_eq!(env.fake.total(), filled + 3);
    let old = get(&env.manifest("org/app", &d1)).await;
    assert_manifest(&old, &d1, &m1, "the old manifest by digest");
    assert_manifest(&get(&url).await, &d2, &m2, "moved, fresh");
    assert_eq!(
        env.fake.total(),
        filled + 3,
        "by digest and fresh: no request"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_are_never_revalidated() {
    let env = Env::start(
        r#"tag_ttl = "1s"
retries = 0
immutable_tags = ["^v?\\d+\\.\\d+\\.\\d+$"]"#,
    )
    .await;
    let immutable = ["v1.2.3", "2.0.0"];
    let mutable = ["latest", "v1.2", "v1.2.3-rc1"];
    let mut first = Vec::new();
    for tag in immutable.iter().chain(&mutable) {
        let (d, m) = env.fake.put_image("org/app", tag, &[b"original"]);
        assert_manifest(&get(&env.manifest("org/app", tag)).await, &d, &m, tag);
        first.push((d, m));
    }
    // Every tag moves upstream, and all are past tag_ttl.
    let moved: Vec<_> = immutable
        .iter()
        .chain(&mutable)
        .map(|tag| env.fake.put_image("org/app", tag, &[b"moved"]))
        .collect();
    sleep_ms(1100).await;
    let before = env.fake.total();
    for (i, tag) in immutable.iter().enumerate() {
        let (d, m) = &first[i];
        let r = get(&env.manifest("org/app", tag)).await;
        assert_manifest(&r, d, m, &format!("immutable {tag} past tag_ttl"));
    }
    assert_eq!(
        env.fake.total(),
        before,
        "an immutable tag is not revalidated: (GET, HEAD) manifest = {:?}",
        env.manifest_counts()
    );
    // Never: not after a second tag_ttl either.
    sleep_ms(1100).await;
    for (i, tag) in immutable.iter().enumerate() {
        let (d, m) = &first[i];
        let r = get(&env.manifest("org/app", tag)).await;
        assert_manifest(&r, d, m, &format!("immutable {tag}, later"));
    }
    assert_eq!(env.fake.total(), before, "still no revalidation");
    // The others are revalidated and move: one HEAD and one GET each.
    for (i, tag) in mutable.iter().enumerate() {
        let (d, m) = &moved[immutable.len() + i];
        let r = get(&env.manifest("org/app", tag)).await;
        assert_manifest(&r, d, m, &format!("mutable {tag} moved"));
    }
    assert_eq!(
        env.fake.total(),
        before + 2 * mutable.len() as u64,
        "one HEAD + one GET per mutable tag"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let env = Env::start("tag_ttl = \"1s\"\nstale_while_revalidate = true\nretries = 0").await;
    let (d1, m1) = env.fake.put_image("org/app", "latest", &[b"layer one"]);
    let url = env.manifest("org/app", "latest");
    assert_manifest(&get(&url).await, &d1, &m1, "first pull");
    let (d2, m2) = env.fake.put_image("org/app", "latest", &[b"layer two"]);
    sleep_ms(1100).await;
    let before = env.fake.total();
    // The revalidation's HEAD takes 1.5 s upstream; the client must not wait for it.
    env.fake
        .delay_next("HEAD manifest", 1, Duration::from_millis(1500));
    let started = Instant::now();
    assert_manifest(&get(&url).await, &d1, &m1, "stale answer");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "the stale manifest must be answered at once, took {took:?}"
    );
    // While the revalidation runs, concurrent requests get the stale copy and start no
    // second revalidation.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for c in clients {
        let r = c.await.expect("join");
        assert_manifest(&r, &d1, &m1, "concurrent stale answer");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "concurrent stale answers were not immediate ({:?})",
        started.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(2), || env.fake.count("HEAD manifest")
            == 1)
        .await,
        "one background HEAD, saw {:?}",
        env.manifest_counts()
    );
    // Later, the new digest.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = get(&url).await;
        if r.header("docker-content-digest") == Some(d2.as_str()) {
            assert_manifest(&r, &d2, &m2, "after the background revalidation");
            break;
        }
        assert_manifest(&r, &d1, &m1, "before the background revalidation ends");
        assert!(
            Instant::now() < deadline,
            "the moved tag never became visible; (GET, HEAD) = {:?}",
            env.manifest_counts()
        );
        sleep_ms(50).await;
    }
    assert_eq!(
        env.manifest_counts(),
        (2, 1),
        "(GET, HEAD) manifest: exactly one background HEAD + GET"
    );
    assert_eq!(env.fake.total(), before + 2);
    env.shutdown().await;
}

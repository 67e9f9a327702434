//! Replicas on a shared bucket (a real Garage cluster) in front of the fake upstream, which
//! counts requests and knows private repositories:
//! - a blob in the bucket is served by another replica only to a client the upstream lets
//!   pull the repository (and never to anonymous or refused clients, redirect or not);
//! - `redirect = true` answers an authorized GET with a pre-signed URL that serves the bytes;
//! - a tag revalidated on one replica is fresh on all; a blob too large for one replica's
//!   cache still reaches the bucket.
//!
//! `peers`: what a replica does when the digest's owner is dead (the next owner takes over,
//! or the replica fetches once itself), slow, breaks off mid-blob, is itself under another
//! name, or serves HTTPS with a private CA. `bucket`: corrupt objects in the bucket.

mod bucket;
mod peers;

use crate::e2e::garage::{garage_present, Garage};
use crate::support::{self, request_as, scrape::scrape_settled, Fake, ALICE, BOB};
use std::time::Duration;
use wharf::app::Running;
use wharf::store::backend::BlobBackend;

/// A replica's whole config: shared storage, and optionally a cluster.
fn replica_toml(data: &std::path::Path, fake: &Fake, g: &Garage, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[[upstream]]
name = "fake"
url = "{}"
default = true
tag_ttl = "1h"
{}
redirect = {}
{}
"#,
        data.display(),
        fake.url(),
        g.storage_toml(),
        extra.contains("redirect"),
        extra.replace("redirect", ""),
    )
}

/// A scratch dir, a 3-node Garage cluster in it, and a fake upstream (`auth`: token auth).
async fn world(auth: bool) -> (tempfile::TempDir, Garage, Fake) {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_path_buf();
    let g = tokio::task::spawn_blocking(move || Garage::start(&d, 3))
        .await
        .expect("garage");
    let fake = if auth {
        Fake::start_with_auth().await
    } else {
        Fake::start().await
    };
    (dir, g, fake)
}

/// Blob `d` of repository `lib/x` on replica `w`.
fn blob_url(w: &Running, d: &str) -> String {
    format!("http://{}/v2/lib/x/blobs/{d}", w.addr)
}

/// GETs `layer` from `w` and asserts the client got exactly its bytes, within 20 s.
async fn pull_blob(w: &Running, layer: &[u8]) {
    let d = support::digest_of(layer);
    let r = tokio::time::timeout(Duration::from_secs(20), support::get(&blob_url(w, &d)))
        .await
        .expect("the pull hung");
    assert_eq!(r.status, 200, "{d}");
    assert!(
        r.bytes().as_ref() == layer,
        "{d}: the client got other bytes"
    );
}

/// `wharf_peer_fills_total{result}` in a scrape.
fn peer_fills(m: &str, result: &str) -> u64 {
    let key = format!("wharf_peer_fills_total{{result=\"{result}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {m}"))
}

fn shared_store(g: &Garage) -> wharf::store::s3::S3Store {
    wharf::store::s3::S3Store::new(&g.s3_config("")).expect("store")
}

/// The size of blob `d` in the bucket, if it is there.
async fn bucket_size(g: &Garage, d: &str) -> Option<u64> {
    let parsed = wharf::oci::Digest::parse(d).expect("digest");
    shared_store(g).stat(&parsed).await.expect("stat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_blob_in_the_bucket_reaches_only_authorized_clients() {
    if !garage_present("a_private_blob_in_the_bucket_reaches_only_authorized_clients") {
        return;
    }
    let (dir, g, fake) = world(true).await;
    let layer = support::data(300_000, 12);
    let (mdigest, _) = fake.put_image("private/app", "v1", &[&layer]);
    let ld = support::digest_of(&layer);

    // Replica a fills for alice: blob, manifest and link go to the bucket.
    let a = support::wharf_toml(&replica_toml(&dir.path().join("a"), &fake, &g, "")).await;
    let url = |w: &Running, what: &str| format!("http://{}/v2/private/app/{what}", w.addr);
    let r = request_as("GET", &url(&a, "manifests/v1"), &[], Some(ALICE)).await;
    assert_eq!(r.status, 200);
    let r = request_as("GET", &url(&a, &format!("blobs/{ld}")), &[], Some(ALICE)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    scrape_settled(&a).await;
    a.shutdown().await;
    let blob_gets = fake.count("GET blob");
    assert_eq!(blob_gets, 1);

    // Replica b never saw it; with redirects on.
    let b = support::wharf_toml(&replica_toml(&dir.path().join("b"), &fake, &g, "redirect")).await;
    let blob = url(&b, &format!("blobs/{ld}"));
    for who in [None, Some(BOB)] {
        let r = request_as("GET", &blob, &[], who).await;
        assert!(
            matches!(r.status.as_u16(), 401 | 403 | 404),
            "{who:?} got {} from the bucket",
            r.status
        );
        assert!(r.header("location").is_none(), "{who:?} got a redirect");
        let r = request_as("GET", &url(&b, &format!("manifests/{mdigest}")), &[], who).await;
        assert!(
            matches!(r.status.as_u16(), 401 | 403 | 404),
            "{who:?}: {}",
            r.status
        );
    }
    // Alice gets a pre-signed URL that serves the verified bytes.
    let r = request_as("GET", &blob, &[], Some(ALICE)).await;
    assert_eq!(r.status, 307, "{:?}", r.body);
    let location = r.header("location").expect("location").to_string();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    assert_eq!(Garage::curl(&location), layer);
    // A HEAD answers the size from the bucket.
    let r = request_as("HEAD", &blob, &[], Some(ALICE)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(layer.len().to_string().as_str())
    );
    // By digest, the manifest comes from the bucket too.
    let r = request_as(
        "GET",
        &url(&b, &format!("manifests/{mdigest}")),
        &[],
        Some(ALICE),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(support::digest_of(r.bytes()), mdigest);
    assert_eq!(
        fake.count("GET blob"),
        blob_gets,
        "b fetched the blob upstream"
    );
    assert_eq!(
        fake.count("GET manifest"),
        1,
        "b fetched the manifest upstream"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_revalidated_on_one_replica_is_fresh_on_all() {
    if !garage_present("a_tag_revalidated_on_one_replica_is_fresh_on_all") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    fake.put_image("lib/app", "v1", &[b"first".as_slice()]);
    let toml = |name: &str| {
        replica_toml(&dir.path().join(name), &fake, &g, "")
            .replace("tag_ttl = \"1h\"", "tag_ttl = \"2s\"")
    };
    let a = support::wharf_toml(&toml("a")).await;
    let b = support::wharf_toml(&toml("b")).await;
    let tag = |w: &Running| format!("http://{}/v2/lib/app/manifests/v1", w.addr);
    let r = support::get(&tag(&b)).await;
    assert_eq!(r.status, 200);
    scrape_settled(&b).await;
    // The tag moves upstream; past tag_ttl, a revalidates it and shares what it found.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (moved, moved_bytes) = fake.put_image("lib/app", "v1", &[b"second".as_slice()]);
    let r = support::get(&tag(&a)).await;
    assert_eq!(r.status, 200);
    assert_eq!(support::digest_of(r.bytes()), moved);
    scrape_settled(&a).await;
    // b's own resolution is due too, but the bucket's is fresh: no upstream request at all.
    let before = fake.total();
    let r = support::get(&tag(&b)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.bytes().as_ref(),
        moved_bytes.as_slice(),
        "b served the old tag"
    );
    assert_eq!(
        fake.total(),
        before,
        "b asked the upstream: {:?}",
        fake.requests()
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_too_large_for_the_local_cache_still_reaches_the_bucket() {
    if !garage_present("a_blob_too_large_for_the_local_cache_still_reaches_the_bucket") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let layer = support::data(200_000, 77);
    let d = fake.put_blob(&layer);
    let small = "[cache]\nmax_size = \"64KiB\"\n";
    let a = support::wharf_toml(&replica_toml(&dir.path().join("a"), &fake, &g, small)).await;
    pull_blob(&a, &layer).await;
    let m = scrape_settled(&a).await;
    assert!(
        m.contains("wharf_fills_total{result=\"uncacheable\"} 1"),
        "{m}"
    );
    a.shutdown().await;
    assert_eq!(
        bucket_size(&g, &d).await,
        Some(layer.len() as u64),
        "not uploaded"
    );
    // Nothing is left in a's tmp/.
    let tmp = dir.path().join("a").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 0);
    // Another replica serves it from the bucket, not the upstream.
    let b = support::wharf_toml(&replica_toml(&dir.path().join("b"), &fake, &g, "")).await;
    pull_blob(&b, &layer).await;
    assert_eq!(fake.count("GET blob"), 1);
    b.shutdown().await;
}

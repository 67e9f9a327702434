//! Replicas on a shared bucket (a real Garage cluster) in front of the fake upstream, which
//! counts requests and knows private repositories:
//! - a blob in the bucket is served by another replica only to a client the upstream lets
//!   pull the repository (and never to anonymous or refused clients, redirect or not);
//! - `redirect = true` answers an authorized GET with a pre-signed URL that serves the bytes;
//! - a dead owner replica costs nothing but a fallback: the fill fetches upstream itself,
//!   once, and the client gets verified bytes; an owner that breaks off mid-blob costs only
//!   the rest of the blob, asked of the upstream with `Range`;
//! - a corrupt manifest in the bucket is ignored, not served.

use crate::e2e::garage::{garage_present, Garage};
use crate::support::{self, request_as, scrape::scrape_settled, Fake, ALICE, BOB};
use std::time::Duration;

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
    let url =
        |w: &wharf::app::Running, what: &str| format!("http://{}/v2/private/app/{what}", w.addr);
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
async fn a_dead_owner_costs_one_fallback_fetch() {
    if !garage_present("a_dead_owner_costs_one_fallback_fetch") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    // This replica advertises an address nobody else uses; take layers the dead peer owns.
    let me = "http://127.0.0.1:9";
    let layers = owned_by(me, &dead, 50_000, 2);
    for l in &layers {
        fake.put_blob(l);
    }
    let cluster = format!(
        "[cluster]\nadvertise = \"{me}\"\npeers = [\"{me}\", \"{dead}\"]\npeer_timeout = \"1s\"\n"
    );
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    for l in &layers {
        let d = support::digest_of(l);
        let r = support::get(&format!("http://{}/v2/lib/x/blobs/{d}", w.addr)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes().as_ref(), l.as_slice());
    }
    assert_eq!(fake.count("GET blob"), 2, "one upstream GET per blob");
    let m = scrape_settled(&w).await;
    // The first fill found the owner dead; the second did not ask it again.
    assert!(
        m.contains("wharf_peer_fills_total{result=\"fallback\"} 1"),
        "{m}"
    );
    w.shutdown().await;
}

/// `n` pieces of data whose digests `peer` owns in a cluster of `me` and `peer`.
fn owned_by(me: &str, peer: &str, len: usize, n: usize) -> Vec<Vec<u8>> {
    let view = wharf::cluster::Cluster::start(&wharf::config::ClusterConfig {
        advertise: me.into(),
        peers: wharf::config::Peers::Static(vec![me.into(), peer.into()]),
        peer_timeout: Duration::from_secs(1),
    })
    .expect("view");
    let found: Vec<Vec<u8>> = (0..64u64)
        .map(|i| support::data(len, 500 + i))
        .filter(|l| {
            let d = wharf::oci::Digest::parse(&support::digest_of(l)).expect("digest");
            view.owner(&d).as_deref() == Some(peer)
        })
        .take(n)
        .collect();
    assert_eq!(found.len(), n, "not enough data owned by {peer}");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_breaking_off_mid_blob_costs_only_the_rest() {
    if !garage_present("an_owner_breaking_off_mid_blob_costs_only_the_rest") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    // The owner "replica" is a fake that serves the blob and breaks the connection part-way.
    let owner = Fake::start().await;
    let me = "http://127.0.0.1:9";
    let len = 2_000_000;
    let layer = owned_by(me, &owner.url(), len, 1).remove(0);
    let d = fake.put_blob(&layer);
    owner.put_blob(&layer);
    owner.set_behavior(
        &d,
        support::BlobBehavior {
            chunk: 64 * 1024,
            fail_after: Some(1_200_000),
            ..Default::default()
        },
    );
    let cluster = format!(
        "[cluster]\nadvertise = \"{me}\"\npeers = [\"{me}\", \"{}\"]\n",
        owner.url()
    );
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    let r = support::get(&format!("http://{}/v2/lib/x/blobs/{d}", w.addr)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.bytes().as_ref(),
        layer.as_slice(),
        "the client got other bytes"
    );
    assert_eq!(owner.count("GET blob"), 1);
    assert_eq!(fake.count("GET blob"), 1, "one upstream GET: the rest");
    let m = scrape_settled(&w).await;
    let upstream: u64 = m
        .lines()
        .find(|l| l.starts_with("wharf_upstream_bytes_total{upstream=\"fake\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("upstream bytes metric");
    assert!(
        upstream > 0 && upstream < len as u64 && upstream >= (len - 1_200_000) as u64,
        "the upstream sent {upstream} of {len} bytes"
    );
    assert!(
        m.contains("wharf_fills_total{result=\"committed\"} 1"),
        "{m}"
    );
    // It was this replica's upstream fill (in part): it shared the blob.
    let store = shared_store(&g);
    use wharf::store::backend::BlobBackend;
    let parsed = wharf::oci::Digest::parse(&d).expect("digest");
    assert_eq!(store.stat(&parsed).await.expect("stat"), Some(len as u64));
    w.shutdown().await;
}

fn shared_store(g: &Garage) -> wharf::store::s3::S3Store {
    wharf::store::s3::S3Store::new(&g.s3_config("")).expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_manifest_in_the_bucket_is_not_served() {
    if !garage_present("a_corrupt_manifest_in_the_bucket_is_not_served") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let (mdigest, manifest) = fake.put_image("lib/app", "v1", &[b"layer".as_slice()]);
    let a = support::wharf_toml(&replica_toml(&dir.path().join("a"), &fake, &g, "")).await;
    let r = support::get(&format!("http://{}/v2/lib/app/manifests/v1", a.addr)).await;
    assert_eq!(r.status, 200);
    scrape_settled(&a).await;
    a.shutdown().await;
    // Someone with bucket access rewrites the manifest object.
    let hex = mdigest.trim_start_matches("sha256:");
    let store = shared_store(&g);
    let mut forged = b"application/vnd.oci.image.manifest.v1+json\n".to_vec();
    forged.extend_from_slice(&manifest);
    forged.push(b' ');
    store
        .put_record(&["manifests", "sha256", hex], forged.into())
        .await
        .expect("forge");
    let before = fake.count("GET manifest");
    let b = support::wharf_toml(&replica_toml(&dir.path().join("b"), &fake, &g, "")).await;
    let r = support::get(&format!("http://{}/v2/lib/app/manifests/{mdigest}", b.addr)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), manifest.as_slice());
    assert_eq!(
        fake.count("GET manifest"),
        before + 1,
        "fetched upstream instead"
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
    let tag = |w: &wharf::app::Running| format!("http://{}/v2/lib/app/manifests/v1", w.addr);
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
    let r = support::get(&format!("http://{}/v2/lib/x/blobs/{d}", a.addr)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    let m = scrape_settled(&a).await;
    assert!(
        m.contains("wharf_fills_total{result=\"uncacheable\"} 1"),
        "{m}"
    );
    a.shutdown().await;
    let parsed = wharf::oci::Digest::parse(&d).expect("digest");
    use wharf::store::backend::BlobBackend;
    assert_eq!(
        shared_store(&g).stat(&parsed).await.expect("stat"),
        Some(layer.len() as u64),
        "not uploaded"
    );
    // Nothing is left in a's tmp/.
    let tmp = dir.path().join("a").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 0);
    // Another replica serves it from the bucket, not the upstream.
    let b = support::wharf_toml(&replica_toml(&dir.path().join("b"), &fake, &g, "")).await;
    let r = support::get(&format!("http://{}/v2/lib/x/blobs/{d}", b.addr)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    assert_eq!(fake.count("GET blob"), 1);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_owner_is_waited_for_not_marked_down() {
    if !garage_present("a_slow_owner_is_waited_for_not_marked_down") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let owner = Fake::start().await;
    let me = "http://127.0.0.1:9";
    let layers = owned_by(me, &owner.url(), 40_000, 2);
    for l in &layers {
        fake.put_blob(l);
        owner.put_blob(l);
    }
    // Slower than peer_timeout (which bounds connecting), faster than fill.idle_timeout.
    owner.delay_next("blob", 1, Duration::from_millis(1500));
    let cluster = format!(
        "[cluster]\nadvertise = \"{me}\"\npeers = [\"{me}\", \"{}\"]\npeer_timeout = \"500ms\"\n",
        owner.url()
    );
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    for l in &layers {
        let d = support::digest_of(l);
        let r = support::get(&format!("http://{}/v2/lib/x/blobs/{d}", w.addr)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes().as_ref(), l.as_slice());
    }
    assert_eq!(
        fake.count("GET blob"),
        0,
        "fetched upstream instead of waiting"
    );
    assert_eq!(
        owner.count("GET blob"),
        2,
        "the slow owner was left out afterwards"
    );
    let m = scrape_settled(&w).await;
    assert!(
        m.contains("wharf_peer_fills_total{result=\"served\"} 2"),
        "{m}"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_listed_under_another_address_stops_asking_itself() {
    if !garage_present("a_replica_listed_under_another_address_stops_asking_itself") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // It advertises 127.0.0.1 but is also listed as localhost: the same replica.
    let me = format!("http://127.0.0.1:{port}");
    let alias = format!("http://localhost:{port}");
    let layers = owned_by(&me, &alias, 30_000, 2);
    for l in &layers {
        fake.put_blob(l);
    }
    let cluster = format!("[cluster]\nadvertise = \"{me}\"\npeers = [\"{me}\", \"{alias}\"]\n");
    let toml = replica_toml(&dir.path().join("w"), &fake, &g, &cluster);
    let cfg = wharf::config::Config::from_toml_str(&toml).expect("config");
    let w = wharf::app::start_on(cfg, listener).await.expect("start");
    for l in &layers {
        let d = support::digest_of(l);
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            support::get(&format!("http://{}/v2/lib/x/blobs/{d}", w.addr)),
        )
        .await
        .expect("no deadlock on its own fill");
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes().as_ref(), l.as_slice());
    }
    assert_eq!(fake.count("GET blob"), 2);
    let m = scrape_settled(&w).await;
    // The first fill learned the alias is itself; the second did not ask it.
    assert!(
        m.contains("wharf_peer_fills_total{result=\"fallback\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("wharf_peer_fills_total{result=\"served\"} 0"),
        "{m}"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_in_the_bucket_is_deleted_and_refetched() {
    if !garage_present("a_corrupt_blob_in_the_bucket_is_deleted_and_refetched") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let layer = support::data(100_000, 5);
    let d = fake.put_blob(&layer);
    let a = support::wharf_toml(&replica_toml(&dir.path().join("a"), &fake, &g, "")).await;
    let url = |w: &wharf::app::Running| format!("http://{}/v2/lib/x/blobs/{d}", w.addr);
    assert_eq!(support::get(&url(&a)).await.status, 200);
    scrape_settled(&a).await;
    a.shutdown().await;
    // The bucket's copy goes bad (same length, other bytes).
    let store = shared_store(&g);
    let hex = d.trim_start_matches("sha256:");
    let mut bad = layer.clone();
    bad[50_000] ^= 1;
    store
        .put_record(&["blobs", "sha256", hex], bad.into())
        .await
        .expect("corrupt");
    let b = support::wharf_toml(&replica_toml(&dir.path().join("b"), &fake, &g, "")).await;
    let r = support::get(&url(&b)).await;
    assert!(
        r.status != 200 || r.body.is_err(),
        "a complete body of corrupt bytes was served"
    );
    // Deleted from the bucket; the next request fetches upstream, and shares it again.
    let r = support::get(&url(&b)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    assert_eq!(fake.count("GET blob"), 2);
    scrape_settled(&b).await;
    let parsed = wharf::oci::Digest::parse(&d).expect("digest");
    use wharf::store::backend::BlobBackend;
    let (_, s) = store
        .open(&parsed)
        .await
        .expect("open")
        .expect("re-uploaded");
    let again = wharf::store::backend::collect(s).await.expect("read");
    assert!(again == layer, "the bucket still holds bad bytes");
    b.shutdown().await;
}

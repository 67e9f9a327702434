//! A replica and the digest's owner: dead, dying before it uploaded what it served,
//! breaking off mid-blob, slow, or itself under another name. Each case ends with the client
//! holding verified bytes and the upstream asked at most once per blob.

use super::{peer_fills, pull_blob, replica_toml, world};
use crate::e2e::garage::garage_present;
use crate::support::{self, scrape::scrape_settled, Fake};
use std::time::Duration;
use wharf::store::backend::BlobBackend;

/// An address that no replica uses, advertised by the replica under test.
const ME: &str = "http://127.0.0.1:9";

/// A `[cluster]` of `me` and `others`, plus `extra` lines.
fn cluster_toml(me: &str, others: &[&str], extra: &str) -> String {
    let peers: Vec<String> = std::iter::once(me)
        .chain(others.iter().copied())
        .map(|p| format!("\"{p}\""))
        .collect();
    format!(
        "[cluster]\nadvertise = \"{me}\"\npeers = [{}]\n{extra}",
        peers.join(", ")
    )
}

/// A peer address that refuses connections: a bound socket that never listens, held (by the
/// returned socket) so that no server started meanwhile can take its port.
fn dead_peer() -> (tokio::net::TcpSocket, String) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let url = format!("http://{}", s.local_addr().expect("addr"));
    (s, url)
}

/// `n` pieces of data whose digests `peer` owns in a cluster of `me` and `peer`.
fn owned_by(me: &str, peer: &str, len: usize, n: usize) -> Vec<Vec<u8>> {
    ranked_first(me, &[peer], &[peer], len, n)
}

/// `n` pieces of data whose digests' owners, in a cluster of `me` and `others`, are ranked
/// starting with `order` (the owner, then who takes over when it is down).
fn ranked_first(me: &str, others: &[&str], order: &[&str], len: usize, n: usize) -> Vec<Vec<u8>> {
    let mut peers = vec![me.to_string()];
    peers.extend(others.iter().map(|p| p.to_string()));
    let view = wharf::cluster::Cluster::start(&wharf::config::ClusterConfig {
        advertise: me.into(),
        peers: wharf::config::Peers::Static(peers),
        peer_timeout: Duration::from_secs(1),
        ca_file: None,
    })
    .expect("view");
    let found: Vec<Vec<u8>> = (0..256u64)
        .map(|i| support::data(len, 500 + i))
        .filter(|l| {
            let d = wharf::oci::Digest::parse(&support::digest_of(l)).expect("digest");
            view.ranked(&d).iter().take(order.len()).eq(order.iter())
        })
        .take(n)
        .collect();
    assert_eq!(found.len(), n, "not enough data ranked {order:?}");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_costs_one_fallback_fetch() {
    if !garage_present("a_dead_owner_costs_one_fallback_fetch") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let (_hold, dead) = dead_peer();
    let layers = owned_by(ME, &dead, 50_000, 2);
    for l in &layers {
        fake.put_blob(l);
    }
    let cluster = cluster_toml(ME, &[&dead], "peer_timeout = \"1s\"\n");
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    for l in &layers {
        pull_blob(&w, l).await;
    }
    assert_eq!(fake.count("GET blob"), 2, "one upstream GET per blob");
    let m = scrape_settled(&w).await;
    // The first fill found the owner dead; the second did not ask it again.
    assert_eq!(peer_fills(&m, "fallback"), 1);
    assert_eq!(peer_fills(&m, "served"), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_hands_the_digest_to_the_next_owner() {
    if !garage_present("a_dead_owner_hands_the_digest_to_the_next_owner") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let (_hold, dead) = dead_peer();
    // The next owner "replica" is a fake that holds the blobs.
    let next = Fake::start().await;
    let layers = ranked_first(ME, &[&dead, &next.url()], &[&dead, &next.url()], 50_000, 2);
    for l in &layers {
        fake.put_blob(l);
        next.put_blob(l);
    }
    let cluster = cluster_toml(ME, &[&dead, &next.url()], "peer_timeout = \"1s\"\n");
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    for l in &layers {
        pull_blob(&w, l).await;
    }
    assert_eq!(
        fake.count("GET blob"),
        0,
        "fetched upstream instead of the next owner"
    );
    assert_eq!(next.count("GET blob"), 2, "the next owner was not asked");
    let m = scrape_settled(&w).await;
    assert_eq!(peer_fills(&m, "served"), 2);
    assert_eq!(peer_fills(&m, "fallback"), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_breaking_off_mid_blob_costs_only_the_rest() {
    if !garage_present("an_owner_breaking_off_mid_blob_costs_only_the_rest") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    // The owner "replica" is a fake that serves the blob and breaks the connection part-way.
    let owner = Fake::start().await;
    let len = 2_000_000;
    let layer = owned_by(ME, &owner.url(), len, 1).remove(0);
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
    let cluster = cluster_toml(ME, &[&owner.url()], "");
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    pull_blob(&w, &layer).await;
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
    assert_eq!(super::bucket_size(&g, &d).await, Some(len as u64));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_owner_died_before_uploading_it_still_reaches_the_bucket() {
    if !garage_present("a_blob_whose_owner_died_before_uploading_it_still_reaches_the_bucket") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    // The owner "replica" is a fake: it serves the blob and never uploads it.
    let owner = Fake::start().await;
    let layer = owned_by(ME, &owner.url(), 300_000, 1).remove(0);
    let d = fake.put_blob(&layer);
    owner.put_blob(&layer);
    let cluster = cluster_toml(ME, &[&owner.url()], "peer_timeout = \"1s\"\n");
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    pull_blob(&w, &layer).await;
    assert_eq!(owner.count("GET blob"), 1);
    // While the owner answers, its own upload is awaited: none from this replica.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        super::bucket_size(&g, &d).await,
        None,
        "uploaded while the owner was alive"
    );
    // The owner dies without having uploaded it: this replica does, with its link.
    owner.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while super::bucket_size(&g, &d).await.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        super::bucket_size(&g, &d).await,
        Some(layer.len() as u64),
        "not in the bucket 30 s after the owner died"
    );
    let store = super::shared_store(&g);
    let (_, stream) = store
        .open(&wharf::oci::Digest::parse(&d).expect("digest"))
        .await
        .expect("open")
        .expect("the object");
    let bytes = wharf::store::backend::collect(stream).await.expect("read");
    assert!(bytes == layer, "the bucket holds other bytes");
    let hex = d.trim_start_matches("sha256:");
    let link = ["links", "fake", "lib/x", "sha256", hex];
    assert!(store.has_record(&link).await.expect("link"), "no link");
    let m = scrape_settled(&w).await;
    assert!(m.contains("wharf_shared_backstop_uploads_total 1\n"), "{m}");
    assert_eq!(fake.count("GET blob"), 0, "the upstream was asked");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_owner_is_waited_for_not_marked_down() {
    if !garage_present("a_slow_owner_is_waited_for_not_marked_down") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let owner = Fake::start().await;
    let layers = owned_by(ME, &owner.url(), 40_000, 2);
    for l in &layers {
        fake.put_blob(l);
        owner.put_blob(l);
    }
    // Slower than peer_timeout (which bounds connecting), faster than fill.idle_timeout.
    owner.delay_next("blob", 1, Duration::from_millis(1500));
    let cluster = cluster_toml(ME, &[&owner.url()], "peer_timeout = \"500ms\"\n");
    let w = support::wharf_toml(&replica_toml(&dir.path().join("w"), &fake, &g, &cluster)).await;
    for l in &layers {
        pull_blob(&w, l).await;
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
    assert_eq!(peer_fills(&m, "served"), 2);
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
    let toml = replica_toml(
        &dir.path().join("w"),
        &fake,
        &g,
        &cluster_toml(&me, &[&alias], ""),
    );
    let cfg = wharf::config::Config::from_toml_str(&toml).expect("config");
    let w = wharf::app::start_on(cfg, listener).await.expect("start");
    // pull_blob's time limit: no deadlock on its own fill.
    for l in &layers {
        pull_blob(&w, l).await;
    }
    assert_eq!(fake.count("GET blob"), 2);
    let m = scrape_settled(&w).await;
    // The first fill learned the alias is itself; the second did not ask it.
    assert_eq!(peer_fills(&m, "fallback"), 1);
    assert_eq!(peer_fills(&m, "served"), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_peers_are_verified_with_cluster_ca_file() {
    if !garage_present("https_peers_are_verified_with_cluster_ca_file") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let cert_dir = dir.path().join("certs");
    std::fs::create_dir_all(&cert_dir).expect("certs dir");
    let certs = crate::e2e::upstream::make_certs(&cert_dir);
    let bind = || async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", l.local_addr().expect("addr"));
        (l, url)
    };
    let ((la, a_url), (lb, b_url)) = (bind().await, bind().await);
    let layer = owned_by(&b_url, &a_url, 60_000, 1).remove(0);
    let d = fake.put_blob(&layer);
    // Both replicas serve HTTPS with a certificate of the private CA, and trust it for peers.
    let start = |name: &str, me: &str, l: tokio::net::TcpListener| {
        let tls = format!(
            "ca_file = {:?}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            certs.ca_pem, certs.server_pem, certs.server_key
        );
        let other = if me == a_url { &b_url } else { &a_url };
        let toml = replica_toml(
            &dir.path().join(name),
            &fake,
            &g,
            &cluster_toml(me, &[other], &tls),
        );
        let cfg = wharf::config::Config::from_toml_str(&toml).expect("config");
        wharf::app::start_on(cfg, l)
    };
    let a = start("a", &a_url, la).await.expect("start a");
    let b = start("b", &b_url, lb).await.expect("start b");
    // A client of b that trusts the CA; b asks a, the owner, over HTTPS.
    let body = https_get(&certs.ca_pem, &format!("{b_url}/v2/lib/x/blobs/{d}")).await;
    assert!(body.as_ref() == layer.as_slice(), "other bytes");
    assert_eq!(fake.count("GET blob"), 1, "one upstream GET, by the owner");
    let m = scrape_settled(&b).await;
    assert_eq!(peer_fills(&m, "served"), 1, "b did not get it from a");
    assert_eq!(peer_fills(&m, "fallback"), 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// An anonymous GET over HTTPS trusting `ca`, with the token dance: the body of a `200`.
async fn https_get(ca: &std::path::Path, url: &str) -> bytes::Bytes {
    use http_body_util::{BodyExt, Empty};
    let client =
        wharf::upstream::client::build(Some(ca), None, Duration::from_secs(5)).expect("client");
    let get = |url: &str, auth: Option<String>| {
        let mut b = http::Request::get(url);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        client.request(b.body(Empty::new()).expect("request"))
    };
    let resp = get(url, None).await.expect("GET over https");
    assert_eq!(resp.status(), 401, "expected a challenge");
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(support::client::parse_bearer)
        .expect("a Bearer challenge");
    let q = |k: &str, v: Option<String>| {
        v.map(|v| format!("{k}={}", support::client::query_escape(&v)))
    };
    let query: Vec<String> = [q("service", challenge.service), q("scope", challenge.scope)]
        .into_iter()
        .flatten()
        .collect();
    let resp = get(&format!("{}?{}", challenge.realm, query.join("&")), None)
        .await
        .expect("token over https");
    assert_eq!(resp.status(), 200, "no anonymous token");
    let json = resp.into_body().collect().await.expect("token").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&json).expect("token json");
    let token = v["token"].as_str().expect("token field").to_string();
    let resp = get(url, Some(format!("Bearer {token}")))
        .await
        .expect("GET with token");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body").to_bytes()
}

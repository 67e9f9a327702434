//! Top-level `offline = true`: no upstream is ever contacted; the cache answers under the
//! offline authorization rule, and anything uncached is 502 `UNAVAILABLE`.

use super::{assert_error, assert_manifest, lossy, sleep_ms};
use crate::support::{self, data, digest_of, get, request, Fake};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_mode_serves_the_cache_and_never_contacts_the_upstream() {
    let fake = Fake::start().await;
    let layer = data(30_000, 21);
    let layer_d = digest_of(&layer);
    let (d1, m1) = fake.put_image("org/app", "v1", &[&layer]);
    let m: serde_json::Value = serde_json::from_slice(&m1).expect("manifest");
    let config_d = m["config"]["digest"].as_str().expect("config").to_string();
    // Upstream, never pulled through Wharf.
    let (d2, _) = fake.put_image("org/app", "v2", &[b"uncached layer"]);
    let uncached_blob = fake.put_blob(&data(4_000, 22));

    // Warm the cache anonymously while online.
    let dir = tempfile::tempdir().expect("tmp");
    let extra = "tag_ttl = \"1s\"";
    let w = support::wharf(dir.path(), "up.test", &fake.url(), extra).await;
    let base = format!("http://{}/v2/org/app", w.addr);
    assert_manifest(
        &get(&format!("{base}/manifests/v1")).await,
        &d1,
        &m1,
        "online",
    );
    for d in [&layer_d, &config_d] {
        let r = get(&format!("{base}/blobs/{d}")).await;
        assert_eq!(r.status, 200, "online blob {d}: {}", lossy(&r));
    }
    w.shutdown().await;
    let (connections, requests) = (fake.connections(), fake.total());
    sleep_ms(1100).await; // past tag_ttl: an online Wharf would revalidate

    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), extra, "offline = true").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let by_tag = format!("{base}/manifests/v1");
    assert_manifest(&get(&by_tag).await, &d1, &m1, "offline, by tag");
    let r = request("HEAD", &by_tag, &[]).await;
    assert_eq!(r.status, 200, "offline HEAD by tag");
    assert_eq!(r.header("docker-content-digest"), Some(d1.as_str()));
    let r = get(&format!("{base}/manifests/{d1}")).await;
    assert_manifest(&r, &d1, &m1, "offline, by digest");
    let r = get(&format!("{base}/blobs/{layer_d}")).await;
    assert_eq!(r.status, 200, "offline layer: {}", lossy(&r));
    assert_eq!(r.bytes().as_ref(), layer.as_slice());
    let r = get(&format!("{base}/blobs/{config_d}")).await;
    assert_eq!(r.status, 200, "offline config: {}", lossy(&r));

    // Uncached: 502, whatever the upstream holds.
    for what in ["manifests/v2".to_string(), format!("manifests/{d2}")] {
        let r = get(&format!("{base}/{what}")).await;
        assert_error(&r, 502, "UNAVAILABLE", &format!("offline, uncached {what}"));
    }
    let r = get(&format!("{base}/blobs/{uncached_blob}")).await;
    assert_error(&r, 502, "UNAVAILABLE", "offline, uncached blob");

    assert_eq!(
        (fake.connections(), fake.total()),
        (connections, requests),
        "(connections, requests) to the upstream while offline"
    );
    w.shutdown().await;
}

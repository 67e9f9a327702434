//! Eviction by last access under the watermarks, pinned images, and a reader whose blob is
//! evicted under it.

use super::{settle_under, Image, TICK};
use crate::support::scrape::{blob_path, sample, scrape_settled};
use crate::support::{self, data, digest_of, get, Fake};
use http_body_util::BodyExt;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_keeps_the_cache_under_the_high_watermark_the_hot_and_the_pinned_images() {
    let fake = Fake::start().await;
    // 4 MiB: high watermark 3.6 MiB, low 3.2 MiB; every image is one 1 MiB layer and a
    // config of ~80 bytes. Pinned + hot + two others fit; a third other starts eviction,
    // which must free exactly the least recently used other.
    let max = 4.0 * MIB as f64;
    let high = 0.9 * max;
    let top = r#"
[cache]
max_size = "4MiB"
high_watermark = 0.9
low_watermark = 0.8
pin = ["up.test/org/base:*"]
"#;
    let base = Image::put(&fake, "org/base", "v1", MIB, 100);
    let hot = Image::put(&fake, "org/hot", "v1", MIB, 101);
    let others: Vec<Image> = (0..4)
        .map(|i| Image::put(&fake, &format!("org/img{i}"), "v1", MIB, 110 + i))
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), "", top).await;

    assert_eq!(base.pull(&fake, w.addr).await, 2, "base: cold");
    // Sequence: img0, hot, img1, hot, img2, hot, img3 -- one TICK apart, so that when imgN
    // (N >= 1) arrives the least recently used unpinned image is img(N-1), never hot.
    for (i, img) in others.iter().enumerate() {
        tokio::time::sleep(TICK).await;
        assert_eq!(img.pull(&fake, w.addr).await, 2, "img{i}: cold");
        let size = settle_under(w.admin_addr, high, Duration::from_secs(5), &img.repo).await;
        eprintln!("after img{i}: wharf_cache_size_bytes = {size}");
        if i + 1 < others.len() {
            tokio::time::sleep(TICK).await;
            let gets = hot.pull(&fake, w.addr).await;
            if i == 0 {
                assert_eq!(gets, 2, "hot: cold");
            } else {
                assert_eq!(gets, 0, "hot (after img{i}): still cached");
            }
            settle_under(w.admin_addr, high, Duration::from_secs(5), "hot").await;
        }
    }
    // The hot image and the pinned one are still cached.
    assert_eq!(hot.pull(&fake, w.addr).await, 0, "hot: survives eviction");
    assert_eq!(
        base.pull(&fake, w.addr).await,
        0,
        "pinned base: never evicted"
    );
    for (d, _) in &base.blobs {
        assert!(blob_path(dir.path(), d).exists(), "pinned blob {d} on disk");
    }
    let t = scrape_settled(&w).await;
    let evictions = sample(&t, "wharf_evictions_total");
    let evicted = sample(&t, "wharf_evicted_bytes_total");
    assert!(evictions > 0.0, "wharf_evictions_total = {evictions}");
    assert!(
        evicted >= 3.0 * MIB as f64,
        "wharf_evicted_bytes_total = {evicted}: three 1 MiB layers at least"
    );
    assert!(
        sample(&t, "wharf_cache_blobs") >= 4.0,
        "base and hot at least"
    );
    // img0 was evicted first: it is fetched again, and served correctly.
    let layer0 = &others[0].blobs[1].0;
    assert!(
        !blob_path(dir.path(), layer0).exists(),
        "img0's layer evicted"
    );
    let gets = others[0].pull(&fake, w.addr).await;
    assert!(gets >= 1, "img0 refetched ({gets} upstream blob GETs)");
    // Manifests count in the cache's size and go with the blobs they name (least recently
    // used first, with their tags): one manifest GET per image, and img0's again.
    assert_eq!(
        fake.count("GET manifest"),
        7,
        "one upstream manifest GET per image, plus the evicted img0's"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_of_a_blob_that_gets_evicted_still_gets_all_of_it() {
    let fake = Fake::start().await;
    // 24 MiB: high 21.6, low 19.2. A (16 MiB) then B (8 MiB) passes the high watermark;
    // A, accessed before B, is the one evicted.
    let top = r#"
[cache]
max_size = "24MiB"
high_watermark = 0.9
low_watermark = 0.8
"#;
    let a = data(16 * MIB, 200);
    let ad = fake.put_blob(&a);
    let b = data(8 * MIB, 201);
    let bd = fake.put_blob(&b);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), "", top).await;
    let url = |d: &str| format!("http://{}/v2/org/app/blobs/{d}", w.addr);
    assert_eq!(digest_of(get(&url(&ad)).await.bytes()), ad, "A cached");
    // The commit may end just after the client's last (verified) byte.
    w.registry.drain_fills(Duration::from_secs(10)).await;
    assert!(blob_path(dir.path(), &ad).exists());
    tokio::time::sleep(TICK).await;

    // Open A (a cache hit), read one frame, and stop reading.
    let token = get(&format!("http://{}/token?service=wharf", w.addr))
        .await
        .json()["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let req = http::Request::get(url(&ad))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("req");
    let resp = support::client().request(req).await.expect("resp");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got: Vec<u8> = Vec::with_capacity(a.len());
    let first = body.frame().await.expect("a frame").expect("ok");
    got.extend_from_slice(first.data_ref().expect("data"));
    assert!(got.len() < a.len(), "A still being read");

    // B: a fill that commits a TICK after the hit on A.
    tokio::time::sleep(TICK).await;
    assert_eq!(digest_of(get(&url(&bd)).await.bytes()), bd, "B served");
    settle_under(
        w.admin_addr,
        0.9 * 24.0 * MIB as f64,
        Duration::from_secs(5),
        "B",
    )
    .await;
    let evicted = support::eventually(Duration::from_secs(5), || {
        !blob_path(dir.path(), &ad).exists()
    })
    .await;
    assert!(evicted, "A (least recently used) evicted while being read");

    // The open reader still gets every byte of A.
    let rest = tokio::time::timeout(Duration::from_secs(15), body.collect())
        .await
        .expect("body in time")
        .expect("the rest of A");
    got.extend_from_slice(&rest.to_bytes());
    assert_eq!(got.len(), a.len(), "all of A");
    assert!(got == a, "A's bytes");
    // Asked again, A is fetched again.
    assert_eq!(digest_of(get(&url(&ad)).await.bytes()), ad);
    assert_eq!(fake.count("GET blob"), 3, "A, B, A again");
    w.shutdown().await;
}

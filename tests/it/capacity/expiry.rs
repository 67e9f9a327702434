//! `cache.max_idle` and `upstream.max_size`: idle content leaves and is fetched again, pins
//! stay; one upstream held under its quota while another upstream keeps what it links.

use super::Image;
use crate::support::scrape::{sample, scrape};
use crate::support::{self, Fake};
use std::net::SocketAddr;
use std::time::Duration;

/// Scrapes `admin` until `ok` holds for the text (at most 10 s); the last text and whether.
async fn scrape_until(admin: SocketAddr, ok: impl Fn(&str) -> bool) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin).await;
        if ok(&text) {
            return (text, true);
        }
        if tokio::time::Instant::now() >= deadline {
            return (text, false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const KIB: usize = 1 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_content_is_swept_and_fetched_again_while_pins_stay() {
    let fake = Fake::start().await;
    let idle = Image::put(&fake, "org/idle", "v1", 64 * KIB, 1);
    let pinned = Image::put(&fake, "org/pinned", "v1", 64 * KIB, 2);
    let dir = tempfile::tempdir().expect("tmp");
    let top = "[cache]\nmax_idle = \"2s\"\npin = [\"up.test/org/pinned:*\"]\n";
    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), "", top).await;
    assert_eq!(idle.pull(&fake, w.addr).await, 2, "cold");
    assert_eq!(pinned.pull(&fake, w.addr).await, 2, "cold");
    let (text, swept) = scrape_until(w.admin_addr, |t| {
        sample(t, "wharf_cache_removals_total{reason=\"idle\"}") >= 3.0
    })
    .await;
    assert!(
        swept,
        "the idle image (manifest, config, layer) was swept:\n{text}"
    );
    let (layer, _) = &idle.blobs[1];
    let path = crate::support::scrape::blob_path(dir.path(), layer);
    assert!(!path.exists(), "the idle layer left the disk");
    assert_eq!(idle.pull(&fake, w.addr).await, 2, "swept: fetched again");
    assert_eq!(pinned.pull(&fake, w.addr).await, 0, "pinned: still cached");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_is_held_under_its_quota_and_the_other_keeps_its_blobs() {
    let (one, two) = (Fake::start().await, Fake::start().await);
    let small: Vec<Image> = (0..3)
        .map(|i| Image::put(&one, &format!("org/a{i}"), "v1", 100 * KIB, 10 + i))
        .collect();
    let big = Image::put(&two, "org/b", "v1", 300 * KIB, 20);
    let dir = tempfile::tempdir().expect("tmp");
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[fill]
idle_timeout = "5s"
[[upstream]]
name = "one"
url = "{}"
max_size = "200KiB"
[[upstream]]
name = "two"
url = "{}"
"#,
        dir.path().display(),
        one.url(),
        two.url()
    );
    let w = support::wharf_toml(&toml).await;
    let prefixed = |img: &Image, up: &str| Image {
        repo: format!("{up}/{}", img.repo),
        tag: img.tag.clone(),
        blobs: img.blobs.clone(),
    };
    for (i, img) in small.iter().enumerate() {
        tokio::time::sleep(super::TICK).await;
        assert_eq!(
            prefixed(img, "one").pull(&one, w.addr).await,
            2,
            "a{i}: cold"
        );
    }
    assert_eq!(prefixed(&big, "two").pull(&two, w.addr).await, 2, "b: cold");
    // Three 100 KiB layers (and small configs) over 200 KiB: held under 160 KiB (the low
    // watermark), oldest first.
    let (text, held) = scrape_until(w.admin_addr, |t| {
        let used = sample(t, "wharf_upstream_cache_bytes{upstream=\"one\"}");
        used > 0.0 && used <= 160.0 * KIB as f64
    })
    .await;
    assert!(held, "upstream one under its quota:\n{text}");
    assert!(
        sample(&text, "wharf_cache_removals_total{reason=\"quota\"}") >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "wharf_upstream_max_bytes{upstream=\"one\"}"),
        200.0 * KIB as f64
    );
    assert_eq!(
        sample(&text, "wharf_upstream_max_bytes{upstream=\"two\"}"),
        -1.0
    );
    // The newest image of `one` is still cached; the oldest is fetched again.
    assert_eq!(
        prefixed(&small[2], "one").pull(&one, w.addr).await,
        0,
        "newest kept"
    );
    assert_eq!(
        prefixed(&small[0], "one").pull(&one, w.addr).await,
        2,
        "oldest released"
    );
    // The other upstream, without a quota, keeps everything.
    assert_eq!(
        prefixed(&big, "two").pull(&two, w.addr).await,
        0,
        "b untouched"
    );
    w.shutdown().await;
}

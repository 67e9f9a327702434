//! A blob larger than `max_size` is streamed to clients but never cached.

use crate::support::scrape::{blob_path, entries, lines_with, sample, scrape_settled};
use crate::support::{self, data, digest_of, get, Fake};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_larger_than_max_size_is_served_twice_and_never_cached() {
    let fake = Fake::start().await;
    let top = r#"
[cache]
max_size = "1MiB"
"#;
    let big = data(2 << 20, 300);
    let d = fake.put_blob(&big);
    let small = data(100 << 10, 301);
    let sd = fake.put_blob(&small);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), "", top).await;
    let url = |d: &str| format!("http://{}/v2/org/app/blobs/{d}", w.addr);
    for round in 1..=2 {
        let r = get(&url(&d)).await;
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(r.header("content-length"), Some("2097152"), "round {round}");
        assert_eq!(r.bytes().len(), big.len(), "round {round}: length");
        assert_eq!(digest_of(r.bytes()), d, "round {round}: bytes");
        assert_eq!(
            fake.count("GET blob"),
            round,
            "round {round}: fetched upstream every time"
        );
    }
    assert!(!blob_path(dir.path(), &d).exists(), "not on disk");
    let tmp_gone = || entries(dir.path(), "tmp").is_empty();
    assert!(
        support::eventually(std::time::Duration::from_secs(5), tmp_gone).await,
        "temp files left: {:?}",
        entries(dir.path(), "tmp")
    );
    let t = scrape_settled(&w).await;
    let uncacheable = sample(&t, r#"wharf_fills_total{result="uncacheable"}"#);
    assert!(
        uncacheable >= 1.0,
        "wharf_fills_total{{result=\"uncacheable\"}} = {uncacheable}\n{}",
        lines_with(&t, "wharf_fills_total")
    );
    assert_eq!(sample(&t, "wharf_cache_size_bytes"), 0.0, "nothing cached");
    assert_eq!(sample(&t, "wharf_cache_blobs"), 0.0);
    // A blob that fits is still cached as usual.
    for _ in 0..2 {
        assert_eq!(digest_of(get(&url(&sd)).await.bytes()), sd);
    }
    assert_eq!(fake.count("GET blob"), 3, "the small blob fetched once");
    let t = scrape_settled(&w).await;
    assert_eq!(sample(&t, "wharf_cache_size_bytes"), small.len() as f64);
    w.shutdown().await;
}

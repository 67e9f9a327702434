//! Metric values after scripted traffic: the counters move by exactly what happened.

use crate::support::scrape::{sample, scrape_settled};
use crate::support::{self, data, get, BlobBehavior, Fake};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_miss_then_a_hit_and_coalesced_clients_are_counted() {
    let fake = Fake::start().await;
    let small = data(10_000, 40);
    let (_, manifest) = fake.put_image("org/app", "v1", &[&small]);
    let big = data(2 * 1024 * 1024, 41);
    let bd = fake.put_blob(&big);
    fake.set_behavior(
        &bd,
        BlobBehavior {
            chunk: 128 * 1024,
            delay: Duration::from_millis(15),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let up = r#"upstream="up.test""#;

    // A manifest miss, then a hit.
    assert_eq!(
        get(&format!("{base}/manifests/v1")).await.bytes().as_ref(),
        manifest.as_slice()
    );
    assert_eq!(
        get(&format!("{base}/manifests/v1")).await.bytes().as_ref(),
        manifest.as_slice()
    );
    let t = scrape_settled(&w).await;
    let req = |kind: &str, result: &str| {
        sample(
            &t,
            &format!(r#"wharf_requests_total{{kind="{kind}",result="{result}",{up}}}"#),
        )
    };
    assert_eq!(req("manifest", "miss"), 1.0, "{t}");
    assert_eq!(req("manifest", "hit"), 1.0);
    let len = manifest.len() as f64;
    assert_eq!(
        sample(
            &t,
            &format!(r#"wharf_served_bytes_total{{source="cache",{up}}}"#)
        ),
        len
    );
    assert_eq!(
        sample(
            &t,
            &format!(r#"wharf_served_bytes_total{{source="upstream",{up}}}"#)
        ),
        len
    );

    // 16 concurrent cold requests for one blob: 1 miss, 15 coalesced, 1 committed fill.
    let url = format!("{base}/blobs/{bd}");
    let reqs: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for r in reqs {
        assert_eq!(r.await.expect("join").bytes().len(), big.len());
    }
    let t = scrape_settled(&w).await;
    let req = |kind: &str, result: &str| {
        sample(
            &t,
            &format!(r#"wharf_requests_total{{kind="{kind}",result="{result}",{up}}}"#),
        )
    };
    assert_eq!(req("blob", "miss"), 1.0, "{t}");
    assert_eq!(req("blob", "coalesced"), 15.0);
    assert_eq!(sample(&t, r#"wharf_fills_total{result="committed"}"#), 1.0);
    assert_eq!(sample(&t, "wharf_fills_in_progress"), 0.0);
    assert_eq!(
        sample(&t, "wharf_fill_waiters"),
        0.0,
        "waiters gone with their bodies"
    );
    assert_eq!(sample(&t, "wharf_cache_blobs"), 1.0);
    assert_eq!(sample(&t, "wharf_cache_size_bytes"), big.len() as f64);
    assert_eq!(
        sample(
            &t,
            &format!(r#"wharf_upstream_requests_total{{method="GET",status_class="2xx",{up}}}"#)
        ),
        2.0,
        "one manifest GET and one blob GET upstream"
    );
    assert_eq!(sample(&t, &format!("wharf_upstream_up{{{up}}}")), 1.0);
    assert!(
        sample(&t, &format!(r#"wharf_upstream_bytes_total{{{up}}}"#)) >= big.len() as f64,
        "blob bytes counted upstream"
    );

    // Health endpoints.
    assert_eq!(
        get(&format!("http://{}/healthz", w.admin_addr))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&format!("http://{}/readyz", w.admin_addr)).await.status,
        200
    );
    w.shutdown().await;
}

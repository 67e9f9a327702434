//! Manifests inside `cache.max_size`: counted with the blobs, evicted least recently used
//! first with the tag resolutions that point at them, and fetched again when asked for.

use super::Env;
use crate::capacity::TICK;
use crate::support::scrape::{sample, scrape};
use crate::support::{eventually, get, Fake};
use std::time::Duration;
use wharf::oci::Digest;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image manifest of about 8 KB (a long annotation) under `repo:tag`.
fn fat_manifest(fake: &Fake, repo: &str, tag: &str) -> String {
    let pad = tag.repeat(8000 / tag.len());
    let config = fake.put_blob_in(repo, format!("{{\"tag\":\"{tag}\"}}").as_bytes());
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":12}},"layers":[],"annotations":{{"pad":"{pad}"}}}}"#
    );
    fake.put_manifest(repo, Some(tag), OCI, m.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_count_in_max_size_and_the_least_recently_used_are_evicted() {
    // High watermark 22.5 kB, low 20 kB: the third 8 kB manifest evicts the first.
    let env = Env::start(Fake::start().await, "", "", "max_size = \"25KB\"").await;
    let tags = ["t0", "t1", "t2"];
    let digests: Vec<String> = tags
        .iter()
        .map(|t| fat_manifest(&env.fake, "org/app", t))
        .collect();
    for t in tags {
        let r = get(&env.url(&format!("org/app/manifests/{t}"))).await;
        assert_eq!(r.status, 200, "{t}");
        tokio::time::sleep(TICK).await;
    }
    let store = env.w.registry.store().clone();
    let d: Vec<Digest> = digests
        .iter()
        .map(|s| Digest::parse(s).expect("digest"))
        .collect();
    let gone = eventually(Duration::from_secs(5), || {
        store.get_manifest(&d[0]).expect("read").is_none()
    })
    .await;
    assert!(gone, "the least recently used manifest left RocksDB");
    assert!(store
        .get_tag("up.test", "org/app", "t0")
        .expect("read")
        .is_none());
    for i in [1, 2] {
        assert!(
            store.get_manifest(&d[i]).expect("read").is_some(),
            "t{i} kept"
        );
    }
    let t = scrape(env.w.admin_addr).await;
    let bytes = sample(&t, "wharf_cache_manifest_bytes");
    assert!(bytes > 0.0 && bytes <= 20_000.0, "manifest bytes {bytes}");
    assert!(sample(&t, "wharf_evictions_total") >= 1.0);

    // A kept manifest is a hit; the evicted one is fetched again, by digest and by tag.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gets = env.fake.count("GET manifest");
    assert_eq!(get(&env.url("org/app/manifests/t2")).await.status, 200);
    assert_eq!(env.fake.count("GET manifest"), gets, "t2 is cached");
    let r = get(&env.url(&format!("org/app/manifests/{}", digests[0]))).await;
    assert_eq!(r.status, 200, "the evicted manifest by digest");
    assert_eq!(r.header("docker-content-digest"), Some(digests[0].as_str()));
    assert_eq!(env.fake.count("GET manifest"), gets + 1, "fetched again");
    env.shutdown().await;
}

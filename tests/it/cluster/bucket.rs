//! Objects in the bucket that someone with write access (or a broken disk) changed: replica
//! `a` fills from the upstream and shares, the object is overwritten, and replica `b`, which
//! never saw the image, must not serve the changed bytes as verified content.

use super::{blob_url, pull_blob, replica_toml, shared_store, world};
use crate::e2e::garage::{garage_present, Garage};
use crate::support::{self, scrape::scrape_settled, Fake};
use wharf::app::Running;
use wharf::store::backend::BlobBackend;

/// Starts replica `a`, GETs `url(a)`, lets its fill settle and stops it; then overwrites the
/// bucket object `key` (kind, `sha256`, hex of `digest`) with `bytes` and starts replica `b`.
async fn share_then_overwrite(
    dir: &std::path::Path,
    fake: &Fake,
    g: &Garage,
    url: impl Fn(&Running) -> String,
    kind: &str,
    digest: &str,
    bytes: Vec<u8>,
) -> Running {
    let a = support::wharf_toml(&replica_toml(&dir.join("a"), fake, g, "")).await;
    assert_eq!(support::get(&url(&a)).await.status, 200);
    scrape_settled(&a).await;
    a.shutdown().await;
    let hex = digest.trim_start_matches("sha256:");
    shared_store(g)
        .put_record(&[kind, "sha256", hex], bytes.into())
        .await
        .expect("overwrite");
    support::wharf_toml(&replica_toml(&dir.join("b"), fake, g, "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_manifest_in_the_bucket_is_not_served() {
    if !garage_present("a_corrupt_manifest_in_the_bucket_is_not_served") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let (mdigest, manifest) = fake.put_image("lib/app", "v1", &[b"layer".as_slice()]);
    // The forged record: the right media type, a manifest one byte longer.
    let mut forged = b"application/vnd.oci.image.manifest.v1+json\n".to_vec();
    forged.extend_from_slice(&manifest);
    forged.push(b' ');
    let manifests = |w: &Running, r: &str| format!("http://{}/v2/lib/app/manifests/{r}", w.addr);
    let by_tag = |w: &Running| manifests(w, "v1");
    let b =
        share_then_overwrite(dir.path(), &fake, &g, by_tag, "manifests", &mdigest, forged).await;
    let before = fake.count("GET manifest");
    let r = support::get(&manifests(&b, &mdigest)).await;
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
async fn a_corrupt_blob_in_the_bucket_is_deleted_and_refetched() {
    if !garage_present("a_corrupt_blob_in_the_bucket_is_deleted_and_refetched") {
        return;
    }
    let (dir, g, fake) = world(false).await;
    let layer = support::data(100_000, 5);
    let d = fake.put_blob(&layer);
    // Same length, one bit flipped.
    let mut bad = layer.clone();
    bad[50_000] ^= 1;
    let url = |w: &Running| blob_url(w, &d);
    let b = share_then_overwrite(dir.path(), &fake, &g, url, "blobs", &d, bad).await;
    let r = support::get(&blob_url(&b, &d)).await;
    assert!(
        r.status != 200 || r.body.is_err(),
        "a complete body of corrupt bytes was served"
    );
    // Deleted from the bucket; the next request fetches upstream, and shares it again.
    pull_blob(&b, &layer).await;
    assert_eq!(fake.count("GET blob"), 2);
    scrape_settled(&b).await;
    let parsed = wharf::oci::Digest::parse(&d).expect("digest");
    let (_, s) = shared_store(&g)
        .open(&parsed)
        .await
        .expect("open")
        .expect("re-uploaded");
    let again = wharf::store::backend::collect(s).await.expect("read");
    assert!(again == layer, "the bucket still holds bad bytes");
    b.shutdown().await;
}

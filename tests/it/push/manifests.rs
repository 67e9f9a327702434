//! Manifest `PUT`s and `DELETE`s through Wharf.

use super::{location, push_blob, start, PUSH};
use crate::support::{data, digest_of, Fake, Session};
use bytes::Bytes;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes a config and one layer through Wharf; returns an image manifest naming them.
async fn push_image(s: &Session, base: &str, name: &str, seed: u64) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
    let layer = data(40_000, seed);
    let uploads = format!("{base}/v2/{name}/blobs/uploads/");
    for blob in [config.as_bytes(), layer.as_slice()] {
        let r = push_blob(s, base, &uploads, blob).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(&layer), "size": layer.len()}],
    }))
    .expect("manifest json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_by_tag_refreshes_the_cached_tag_at_once() {
    let fake = Fake::start().await;
    let (_, old) = fake.put_image("org/app", "v1", &[b"old layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    // tag_ttl is an hour: without the push, v1 would be served from the cache as it was.
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let tag_url = format!("{base}/v2/org/app/manifests/v1");
    assert_eq!(s.get(&tag_url).await.bytes().as_ref(), old.as_slice());
    // A tag that does not exist yet is remembered as missing...
    let v2_url = format!("{base}/v2/org/app/manifests/v2");
    assert_eq!(s.get(&v2_url).await.status, 404);
    let manifest = push_image(&s, &base, "org/app", 61).await;
    let d = digest_of(&manifest);
    let ct = [("content-type", OCI_MANIFEST)];
    for url in [&tag_url, &v2_url] {
        let r = s.send("PUT", url, &ct, Bytes::from(manifest.clone())).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        assert_eq!(location(&r), format!("/v2/org/app/manifests/{d}"));
    }
    assert_eq!(
        fake.manifest_at("org/app", "v1").as_deref(),
        Some(manifest.as_slice())
    );
    let before = fake.total();
    for url in [
        &tag_url,
        &v2_url,
        &format!("{base}/v2/org/app/manifests/{d}"),
    ] {
        let r = s.get(url).await;
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(r.bytes().as_ref(), manifest.as_slice(), "{url}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    }
    assert_eq!(
        fake.total(),
        before,
        "the pushed tags are served without the upstream"
    );
    // The whole image pulls from the cache: its blobs were teed on the way up.
    let v: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    for blob in [&v["config"], &v["layers"][0]] {
        let digest = blob["digest"].as_str().expect("digest");
        let r = s.get(&format!("{base}/v2/org/app/blobs/{digest}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(digest_of(r.bytes()), digest);
    }
    assert_eq!(fake.count("GET blob"), 0);
    assert_eq!(fake.total(), before);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_manifest_put_changes_nothing() {
    let fake = Fake::start().await;
    let (_, old) = fake.put_image("org/app", "v1", &[b"old layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let tag_url = format!("{base}/v2/org/app/manifests/v1");
    assert_eq!(s.get(&tag_url).await.bytes().as_ref(), old.as_slice());
    // Its layer was never uploaded: the upstream refuses, the cached tag stays.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"nope"), "size": 4},
        "layers": [],
    }))
    .expect("json");
    let ct = [("content-type", OCI_MANIFEST)];
    let r = s
        .send("PUT", &tag_url, &ct, Bytes::from(manifest.clone()))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    let r = s.get(&tag_url).await;
    assert_eq!(r.bytes().as_ref(), old.as_slice());
    let by_digest = format!("{base}/v2/org/app/manifests/{}", digest_of(&manifest));
    assert_eq!(s.get(&by_digest).await.status, 404);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_pass_through_and_what_was_deleted_is_forgotten() {
    let fake = Fake::start().await;
    let (d, m) = fake.put_image("org/app", "v1", &[b"layer one"]);
    fake.put_manifest("org/app", Some("latest"), OCI_MANIFEST, &m);
    let layer = digest_of(b"layer one");
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    for tag in ["v1", "latest"] {
        let r = s.get(&format!("{base}/v2/org/app/manifests/{tag}")).await;
        assert_eq!(r.bytes().as_ref(), m.as_slice());
    }
    assert_eq!(
        s.get(&format!("{base}/v2/org/app/blobs/{layer}"))
            .await
            .status,
        200
    );
    // A tag.
    let r = s
        .request(
            "DELETE",
            &format!("{base}/v2/org/app/manifests/latest"),
            &[],
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = s.get(&format!("{base}/v2/org/app/manifests/latest")).await;
    assert_eq!(
        r.status, 404,
        "the deleted tag is not served from the cache"
    );
    assert_eq!(
        s.get(&format!("{base}/v2/org/app/manifests/v1"))
            .await
            .status,
        200
    );
    // The manifest: its tags go with it.
    let r = s
        .request("DELETE", &format!("{base}/v2/org/app/manifests/{d}"), &[])
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(fake.count("DELETE manifest"), 2);
    assert_eq!(
        s.get(&format!("{base}/v2/org/app/manifests/v1"))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get(&format!("{base}/v2/org/app/manifests/{d}"))
            .await
            .status,
        404
    );
    // A blob, then again: the upstream's 404 as it is.
    let url = format!("{base}/v2/org/app/blobs/{layer}");
    assert_eq!(s.request("DELETE", &url, &[]).await.status, 202);
    let r = s.request("DELETE", &url, &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let r = s.get(&url).await;
    assert_eq!(r.status, 404, "no longer served under org/app");
    w.shutdown().await;
}

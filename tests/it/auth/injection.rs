//! Issue 18, finding 1, with the fake upstream (which, unlike Distribution, accepts any
//! document, as some registries do): manifests whose reference fields their media type does
//! not define, an index naming a layer, and a pushed manifest carrying injected fields. After
//! alice cached the private image, an anonymous client must get none of its digests under the
//! public repository. The real-registry shapes are in `e2e::auth::injection`.

use super::World;
use crate::support::{digest_of, Session, ALICE};
use serde_json::json;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Alice pulls the whole private image through Wharf (so it is cached).
async fn cache_private(world: &World) {
    let alice = Session::user(ALICE.0, ALICE.1);
    for (part, content) in world.private.parts() {
        let r = alice.get(&world.url("private/app", &part)).await;
        assert_eq!(r.status, 200, "alice {part}");
        assert_eq!(r.bytes().as_ref(), content.as_slice());
    }
}

/// Every private digest, asked for anonymously under `pub/app` (GET and HEAD, with the token
/// dance): never a 200.
async fn nothing_private_under_public(world: &World, when: &str) {
    let anon = Session::anonymous();
    let mut paths = vec![format!("manifests/{}", world.private.digest)];
    let shared = digest_of(&world.shared);
    for (d, _) in world.private.blobs.iter().filter(|(d, _)| *d != shared) {
        paths.push(format!("blobs/{d}"));
    }
    for path in &paths {
        for method in ["GET", "HEAD"] {
            let r = anon.request(method, &world.url("pub/app", path), &[]).await;
            assert!(
                matches!(r.status.as_u16(), 401 | 403 | 404),
                "{when}: anonymous {method} pub/app/{path}: {}",
                r.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_media_type_does_not_define_link_nothing() {
    let world = World::start("", "").await;
    cache_private(&world).await;
    let public: serde_json::Value = serde_json::from_slice(&world.public.manifest).expect("json");
    let private_layer = &world.private.blobs[1].0;
    let desc = |d: &str, mt: &str| json!({"mediaType": mt, "digest": d, "size": 1});
    // An image manifest with `manifests` (the private manifest) and with `blobs`.
    let mut with_manifests = public.clone();
    with_manifests["manifests"] = json!([desc(&world.private.digest, OCI)]);
    let mut with_blobs = public.clone();
    with_blobs["blobs"] = json!([desc(private_layer, "application/octet-stream")]);
    // An index naming a layer and the private manifest, both valid `manifests` entries.
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        desc(private_layer, OCI), desc(&world.public.digest, OCI)]});
    // A document typed one way and served as another (last below).
    let anon = Session::anonymous();
    for (tag, mt, m, status) in [
        ("inj-manifests", OCI, &with_manifests, 502),
        ("inj-blobs", OCI, &with_blobs, 502),
        ("inj-index", INDEX, &index, 200),
        ("inj-served-as-index", INDEX, &public, 502),
    ] {
        let bytes = serde_json::to_vec(m).expect("json");
        world.fake.put_manifest("pub/app", Some(tag), mt, &bytes);
        let r = anon
            .get(&world.url("pub/app", &format!("manifests/{tag}")))
            .await;
        assert_eq!(r.status, status, "{tag}");
        if status == 502 {
            assert_eq!(r.error_code(), "MANIFEST_INVALID", "{tag}");
        }
    }
    nothing_private_under_public(&world, "after the injected manifests").await;
    // The index's real child is still served (a manifest link), not as a blob.
    let child = anon
        .get(&world.url("pub/app", &format!("manifests/{}", world.public.digest)))
        .await;
    assert_eq!(child.status, 200);
    let as_blob = anon
        .get(&world.url("pub/app", &format!("blobs/{}", world.public.digest)))
        .await;
    assert_ne!(as_blob.status, 200, "a manifest link is no blob link");
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_manifest_with_injected_fields_is_not_cached() {
    let world = World::start("", "allow_push = true").await;
    cache_private(&world).await;
    let mut m: serde_json::Value = serde_json::from_slice(&world.public.manifest).expect("json");
    m["blobs"] = json!([{"mediaType": "application/octet-stream", "digest": world.private.blobs[1].0, "size": 1}]);
    let bytes = serde_json::to_vec(&m).expect("json");
    // Alice may push to the public repository (the fake lets users push where they pull).
    let alice = Session::user(ALICE.0, ALICE.1);
    let url = world.url("pub/app", "manifests/pushed");
    let r = alice
        .send("PUT", &url, &[("content-type", OCI)], bytes.into())
        .await;
    assert_eq!(r.status, 201, "the upstream accepts it");
    nothing_private_under_public(&world, "after the push").await;
    // Pulled back anonymously, Wharf refuses the document rather than serving its cache.
    let r = Session::anonymous().get(&url).await;
    assert_eq!(r.status, 502);
    world.shutdown().await;
}

//! Who may pull what: public and private images, before and after they are cached, blobs under
//! the wrong repository, 403 upstreams, and re-checks after `authz_ttl`.

use super::{assert_refused, assert_served, Who, World};
use crate::support::{self, get, Fake, ALICE};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Every client refused the private image, for every part of it, with `status`/`code`.
async fn all_refused(world: &World, who: &[(Who, u16, &str)], when: &str) {
    for (w, status, code) in who {
        for (part, content) in world.private.parts() {
            let url = world.url("private/app", &part);
            let r = w.get(&url).await;
            assert_refused(
                &r,
                *status,
                code,
                &content,
                &format!("{when}: {w:?} GET {part}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_images_are_pulled_anonymously() {
    let world = World::start("", "").await;
    for repo in ["pub/app", "up.test/pub/app"] {
        for round in ["cold", "cached"] {
            for (part, content) in world.public.parts() {
                let r = get(&world.url(repo, &part)).await;
                assert_served(&r, &content, &format!("{round} anonymous {repo}/{part}"));
            }
        }
    }
    // Users may pull public images too.
    for who in [Who::Alice, Who::AliceBasic, Who::Bob] {
        for (part, content) in world.public.parts() {
            let r = who.get(&world.url("pub/app", &part)).await;
            assert_served(&r, &content, &format!("{who:?} pub/app/{part}"));
        }
    }
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_images_are_pulled_with_good_credentials() {
    let world = World::start("", "").await;
    for (who, repo) in [
        (Who::Alice, "private/app"),
        (Who::AliceBasic, "private/app"),
        (Who::Alice, "up.test/private/app"),
        (Who::AliceBasic, "up.test/private/app"),
    ] {
        for (part, content) in world.private.parts() {
            let r = who.get(&world.url(repo, &part)).await;
            assert_served(&r, &content, &format!("{who:?} {repo}/{part}"));
            let r = who.request("HEAD", &world.url(repo, &part)).await;
            assert_eq!(r.status, 200, "{who:?} HEAD {repo}/{part}");
        }
    }
    assert!(
        world.fake.token_requests(Some("alice")) >= 1,
        "Wharf fetched with alice's credentials"
    );
    assert_eq!(
        world.fake.count("GET manifest"),
        1,
        "one fill of the manifest"
    );
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_images_are_refused_before_and_after_caching() {
    let world = World::start("", "").await;
    let refused = [
        (Who::Anonymous, 401, "UNAUTHORIZED"),
        (Who::WrongPassword, 401, "UNAUTHORIZED"),
        (Who::WrongBasic, 401, "UNAUTHORIZED"),
        (Who::Bob, 401, "UNAUTHORIZED"),
    ];
    all_refused(&world, &refused, "before caching").await;
    for (part, content) in world.private.parts() {
        let r = Who::Alice.get(&world.url("private/app", &part)).await;
        assert_served(&r, &content, &format!("alice {part}"));
    }
    let gets = world.fake.count("GET blob") + world.fake.count("GET manifest");
    all_refused(&world, &refused, "after caching").await;
    for (part, content) in world.private.parts() {
        let r = Who::Anonymous
            .request("HEAD", &world.url("private/app", &part))
            .await;
        assert_eq!(r.status, 401, "after caching: anonymous HEAD {part}");
        super::assert_no_content(&r, &content, "HEAD");
        let r = Who::Anonymous
            .get(&world.url("up.test/private/app", &part))
            .await;
        assert_refused(
            &r,
            401,
            "UNAUTHORIZED",
            &content,
            &format!("prefixed {part}"),
        );
    }
    // Alice still gets it, from the cache.
    for (part, content) in world.private.parts() {
        let r = Who::Alice.get(&world.url("private/app", &part)).await;
        assert_served(&r, &content, &format!("alice again {part}"));
    }
    assert_eq!(
        world.fake.count("GET blob") + world.fake.count("GET manifest"),
        gets,
        "refusals and hits fetch no content upstream"
    );
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_blob_is_refused_under_a_public_repository() {
    let world = World::start("", "").await;
    for (part, content) in world.private.parts() {
        let r = Who::Alice.get(&world.url("private/app", &part)).await;
        assert_served(&r, &content, &format!("alice {part}"));
    }
    let shared = support::digest_of(&world.shared);
    for (d, content) in &world.private.blobs {
        let url = world.url("pub/app", &format!("blobs/{d}"));
        if *d == shared {
            // In both repositories upstream: anyone may have it under pub/app.
            assert_served(&get(&url).await, content, "shared layer under pub/app");
            continue;
        }
        for who in [Who::Anonymous, Who::Bob, Who::Alice, Who::AliceBasic] {
            let what = format!("{who:?} private blob {d} under pub/app");
            let r = who.get(&url).await;
            assert_refused(&r, 404, "BLOB_UNKNOWN", content, &what);
            let r = who.request("HEAD", &url).await;
            assert_eq!(r.status, 404, "HEAD: {what}");
        }
    }
    // And the private manifest under the public name.
    let url = world.url("pub/app", &format!("manifests/{}", world.private.digest));
    let r = Who::Anonymous.get(&url).await;
    assert_refused(
        &r,
        404,
        "MANIFEST_UNKNOWN",
        &world.private.manifest,
        "manifest",
    );
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_403_is_denied() {
    let world = World::start("", "").await;
    world.fake.denied_status.store(403, Ordering::SeqCst);
    let refused = [
        (Who::Bob, 403, "DENIED"),
        (Who::Anonymous, 403, "DENIED"),
        (Who::WrongBasic, 401, "UNAUTHORIZED"),
    ];
    all_refused(&world, &refused, "before caching").await;
    for (part, content) in world.private.parts() {
        let r = Who::AliceBasic.get(&world.url("private/app", &part)).await;
        assert_served(&r, &content, &format!("alice {part}"));
    }
    all_refused(&world, &refused, "after caching").await;
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_rechecked_after_authz_ttl() {
    let world = World::start("[auth]\nauthz_ttl = \"1s\"", "").await;
    let (fake, private) = (&world.fake, &world.private);
    let by_digest = world.url("private/app", &format!("manifests/{}", private.digest));
    let (ld, layer) = &private.blobs[1];
    let blob = world.url("private/app", &format!("blobs/{ld}"));
    for (part, content) in private.parts() {
        let r = Who::AliceBasic.get(&world.url("private/app", &part)).await;
        assert_served(&r, &content, &format!("alice {part}"));
    }
    let before = fake.total();
    assert_served(
        &Who::AliceBasic.get(&by_digest).await,
        &private.manifest,
        "hit",
    );
    assert_served(&Who::AliceBasic.get(&blob).await, layer, "hit");
    assert_eq!(
        fake.total(),
        before,
        "within authz_ttl a hit asks nothing upstream"
    );

    // Revoked upstream: refused once the decision is older than authz_ttl.
    fake.set_private_access(ALICE.0, false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = Who::AliceBasic.get(&blob).await;
    assert_refused(&r, 401, "UNAUTHORIZED", layer, "revoked: blob");
    let r = Who::AliceBasic.get(&by_digest).await;
    assert_refused(
        &r,
        401,
        "UNAUTHORIZED",
        &private.manifest,
        "revoked: manifest",
    );
    assert!(
        fake.count("HEAD manifest") + fake.count("HEAD blob") >= 1,
        "the re-check is a HEAD"
    );

    // Granted again: served again.
    fake.set_private_access(ALICE.0, true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_served(&Who::AliceBasic.get(&blob).await, layer, "granted: blob");
    let gets = fake.count("GET blob");

    // Gone upstream: 404 with the right code.
    fake.delete_blob("private/app", ld);
    fake.delete_manifest("private/app", &private.digest);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = Who::AliceBasic.get(&blob).await;
    assert_refused(&r, 404, "BLOB_UNKNOWN", layer, "deleted: blob");
    let r = Who::AliceBasic.get(&by_digest).await;
    assert_refused(
        &r,
        404,
        "MANIFEST_UNKNOWN",
        &private.manifest,
        "deleted: manifest",
    );
    assert_eq!(fake.count("GET blob"), gets, "re-checks never download");
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_use_the_upstreams_configured_credentials() {
    let extra = format!("username = \"{}\"\npassword = \"{}\"", ALICE.0, ALICE.1);
    let world = World::start("", &extra).await;
    for (part, content) in world.private.parts() {
        let r = Who::Anonymous.get(&world.url("private/app", &part)).await;
        assert_served(
            &r,
            &content,
            &format!("anonymous via configured creds {part}"),
        );
    }
    // A client's own (wrong) credentials are its own: no fallback to the configured ones.
    let (d, b) = &world.private.blobs[1];
    let r = Who::WrongBasic
        .get(&world.url("private/app", &format!("blobs/{d}")))
        .await;
    assert_refused(&r, 401, "UNAUTHORIZED", b, "wrong password");
    assert!(world.fake.token_requests(Some("alice")) >= 1);
    world.shutdown().await;
}

/// The fake itself: a Docker-Hub-like refusal without a token, and the token service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_upstream_authenticates_like_docker_hub() {
    let fake = Fake::start_with_auth().await;
    let (d, m) = fake.put_image("private/x", "v1", &[b"secret layer"]);
    let url = format!("{}/v2/private/x/manifests/{d}", fake.url());
    let r = support::raw("GET", &url, &[]).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.contains("scope=\"repository:private/x:pull\"")));
    assert_eq!(get(&url).await.status, 401, "anonymous token: no access");
    let r = support::request_as("GET", &url, &[], Some(ALICE)).await;
    assert_eq!(r.bytes().as_ref(), m.as_slice());
    let r = support::request_as("GET", &url, &[], Some(super::WRONG)).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(fake.token_requests(None), 1);
    assert_eq!(fake.token_requests(Some("alice")), 2);
    let other = format!(
        "{}/v2/pub/x/blobs/{}",
        fake.url(),
        support::digest_of(b"secret layer")
    );
    let r = support::request_as("GET", &other, &[], Some(ALICE)).await;
    assert_eq!(r.status, 404, "blobs are scoped by repository");
}

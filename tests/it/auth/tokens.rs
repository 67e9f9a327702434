//! Upstream tokens: one per (credentials, scope) however many pulls; and no secret in the logs.

use super::{assert_served, Img, Who, World, WRONG};
use crate::support::{self, basic, raw, send, Session, ALICE};
use base64::Engine as _;

/// One `docker pull`: the manifest by tag, then everything else concurrently.
async fn docker_pull(world: &World, s: &Session, img: &Img) {
    let r = s
        .get(&world.url(img.repo, &format!("manifests/{}", img.tag)))
        .await;
    assert_served(&r, &img.manifest, "manifest by tag");
    let tasks: Vec<_> = img
        .parts()
        .into_iter()
        .skip(1)
        .map(|(part, content)| {
            let (s, url) = (s.clone(), world.url(img.repo, &part));
            tokio::spawn(async move { (part, content, s.get(&url).await) })
        })
        .collect();
    for t in tasks {
        let (part, content, r) = t.await.expect("join");
        assert_served(&r, &content, &part);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_pulls_need_one_upstream_token_per_credentials() {
    let world = World::start("", "").await;
    // Three concurrent `docker pull`s as alice, each with its own Wharf token.
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let (world, s) = (&world, Session::user(ALICE.0, ALICE.1));
            async move { docker_pull(world, &s, &world.private).await }
        })
        .collect();
    futures_util::future::join_all(pulls).await;
    // And blobs with Basic on each request, concurrently.
    let auth = basic(ALICE.0, ALICE.1);
    let tasks: Vec<_> = world
        .private
        .blobs
        .iter()
        .map(|(d, b)| {
            let (url, auth, b) = (
                world.url("private/app", &format!("blobs/{d}")),
                auth.clone(),
                b.clone(),
            );
            tokio::spawn(async move {
                let r = raw("GET", &url, &[("authorization", &auth)]).await;
                assert_served(&r, &b, "blob with Basic");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(
        world.fake.token_requests(Some(ALICE.0)),
        1,
        "one upstream token for alice and private/app"
    );
    // Anonymous clients share one anonymous upstream token.
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let (world, s) = (&world, Session::anonymous());
            async move { docker_pull(world, &s, &world.public).await }
        })
        .collect();
    futures_util::future::join_all(pulls).await;
    assert_eq!(
        world.fake.token_requests(None),
        1,
        "one anonymous upstream token"
    );
    world.shutdown().await;
}

/// A current_thread runtime: the capture is this thread's subscriber, and every task of this
/// test's Wharf runs here (see `support::logs`).
#[tokio::test(flavor = "current_thread")]
async fn tokens_and_passwords_never_reach_the_logs() {
    let (logs, guard) = support::logs::capture();
    let world = World::start("", "").await;
    let alice = Session::user(ALICE.0, ALICE.1);
    docker_pull(&world, &alice, &world.private).await;
    docker_pull(&world, &Session::anonymous(), &world.public).await;
    for who in [
        Who::AliceBasic,
        Who::WrongBasic,
        Who::WrongPassword,
        Who::Bob,
    ] {
        for (part, _) in world.private.parts() {
            who.get(&world.url("private/app", &part)).await;
        }
    }
    let realm = format!("http://{}/token", world.w.addr);
    let form = format!(
        "grant_type=password&username={}&password={}&service=wharf&scope=repository:private/app:pull&client_id=t",
        ALICE.0, ALICE.1
    );
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let r = send("POST", &realm, &ct, form.into()).await;
    let posted = r.json()["token"].as_str().unwrap_or("").to_string();
    world
        .fake
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    Who::AliceBasic
        .get(&world.url("private/app", "manifests/v1"))
        .await;
    world
        .fake
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let fake_tokens = world.fake.issued_tokens();
    world.shutdown().await;
    drop(guard);

    let text = logs.text();
    // The capture sees the test's task, the server's tasks and debug events.
    for proof in ["wharf listening", "fill done", "DEBUG"] {
        assert!(
            text.contains(proof),
            "no {proof:?} in the {} bytes captured",
            text.len()
        );
    }
    let b64 =
        |(u, p): (&str, &str)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let mut secrets: Vec<(String, String)> = vec![
        ("alice's password".into(), ALICE.1.into()),
        ("the wrong password".into(), WRONG.1.into()),
        ("bob's password".into(), support::BOB.1.into()),
        (
            "alice's Basic".into(),
            b64(ALICE).trim_end_matches('=').into(),
        ),
        (
            "the wrong Basic".into(),
            b64(WRONG).trim_end_matches('=').into(),
        ),
        ("Wharf's POST token".into(), posted.clone()),
    ];
    assert!(!posted.is_empty(), "POST /token issued a token");
    assert!(!fake_tokens.is_empty(), "the fake issued tokens");
    secrets.extend(
        fake_tokens
            .into_iter()
            .map(|t| ("an upstream token".into(), t)),
    );
    let wharf_tokens = alice.tokens_seen();
    assert!(!wharf_tokens.is_empty(), "Wharf issued tokens");
    secrets.extend(
        wharf_tokens
            .into_iter()
            .map(|t| ("a Wharf token".into(), t)),
    );
    for (what, secret) in secrets {
        if let Some(i) = text.find(&secret) {
            let line = text[..i].rsplit('\n').next().unwrap_or("");
            panic!("{what} is in the logs: {line}…");
        }
    }
}

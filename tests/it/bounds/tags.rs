//! Tag requests in single flight: a burst of clients for one tag costs one upstream request,
//! and every client is still authorized for itself.

use super::Env;
use crate::support::scrape::{sample, scrape};
use crate::support::{get, Fake, Session, ALICE, BOB};
use std::time::Duration;

/// `n` concurrent anonymous GETs of `url`: every answer's (status, digest header).
async fn burst(url: &str, n: usize) -> Vec<(u16, Option<String>)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let r = get(&url).await;
                let d = r.header("docker-content-digest").map(str::to_string);
                (r.status.as_u16(), d)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

fn coalesced(text: &str) -> f64 {
    sample(
        text,
        "wharf_requests_total{kind=\"manifest\",result=\"coalesced\",upstream=\"up.test\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_misses_of_one_tag_cost_one_upstream_get() {
    let env = Env::start(Fake::start().await, "", "", "").await;
    let (d, _) = env.fake.put_image("org/app", "latest", &[b"one layer"]);
    // The upstream takes its time, so that every client arrives while the GET is under way.
    env.fake
        .delay_next("GET manifest", 1, Duration::from_millis(500));
    let answers = burst(&env.url("org/app/manifests/latest"), 60).await;
    for (i, (status, digest)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "client {i}");
        assert_eq!(digest.as_deref(), Some(d.as_str()), "client {i}");
    }
    assert_eq!(
        env.fake.count("GET manifest"),
        1,
        "60 clients, one tag: one upstream GET"
    );
    let t = scrape(env.w.admin_addr).await;
    assert!(coalesced(&t) >= 1.0, "coalesced requests are counted");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_revalidations_cost_one_head() {
    let env = Env::start(Fake::start().await, "tag_ttl = \"1s\"", "", "").await;
    let (d, _) = env.fake.put_image("org/app", "latest", &[b"one layer"]);
    let url = env.url("org/app/manifests/latest");
    assert_eq!(get(&url).await.status, 200, "first pull");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    env.fake
        .delay_next("HEAD manifest", 1, Duration::from_millis(500));
    let answers = burst(&url, 60).await;
    for (i, (status, digest)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "client {i}");
        assert_eq!(digest.as_deref(), Some(d.as_str()), "client {i}");
    }
    assert_eq!(
        (
            env.fake.count("GET manifest"),
            env.fake.count("HEAD manifest")
        ),
        (1, 1),
        "(GET, HEAD): the tag did not move, 60 revalidations cost one HEAD"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_alices_request_for_a_private_tag_is_refused() {
    let env = Env::start(Fake::start_with_auth().await, "", "", "").await;
    let (d, m) = env.fake.put_image("private/app", "v1", &[b"secret layer"]);
    let url = env.url("private/app/manifests/v1");
    // Everyone's session is ready (tokens fetched) before the burst.
    let (alice, bob, anon) = (
        Session::user(ALICE.0, ALICE.1),
        Session::user(BOB.0, BOB.1),
        Session::anonymous(),
    );
    for s in [&alice, &bob, &anon] {
        let _ = s.get(&env.url("private/app/manifests/nope")).await;
    }
    env.fake
        .delay_next("GET manifest", 1, Duration::from_millis(800));
    let gets_before = env.fake.count("GET manifest");
    let leader = {
        let (alice, url) = (alice.clone(), url.clone());
        tokio::spawn(async move { alice.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Both arrive while alice's GET is in flight upstream.
    let (b, a) = tokio::join!(bob.get(&url), anon.get(&url));
    let l = leader.await.expect("alice");
    assert_eq!(l.status, 200, "alice");
    assert_eq!(l.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(l.bytes().as_ref(), m.as_slice());
    for (who, r) in [("bob", &b), ("anonymous", &a)] {
        assert!(
            matches!(r.status.as_u16(), 401 | 403),
            "{who} joined alice's request and got {} {:?}",
            r.status,
            r.error_code()
        );
        assert!(
            r.bytes().as_ref() != m.as_slice(),
            "{who} got the private manifest"
        );
    }
    assert_eq!(
        env.fake.count("GET manifest") - gets_before,
        1,
        "bob and the anonymous client joined alice's GET (and were refused by their own HEAD)"
    );
    env.shutdown().await;
}

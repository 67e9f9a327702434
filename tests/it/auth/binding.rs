//! Issue 18, findings 3, 6 and 8: credentials stay with the upstream they are for (a token
//! is bound to its scope's upstream; `Host` routing; realms bound to the upstream's domain),
//! challenge parameters cannot be injected through `?ns=`, and `/token` checks credentials
//! even without a scope, throttling refused ones.

use super::WRONG;
use crate::support::{self, basic, raw, Fake, Session, ALICE};
use std::sync::atomic::Ordering;

/// A Wharf in front of two fakes with token auth: `up.test` (default) and `other.test`
/// (also reached through the `Host` `other.mirror.test`), each with a private image.
async fn two_upstreams(dir: &std::path::Path, extra_b: &str) -> (Fake, Fake, wharf::app::Running) {
    let (a, b) = (Fake::start_with_auth().await, Fake::start_with_auth().await);
    a.put_image("private/app", "v1", &[b"a secret"]);
    b.put_image("private/app", "v1", &[b"b secret"]);
    a.put_image("pub/app", "v1", &[b"a public"]);
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[[upstream]]
name = "up.test"
url = "{}"
default = true
[[upstream]]
name = "other.test"
url = "{}"
hosts = ["other.mirror.test"]
{extra_b}
"#,
        dir.display(),
        a.url(),
        b.url()
    );
    (a, b, support::wharf_toml(&toml).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stands_for_its_credentials_only_at_its_scopes_upstream() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b, w) = two_upstreams(dir.path(), "").await;
    let alice = Session::user(ALICE.0, ALICE.1);
    let r = alice
        .get(&format!("http://{}/v2/private/app/manifests/v1", w.addr))
        .await;
    assert_eq!(r.status, 200, "alice at up.test");
    let token = alice.tokens_seen().pop().expect("a token");
    // The same token on the other upstream: alice's credentials never go there.
    let url = format!("http://{}/v2/other.test/private/app/manifests/v1", w.addr);
    let r = raw(
        "GET",
        &url,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, 401, "anonymous at other.test");
    assert_eq!(
        b.token_requests(Some(ALICE.0)),
        0,
        "alice's credentials reached other.test"
    );
    assert!(a.token_requests(Some(ALICE.0)) >= 1);
    // Asked for that scope, Wharf checks them there and the pull works.
    let r = alice.get(&url).await;
    assert_eq!(r.status, 200, "alice at other.test with a token for it");
    assert!(b.token_requests(Some(ALICE.0)) >= 1);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_routes_to_its_upstream_and_its_logins() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b, w) = two_upstreams(dir.path(), "").await;
    let host = [("host", "other.mirror.test:5000")];
    // `docker login other.mirror.test`: a token request without scope, checked at other.test.
    let auth = basic(ALICE.0, ALICE.1);
    let login = format!("http://{}/token?service=wharf", w.addr);
    let r = raw("GET", &login, &[host[0], ("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            a.token_requests(Some(ALICE.0)),
            b.token_requests(Some(ALICE.0))
        ),
        (0, 1)
    );
    let token = r.json()["token"].as_str().expect("token").to_string();
    // A path prefix naming the other upstream cannot pull alice's token there.
    let bearer = format!("Bearer {token}");
    let url = format!("http://{}/v2/private/app/manifests/v1", w.addr);
    let r = raw("GET", &url, &[host[0], ("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "routed by Host to other.test");
    assert_eq!(
        r.bytes().as_ref(),
        b.manifest_at("private/app", "v1").expect("m").as_slice()
    );
    let prefixed = format!("http://{}/v2/up.test/private/app/manifests/v1", w.addr);
    let r = raw("GET", &prefixed, &[host[0], ("authorization", &bearer)]).await;
    assert_ne!(r.status, 200);
    assert_eq!(
        a.token_requests(Some(ALICE.0)),
        0,
        "nothing of alice's reached up.test"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_realm_gets_no_credentials_unless_listed() {
    let foreign = Fake::start_at("127.0.0.2:0").await;
    foreign.token_auth.store(true, Ordering::SeqCst);
    for listed in [false, true] {
        let up = Fake::start_with_auth().await;
        up.put_image("private/app", "v1", &[b"secret"]);
        *up.realm.lock().expect("lock") = Some(format!("{}/token", foreign.url()));
        let extra = if listed {
            "token_realm_hosts = [\"127.0.0.2\"]"
        } else {
            ""
        };
        let dir = tempfile::tempdir().expect("tmp");
        let w = support::wharf(dir.path(), "up.test", &up.url(), extra).await;
        let alice = Session::user(ALICE.0, ALICE.1);
        let before = foreign.token_requests(Some(ALICE.0));
        let _ = alice
            .get(&format!("http://{}/v2/private/app/manifests/v1", w.addr))
            .await;
        let sent = foreign.token_requests(Some(ALICE.0)) - before;
        if listed {
            assert!(sent >= 1, "a listed realm host gets the credentials");
        } else {
            assert_eq!(sent, 0, "alice's password reached a realm on another host");
            let seen = foreign.requests();
            assert!(
                seen.iter().all(|s| s.authorization.is_none()),
                "{:?}",
                seen.len()
            );
        }
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_cannot_inject_challenge_parameters() {
    let fake = Fake::start_with_auth().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(
        dir.path(),
        "up.test",
        &fake.url(),
        "aliases = [\"alias.test\"]",
    )
    .await;
    let base = format!("http://{}/v2/pub/app/manifests/v1", w.addr);
    let evil = format!("{base}?ns=x%22,realm=%22http://evil/token");
    let r = raw("GET", &evil, &[]).await;
    assert_eq!(r.status, 401);
    let ch = r.header("www-authenticate").expect("challenge");
    assert!(!ch.contains("evil"), "{ch}");
    let parsed = wharf::upstream::challenge::parse(ch);
    assert_eq!(parsed.len(), 1, "{ch}");
    // A real upstream named through an alias: the scope carries its configured name.
    let r = raw("GET", &format!("{base}?ns=alias.test"), &[]).await;
    let ch = support::client::parse_bearer(r.header("www-authenticate").expect("challenge"));
    assert_eq!(
        ch.and_then(|c| c.scope).as_deref(),
        Some("repository:up.test/pub/app:pull")
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_without_scope_check_credentials_and_refusals_are_throttled() {
    let fake = Fake::start_with_auth().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/token?service=wharf", w.addr);
    let r = raw("GET", &url, &[("authorization", &basic(WRONG.0, WRONG.1))]).await;
    assert_eq!(r.status, 401, "docker login with a wrong password");
    let r = raw("GET", &url, &[("authorization", &basic(ALICE.0, ALICE.1))]).await;
    assert_eq!(r.status, 200, "docker login with the right one");
    // A brute force on one user name: a few reach the upstream, then 429 without asking.
    let asked_before = fake.token_requests(Some("mallory"));
    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = raw(
            "GET",
            &url,
            &[("authorization", &basic("mallory", &format!("guess{i}")))],
        )
        .await;
        statuses.push(r.status.as_u16());
    }
    let asked = fake.token_requests(Some("mallory")) - asked_before;
    assert!(asked <= 5, "{asked} guesses reached the upstream");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20 - asked as usize,
        "{statuses:?}"
    );
    // The same refused password again: answered without the upstream.
    let before = fake.token_requests(Some(WRONG.0));
    let r = raw("GET", &url, &[("authorization", &basic(WRONG.0, WRONG.1))]).await;
    assert_eq!(r.status, 401);
    assert_eq!(fake.token_requests(Some(WRONG.0)), before);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_on_registry_requests_are_throttled_like_logins() {
    let fake = Fake::start_with_auth().await;
    fake.put_image("private/app", "v1", &[b"secret"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let url = format!("http://{}/v2/private/app/manifests/v1", w.addr);
    let mut statuses = Vec::new();
    for i in 0..20 {
        let auth = basic("mallory", &format!("guess{i}"));
        statuses.push(
            raw("GET", &url, &[("authorization", &auth)])
                .await
                .status
                .as_u16(),
        );
    }
    let asked = fake.token_requests(Some("mallory"));
    assert!(
        asked <= 5,
        "{asked} guesses reached the upstream: {statuses:?}"
    );
    assert!(statuses[15..].iter().all(|s| *s == 429), "{statuses:?}");
    // Good Basic credentials still work, checked once and then remembered.
    let auth = basic(ALICE.0, ALICE.1);
    for _ in 0..3 {
        assert_eq!(
            raw("GET", &url, &[("authorization", &auth)]).await.status,
            200
        );
    }
    w.shutdown().await;
}

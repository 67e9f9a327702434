//! Pushes with credentials: Wharf's challenge asks for `pull,push`, the client's own
//! credentials go upstream (never the configured ones), refusals come back as they are.

use super::{cached, push_blob, start, PUSH};
use crate::support::{self, client::parse_bearer, data, digest_of, Fake, Session, ALICE, BOB};
use bytes::Bytes;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_go_upstream_with_the_clients_credentials_and_a_push_scope() {
    let fake = Fake::start_with_auth().await;
    let dir = tempfile::tempdir().expect("tmp");
    // Configured credentials are for anonymous pulls only, never for pushes.
    let extra = format!(
        "{PUSH}username = \"{}\"\npassword = \"{}\"\n",
        ALICE.0, ALICE.1
    );
    let w = start(&fake, dir.path(), &extra).await;
    let base = format!("http://{}", w.addr);
    let uploads = format!("{base}/v2/private/app/blobs/uploads/");

    // The challenge names the push scope, so clients ask /token for it.
    let r = support::raw("POST", &uploads, &[]).await;
    assert_eq!(r.status, 401);
    let ch = parse_bearer(r.header("www-authenticate").expect("challenge")).expect("bearer");
    assert_eq!(
        ch.scope.as_deref(),
        Some("repository:private/app:pull,push")
    );
    assert_eq!(fake.total(), 0);

    let alice = Session::user(ALICE.0, ALICE.1);
    let blob = data(80_000, 71);
    let d = digest_of(&blob);
    let r = push_blob(&alice, &base, &uploads, &blob).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(fake.has_blob_in("private/app", &d));
    assert!(cached(&w, &d));
    // alice pulls it from the cache; bob does not get it.
    let url = format!("{base}/v2/private/app/blobs/{d}");
    let r = alice.get(&url).await;
    assert_eq!(r.bytes().as_ref(), blob.as_slice());
    assert_eq!(fake.count("GET blob"), 0);
    let r = Session::user(BOB.0, BOB.1).get(&url).await;
    assert_ne!(r.status, 200, "bob may not pull private/app");
    // Anonymous pulls get what the configured credentials may read (the operator's choice)...
    let r = Session::anonymous().get(&url).await;
    assert_eq!(r.status, 200);

    // ...but an anonymous client pushes anonymously: the upstream refuses, Wharf relays the
    // refusal with its own challenge.
    let anon = Session::anonymous();
    let r = anon
        .send(
            "POST",
            &format!("{base}/v2/public/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.error_code(), "UNAUTHORIZED", "the upstream's body");
    let ch = parse_bearer(r.header("www-authenticate").expect("challenge")).expect("bearer");
    assert!(
        ch.realm.starts_with(&base),
        "Wharf's realm, not the upstream's: {ch:?}"
    );
    assert!(!fake.has_blob_in("public/app", &d));

    // bob may not push to private/app: the upstream's 403 as it is.
    fake.denied_status.store(403, Ordering::SeqCst);
    let bob = Session::user(BOB.0, BOB.1);
    let r = bob.send("POST", &uploads, &[], Bytes::new()).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (403, "DENIED")
    );

    // A wrong password is refused by Wharf's /token, which asks the upstream.
    let wrong = Session::user(ALICE.0, "wrong");
    let r = wrong.send("POST", &uploads, &[], Bytes::new()).await;
    assert_eq!(r.status, 401);
    assert!(fake.token_requests(Some(ALICE.0)) > 0);
    w.shutdown().await;
}

//! Redirects from an `https` upstream (issue 18): never down to `http`, and the mTLS client
//! certificate goes to the upstream's own host only, not to a host it redirects to.
//!
//! The upstream is the fake behind a TLS terminator (`e2e::tls_front`) whose certificate a
//! test CA made with `openssl` signed.

use super::{assert_error, lossy, Env};
use crate::e2e::tls_front::{self, TlsFront};
use crate::e2e::upstream::{issue_cert, make_certs, Certs};
use crate::support::{data, get, Fake};
use std::net::SocketAddr;
use std::path::Path;

/// A TOML basic string.
fn quoted(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("quote path")
}

/// The fake's socket address.
fn addr_of(fake: &Fake) -> SocketAddr {
    fake.url()
        .trim_start_matches("http://")
        .parse()
        .expect("fake address")
}

/// Certificates (made with `openssl`), or `None` when it is missing and `WHARF_SKIP_E2E=1`.
fn certs(dir: &Path, test: &str) -> Option<Certs> {
    if !crate::e2e::proc::on_path("openssl")
        && std::env::var("WHARF_SKIP_E2E").is_ok_and(|v| v == "1")
    {
        eprintln!("{test} SKIPPED: no openssl (WHARF_SKIP_E2E=1)");
        return None;
    }
    Some(make_certs(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_http_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(certs) = certs(tmp.path(), "a_redirect_from_https_to_http_is_refused") else {
        return;
    };
    let fake = Fake::start().await;
    let front: TlsFront = tls_front::start(&certs, addr_of(&fake)).await;
    let plain = fake.url();
    let extra = format!("ca_file = {}", quoted(&certs.ca_pem));
    let url = format!("https://127.0.0.1:{}", front.addr.port());
    let env = Env::with_fake_at(fake, &url, &extra).await;
    let blob = data(20_000, 143);
    let d = env.fake.put_blob(&blob);
    let (_, m) = env.fake.put_image("org/app", "v1", &[b"layer"]);

    // The same server, over plain http: a downgrade, refused, never asked.
    env.fake.redirect_next(
        "GET blob",
        1,
        &format!("{plain}/v2/org/app/blobs/{d}?X-Signature=secret"),
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_error(&r, 502, "UNAVAILABLE", "blob redirected to http");
    assert!(lossy(&r).contains("from https to http"), "{}", lossy(&r));
    assert!(!lossy(&r).contains("secret"), "no query in messages");
    env.assert_blob_not_cached(&d, "downgraded redirect").await;
    env.fake.redirect_next(
        "GET manifest",
        1,
        &format!("{plain}/v2/org/app/manifests/v1"),
    );
    let r = get(&env.manifest("org/app", "v1")).await;
    assert_error(&r, 502, "UNAVAILABLE", "manifest redirected to http");
    assert_eq!(
        (env.fake.count("GET blob"), env.fake.count("GET manifest")),
        (1, 1),
        "only the https requests reached the server; nothing retried"
    );

    // https to https (an absolute path keeps the scheme) is followed.
    env.fake
        .redirect_next("GET blob", 1, &format!("/v2/other/blobs/{d}"));
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice());
    assert!(get(&env.manifest("org/app", "v1")).await.bytes().as_ref() == m.as_slice());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_is_offered_only_to_the_upstreams_host() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let test = "the_client_certificate_is_offered_only_to_the_upstreams_host";
    let Some(certs) = certs(dir, test) else {
        return;
    };
    crate::e2e::mtls::make_client_cert(dir);
    // The "CDN" is another host name (`localhost`) with a certificate of its own.
    let ext = "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
               keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("cdn-ext.cnf"), ext).expect("write ext file");
    issue_cert(dir, "localhost", "cdn-key.pem", "cdn.pem", "cdn-ext.cnf");
    let cdn_certs = Certs {
        ca_pem: certs.ca_pem.clone(),
        server_pem: dir.join("cdn.pem"),
        server_key: dir.join("cdn-key.pem"),
        cert_dir: certs.cert_dir.clone(),
    };

    let fake = Fake::start().await;
    let cdn = Fake::start().await;
    // Both ask for a client certificate (optional), and record whether they got one.
    let front = tls_front::start_asking_client_certs(&certs, addr_of(&fake), &certs.ca_pem).await;
    let cdn_front =
        tls_front::start_asking_client_certs(&cdn_certs, addr_of(&cdn), &certs.ca_pem).await;
    let extra = format!(
        "ca_file = {}\nclient_cert_file = {}\nclient_key_file = {}",
        quoted(&certs.ca_pem),
        quoted(&dir.join("client.pem")),
        quoted(&dir.join("client-key.pem")),
    );
    let url = format!("https://127.0.0.1:{}", front.addr.port());
    let env = Env::with_fake_at(fake, &url, &extra).await;
    let blob = data(40_000, 144);
    let d = env.fake.put_blob(&blob);
    cdn.put_blob(&blob);
    env.fake.redirect_next(
        "GET blob",
        1,
        &format!(
            "https://localhost:{}/v2/org/app/blobs/{d}?X-Signature=abc",
            cdn_front.addr.port()
        ),
    );
    let r = get(&env.blob("org/app", &d)).await;
    assert_eq!(r.status, 200, "{}", lossy(&r));
    assert!(r.bytes().as_ref() == blob.as_slice(), "bytes from the CDN");
    assert_eq!(cdn.count("GET blob"), 1);

    let own = front.client_certs.lock().expect("lock").clone();
    let foreign = cdn_front.client_certs.lock().expect("lock").clone();
    assert!(
        !own.is_empty() && own.iter().all(|&c| c),
        "the upstream's host got the certificate: {own:?}"
    );
    assert!(
        !foreign.is_empty() && foreign.iter().all(|&c| !c),
        "the redirect host must not get the client certificate: {foreign:?}"
    );
    env.shutdown().await;
}

//! The Wharf half of the auth tests: pulls through Wharf with alice's, wrong and no
//! credentials, before and after the private image is cached, and raw checks of Wharf's
//! challenges, token endpoint and blob authorization.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

use super::super::proc;
use super::super::wharf::Wharf;
use super::{alice, wrong, AuthSetup, Pushed, PRIVATE, PUBLIC};

/// A plain HTTP/1.1 request; returns status, headers and the whole body.
pub(super) fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> (u16, http::HeaderMap, Bytes) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Empty::new()).expect("request");
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        (parts.status.as_u16(), parts.headers, body)
    })
}

fn basic(creds: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
}

/// A Wharf token for `scope`, anonymous or with `creds`: (status, token).
pub(super) fn wharf_token(wharf: &Wharf, scope: &str, creds: Option<&str>) -> (u16, String) {
    let url = format!("http://{}/token?service=wharf&scope={scope}", wharf.host());
    let headers: Vec<_> = creds
        .map(|c| ("authorization", basic(c)))
        .into_iter()
        .collect();
    let (status, _, body) = http("GET", &url, &headers);
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    (
        status,
        json["token"].as_str().unwrap_or_default().to_string(),
    )
}

/// Raw checks of Wharf's challenges and of its token endpoint refusing a wrong password.
fn check_challenges(wharf: &Wharf, logs: &dyn Fn() -> String) {
    let base = format!("http://{}", wharf.host());
    let (status, headers, _) = http("GET", &format!("{base}/v2/"), &[]);
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    let challenge = challenge.unwrap_or_default().to_string();
    assert_eq!(status, 401, "GET /v2/ without auth\n{}", logs());
    let realm = format!("Bearer realm=\"{base}/token\"");
    assert!(
        challenge.starts_with(&realm),
        "challenge {challenge:?}\n{}",
        logs()
    );
    assert!(
        challenge.contains("service=\"wharf\""),
        "challenge {challenge:?}"
    );

    let manifest = format!("{base}/v2/{PRIVATE}/manifests/v1");
    let (status, headers, _) = http("GET", &manifest, &[]);
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    assert_eq!(status, 401, "private manifest without auth\n{}", logs());
    let scope = format!("scope=\"repository:{PRIVATE}:pull\"");
    assert!(
        challenge.unwrap_or_default().contains(&scope),
        "challenge {challenge:?}"
    );

    let (status, _) = wharf_token(wharf, &format!("repository:{PRIVATE}:pull"), Some(&wrong()));
    assert_eq!(status, 401, "Wharf token for wrong password\n{}", logs());
}

/// Raw checks that an anonymous Wharf token gets public blobs but no cached private content.
fn check_blob_access(s: &AuthSetup, wharf: &Wharf, logs: &dyn Fn() -> String) {
    let base = format!("http://{}", wharf.host());

    let (status, token) = wharf_token(wharf, &format!("repository:{PUBLIC}:pull"), None);
    assert_eq!(status, 200, "anonymous Wharf token\n{}", logs());
    assert!(
        !token.is_empty(),
        "Wharf token response without token\n{}",
        logs()
    );
    let bearer = [("authorization", format!("Bearer {token}"))];
    let blob = |repo: &str, digest: &str| {
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        http("GET", &url, &bearer).0
    };
    // The public layer under the public name: fine (so the refusals below mean something).
    let status = blob(PUBLIC, &s.public.layers[0]);
    assert_eq!(status, 200, "public blob with anonymous token\n{}", logs());
    for layer in &s.private.layers {
        // A cached private blob asked for under the public name, or under its own.
        for repo in [PUBLIC, PRIVATE] {
            let status = blob(repo, layer);
            assert_ne!(
                status,
                200,
                "private blob {layer} served via {repo}\n{}",
                logs()
            );
        }
    }
    let url = format!(
        "{base}/v2/{PRIVATE}/manifests/{}",
        s.private.expected.digest
    );
    let (status, _, _) = http("GET", &url, &bearer);
    assert_ne!(
        status,
        200,
        "private manifest with anonymous token\n{}",
        logs()
    );
}

#[test]
fn e2e_auth_wharf_pull_through() {
    if !proc::tools_present("e2e_auth_wharf_pull_through") {
        return;
    }
    let s = AuthSetup::new();
    let wharf = Wharf::start(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem);
    let host = wharf.host();
    let logs = || s.logs(&wharf.proc.logs());
    let (alice, wrong) = (alice(), wrong());
    let tls = "--src-tls-verify=false";
    let anon = [tls, "--src-no-creds"];
    let with_alice = [tls, "--src-creds", &alice];
    let with_wrong = [tls, "--src-creds", &wrong];
    let by_tag = |p: &Pushed| format!("docker://{host}/{}:v1", p.repo);
    let by_digest = |p: &Pushed| format!("docker://{host}/{}@{}", p.repo, p.expected.digest);

    let rejected = s.token.rejected();
    check_challenges(&wharf, &logs);
    // Wharf asked the upstream's token service about the wrong password (and remembers the
    // refusal: the pull with it below is refused without asking again).
    let msg = "Wharf did not check the wrong password with the upstream's token service";
    assert_eq!(s.token.rejected(), rejected + 1, "{msg}\n{}", logs());
    // Public: anonymous is enough.
    s.pull_ok(
        &s.public,
        &by_tag(&s.public),
        &anon,
        "wharf-public-anon",
        &logs,
    );
    s.pull_ok(
        &s.public,
        &by_digest(&s.public),
        &anon,
        "wharf-public-anon-d",
        &logs,
    );

    // Private, nothing cached yet: only alice.
    let private = by_tag(&s.private);
    s.pull_refused(&private, &anon, "wharf-private-anon", &logs);
    s.pull_refused(&private, &with_wrong, "wharf-private-wrong", &logs);
    let msg = "a refused password was checked with the upstream again";
    assert_eq!(s.token.rejected(), rejected + 1, "{msg}\n{}", logs());
    let authenticated = s.token.authenticated();
    s.pull_ok(
        &s.private,
        &private,
        &with_alice,
        "wharf-private-alice",
        &logs,
    );
    let msg = "Wharf did not fetch upstream with alice's credentials";
    assert!(s.token.authenticated() > authenticated, "{msg}\n{}", logs());

    // Private, cached now: still only alice, by tag and by digest.
    for (source, how) in [
        (by_tag(&s.private), "tag"),
        (by_digest(&s.private), "digest"),
    ] {
        s.pull_refused(&source, &anon, &format!("cached-anon-{how}"), &logs);
        s.pull_refused(&source, &with_wrong, &format!("cached-wrong-{how}"), &logs);
        let label = format!("cached-alice-{how}");
        s.pull_ok(&s.private, &source, &with_alice, &label, &logs);
    }
    check_blob_access(&s, &wharf, &logs);

    // Again: everything from Wharf's cache, no upstream blob GET.
    let reqs = s.upstream.settled_requests();
    let mark = reqs.len();
    let first_gets = reqs.iter().filter(|r| r.is_blob_get()).count();
    s.pull_ok(
        &s.private,
        &private,
        &with_alice,
        "again-private-alice",
        &logs,
    );
    s.pull_ok(
        &s.public,
        &by_tag(&s.public),
        &anon,
        "again-public-anon",
        &logs,
    );
    let reqs = s.upstream.settled_requests();
    let gets: Vec<_> = reqs[mark..].iter().filter(|r| r.is_blob_get()).collect();
    assert!(
        gets.is_empty(),
        "second pulls made upstream blob GETs: {gets:#?}"
    );
    eprintln!(
        "e2e auth via Wharf: {first_gets} upstream blob GETs on the first pulls, 0 on the \
         second; token server: {} anonymous, {} authenticated, {} refused",
        s.token.anonymous(),
        s.token.authenticated(),
        s.token.rejected()
    );
}

//! Client authentication and per-repository authorization, against a fake upstream that
//! authenticates like Docker Hub (`support::fake`): `pub/app` is public, `private/app` is
//! pullable by alice only, bob is a valid user without access, and a shared layer is in both.
//!
//! - here: the fixtures, the challenges and the `/token` endpoint;
//! - `matrix`: who may pull what, before and after the content is cached;
//! - `offline`: an unreachable upstream and `offline_grace`;
//! - `tokens`: one upstream token per (credentials, scope), secrets kept out of the logs.

mod binding;
mod injection;
mod matrix;
mod offline;
mod tokens;

use crate::support::{self, basic, raw, request_as, send, Fake, Resp, Session, ALICE, BOB};
use wharf::app::Running;

pub const WRONG: (&str, &str) = ("alice", "wrongpw-s3cret");

/// One image in the fake: its manifest and every blob (config first).
pub struct Img {
    pub repo: &'static str,
    pub tag: &'static str,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Img {
    pub fn put(fake: &Fake, repo: &'static str, tag: &'static str, layers: &[&[u8]]) -> Img {
        let (digest, manifest) = fake.put_image(repo, tag, layers);
        let m: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
        let config = m["config"]["digest"].as_str().expect("config").to_string();
        let mut blobs = vec![(
            config.clone(),
            fake.blob_bytes(&config).expect("config blob"),
        )];
        blobs.extend(layers.iter().map(|l| (support::digest_of(l), l.to_vec())));
        Img {
            repo,
            tag,
            digest,
            manifest,
            blobs,
        }
    }

    /// (path under `/v2/<repo>/`, content): the manifest by tag and by digest, every blob.
    pub fn parts(&self) -> Vec<(String, Vec<u8>)> {
        let mut v = vec![
            (format!("manifests/{}", self.tag), self.manifest.clone()),
            (format!("manifests/{}", self.digest), self.manifest.clone()),
        ];
        v.extend(
            self.blobs
                .iter()
                .map(|(d, b)| (format!("blobs/{d}"), b.clone())),
        );
        v
    }
}

/// A fake with token auth, a public and a private image, and a Wharf in front.
pub struct World {
    pub fake: Fake,
    pub w: Running,
    pub public: Img,
    pub private: Img,
    pub shared: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl World {
    /// `top` is top-level config (e.g. an `[auth]` table); `extra` goes in `[[upstream]]`.
    pub async fn start(top: &str, extra: &str) -> World {
        let fake = Fake::start_with_auth().await;
        let shared = support::data(20_000, 100);
        let public = Img::put(
            &fake,
            "pub/app",
            "v1",
            &[&support::data(30_000, 101), &shared],
        );
        let private = Img::put(
            &fake,
            "private/app",
            "v1",
            &[
                &support::data(40_000, 102),
                &support::data(50_000, 103),
                &shared,
            ],
        );
        let dir = tempfile::tempdir().expect("tmp");
        let w = support::wharf_with(dir.path(), "up.test", &fake.url(), extra, top).await;
        World {
            fake,
            w,
            public,
            private,
            shared,
            _dir: dir,
        }
    }

    pub fn url(&self, repo: &str, part: &str) -> String {
        format!("http://{}/v2/{repo}/{part}", self.w.addr)
    }

    pub async fn shutdown(self) {
        self.w.shutdown().await;
    }
}

/// The kinds of client the matrix runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The token dance without credentials.
    Anonymous,
    /// The token dance with alice's credentials.
    Alice,
    /// `Authorization: Basic` (alice) on the request itself.
    AliceBasic,
    /// The token dance as bob, a valid user without access to `private/*`.
    Bob,
    /// The token dance with alice's name and a wrong password.
    WrongPassword,
    /// `Authorization: Basic` with a wrong password on the request itself.
    WrongBasic,
}

impl Who {
    pub async fn request(self, method: &str, url: &str) -> Resp {
        let direct = |(u, p): (&str, &str)| basic(u, p);
        match self {
            Who::Anonymous => request_as(method, url, &[], None).await,
            Who::Alice => request_as(method, url, &[], Some(ALICE)).await,
            Who::Bob => request_as(method, url, &[], Some(BOB)).await,
            Who::WrongPassword => request_as(method, url, &[], Some(WRONG)).await,
            Who::AliceBasic => raw(method, url, &[("authorization", &direct(ALICE))]).await,
            Who::WrongBasic => raw(method, url, &[("authorization", &direct(WRONG))]).await,
        }
    }

    pub async fn get(self, url: &str) -> Resp {
        self.request("GET", url).await
    }
}

/// `r` is a 200 of exactly `want`.
pub fn assert_served(r: &Resp, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: status (body {:?})", lossy(r));
    assert!(r.bytes().as_ref() == want, "{what}: wrong content");
}

/// `r` is a refusal with `status` and the OCI code `code`, and does not carry `content`.
pub fn assert_refused(r: &Resp, status: u16, code: &str, content: &[u8], what: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{what}: status (body {:?})",
        lossy(r)
    );
    assert_no_content(r, content, what);
    assert_eq!(r.error_code(), code, "{what}: error code");
}

/// `r` is a 401 or 403 and does not carry `content`.
pub fn assert_refused_auth(r: &Resp, content: &[u8], what: &str) {
    assert!(
        matches!(r.status.as_u16(), 401 | 403),
        "{what}: want 401 or 403, got {} (body {:?})",
        r.status,
        lossy(r)
    );
    assert_no_content(r, content, what);
}

pub fn assert_no_content(r: &Resp, content: &[u8], what: &str) {
    if let Ok(b) = &r.body {
        assert!(
            b.is_empty() || !b.windows(content.len().min(b.len())).any(|w| w == content),
            "{what}: the body carries the content"
        );
    }
}

fn lossy(r: &Resp) -> String {
    match &r.body {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(e) => format!("<error: {e}>"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_and_repository_requests_are_challenged() {
    let fake = Fake::start_with_auth().await;
    fake.put_image("pub/app", "v1", &[b"layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let realm = format!("http://{}/token", w.addr);
    let base = format!("http://{}/v2/", w.addr);

    let r = raw("GET", &base, &[]).await;
    assert_eq!(r.status, 401, "GET /v2/ without auth");
    let ch = support::client::parse_bearer(r.header("www-authenticate").unwrap_or(""));
    let want = support::client::Bearer {
        realm: realm.clone(),
        service: Some("wharf".into()),
        scope: None,
    };
    assert_eq!(
        ch.as_ref(),
        Some(&want),
        "{:?}",
        r.header("www-authenticate")
    );
    // The realm follows the Host the client used.
    let r = raw("GET", &base, &[("host", "mirror.example:5000")]).await;
    let ch = support::client::parse_bearer(r.header("www-authenticate").unwrap_or(""));
    assert_eq!(
        ch.map(|c| c.realm),
        Some("http://mirror.example:5000/token".to_string())
    );

    for (path, scope) in [
        ("pub/app/manifests/v1", "repository:pub/app:pull"),
        (
            "up.test/pub/app/manifests/v1",
            "repository:up.test/pub/app:pull",
        ),
        (
            &format!("pub/app/blobs/{}", support::digest_of(b"layer")) as &str,
            "repository:pub/app:pull",
        ),
        ("pub/app/tags/list", "repository:pub/app:pull"),
    ] {
        let url = format!("{base}{path}");
        for auth in [None, Some("Bearer not-a-wharf-token")] {
            let h: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            let r = raw("GET", &url, &h).await;
            assert_eq!(r.status, 401, "{path} with {auth:?}");
            assert_eq!(r.error_code(), "UNAUTHORIZED", "{path}");
            let ch = support::client::parse_bearer(r.header("www-authenticate").unwrap_or(""));
            let want = support::client::Bearer {
                realm: realm.clone(),
                service: Some("wharf".into()),
                scope: Some(scope.into()),
            };
            assert_eq!(ch, Some(want), "{path}: {:?}", r.header("www-authenticate"));
        }
    }
    assert_eq!(fake.total(), 0, "a challenge needs no upstream request");

    // With a Wharf token the base endpoint answers.
    let s = Session::anonymous();
    let r = s.get(&base).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.token_requests(), 1);
    let s = Session::user(ALICE.0, ALICE.1);
    assert_eq!(s.get(&base).await.status, 200);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_answers_get_and_post_forms() {
    let world = World::start("", "").await;
    let realm = format!("http://{}/token", world.w.addr);
    let check = |r: &Resp, what: &str| -> String {
        assert_eq!(
            r.status,
            200,
            "{what}: {:?}",
            String::from_utf8_lossy(r.bytes())
        );
        let v = r.json();
        let t = v["token"].as_str().expect("token").to_string();
        assert!(!t.is_empty(), "{what}");
        assert_eq!(v["access_token"].as_str(), Some(t.as_str()), "{what}");
        assert!(
            v["expires_in"].as_u64().is_some_and(|n| n > 0),
            "{what}: {v}"
        );
        assert!(
            v["issued_at"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: {v}"
        );
        t
    };
    // GET: anonymous, scope plain, percent-encoded, repeated.
    for q in [
        "service=wharf&scope=repository:pub/app:pull",
        "service=wharf&scope=repository%3Apub%2Fapp%3Apull",
        "service=wharf&scope=repository:pub/app:pull&scope=repository:up.test/pub/app:pull",
        "service=wharf",
    ] {
        let r = raw("GET", &format!("{realm}?{q}"), &[]).await;
        let t = check(&r, q);
        if q.contains("scope") {
            let bearer = format!("Bearer {t}");
            let url = world.url("pub/app", "manifests/v1");
            let r = raw("GET", &url, &[("authorization", &bearer)]).await;
            assert_served(&r, &world.public.manifest, q);
        }
    }
    // GET with alice's Basic credentials, then the private manifest with that token.
    let q = "service=wharf&scope=repository%3Aprivate%2Fapp%3Apull";
    let auth = basic(ALICE.0, ALICE.1);
    let r = raw("GET", &format!("{realm}?{q}"), &[("authorization", &auth)]).await;
    let t = check(&r, "GET as alice");
    let bearer = format!("Bearer {t}");
    let r = raw(
        "GET",
        &world.url("private/app", "manifests/v1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_served(
        &r,
        &world.private.manifest,
        "private manifest with alice's GET token",
    );
    // POST (OAuth2 password grant), then the private manifest and a blob with that token.
    let form = format!(
        "grant_type=password&username=alice&password={}&service=wharf&scope={}&client_id=wharf-tests",
        ALICE.1,
        support::client::query_escape("repository:private/app:pull")
    );
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let r = send("POST", &realm, &ct, form.into()).await;
    let t = check(&r, "POST as alice");
    let bearer = format!("Bearer {t}");
    let h = [("authorization", bearer.as_str())];
    let r = raw("GET", &world.url("private/app", "manifests/v1"), &h).await;
    assert_served(
        &r,
        &world.private.manifest,
        "private manifest with alice's POST token",
    );
    let (d, b) = &world.private.blobs[1];
    let r = raw("GET", &world.url("private/app", &format!("blobs/{d}")), &h).await;
    assert_served(&r, b, "private blob with alice's POST token");
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_at_the_token_endpoint() {
    let world = World::start("", "").await;
    let realm = format!("http://{}/token", world.w.addr);
    let q = "service=wharf&scope=repository:private/app:pull";
    let refused = |r: &Resp, what: &str| {
        assert_eq!(
            r.status,
            401,
            "{what}: {:?}",
            String::from_utf8_lossy(r.bytes())
        );
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}");
        let v = r.json();
        assert!(
            v["token"].is_null() && v["access_token"].is_null(),
            "{what}: {v}"
        );
    };
    for (u, p) in [WRONG, ("nobody", "x")] {
        let auth = basic(u, p);
        let r = raw("GET", &format!("{realm}?{q}"), &[("authorization", &auth)]).await;
        refused(&r, &format!("GET as {u}"));
        let form = format!(
            "grant_type=password&username={u}&password={p}&service=wharf&scope=repository:private/app:pull&client_id=t"
        );
        let ct = [("content-type", "application/x-www-form-urlencoded")];
        let r = send("POST", &realm, &ct, form.into()).await;
        refused(&r, &format!("POST as {u}"));
    }
    assert!(
        world.fake.token_requests(Some("alice")) >= 1,
        "credentials are checked against the upstream's token service"
    );
    world.shutdown().await;
}

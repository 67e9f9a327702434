//! Authentication end to end: `docker-registry` with `auth: token` backed by our own token
//! server ([`super::token_server`]), two images (`public/app:v1`, anonymous may pull;
//! `private/app:v1`, only alice may), checked directly here and through Wharf in
//! `pull_through`, and the events Wharf sends about them in `notify`.

mod injection;
mod notify;
mod pull_through;

use std::path::PathBuf;

use serde_json::Value;

use super::images::{Layout, Rng};
use super::proc;
use super::skopeo::{assert_same, check_dir, expected, Expected, Skopeo};
use super::token_server::{self, TokenServer, ISSUER, PASSWORD, SERVICE, USER};
use super::upstream::{self, Certs, Upstream};

const PUBLIC: &str = "public/app";
const PRIVATE: &str = "private/app";

/// One image as pushed: its upstream truth and its layer digests.
struct Pushed {
    repo: &'static str,
    expected: Expected,
    layers: Vec<String>,
}

/// Certificates, token server, registry with both images pushed by alice. Fields drop in
/// order: the registry before the dir.
struct AuthSetup {
    upstream: Upstream,
    token: TokenServer,
    skopeo: Skopeo,
    certs: Certs,
    public: Pushed,
    private: Pushed,
    dir: tempfile::TempDir,
}

pub(super) fn alice() -> String {
    format!("{USER}:{PASSWORD}")
}

pub(super) fn wrong() -> String {
    format!("{USER}:wrong")
}

/// The layer digests of the manifest `desc` in `layout`.
fn layers_of(layout: &Layout, desc: &Value) -> Vec<String> {
    let digest = desc["digest"].as_str().expect("manifest digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.dir.join("blobs/sha256").join(hex)).expect("manifest");
    let manifest: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    let digests = layers.iter().map(|l| l["digest"].as_str().expect("digest"));
    digests.map(str::to_string).collect()
}

/// Certificates, the token server, and `docker-registry` over HTTPS trusting its tokens, in
/// `dir` (no image pushed yet).
pub(super) fn start_registry(dir: &std::path::Path) -> (Certs, TokenServer, Upstream) {
    let certs = upstream::make_certs(dir);
    let key = token_server::make_signing_key(dir);
    let mut token = TokenServer::start(&key);
    token.serve_tls(&certs);
    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
         rootcertbundle: {bundle}\n",
        realm = token.realm(),
        bundle = key.cert_pem.display(),
    );
    let upstream = Upstream::start_with(dir, &certs, &auth);
    (certs, token, upstream)
}

impl AuthSetup {
    fn new() -> AuthSetup {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-auth-")
            .tempdir()
            .expect("tempdir");
        let (certs, token, upstream) = start_registry(dir.path());
        let skopeo = Skopeo::new(dir.path());
        let mut rng = Rng::from_entropy();
        let cert_dir = certs.cert_dir.to_string_lossy().into_owned();
        let alice = alice();
        let mut push = |repo: &'static str, sizes: &[usize]| {
            let layout = Layout::new(
                &dir.path()
                    .join(format!("layout-{}", repo.replace('/', "-"))),
            );
            let desc = layout.image(&mut rng, "amd64", sizes);
            layout.finish(&desc, "v1");
            let src = format!("oci:{}:v1", layout.dir.display());
            let dest = format!("docker://{}/{repo}:v1", upstream.host());
            let args = ["copy", "--dest-cert-dir", &cert_dir, "--dest-creds", &alice];
            if let Err(e) = skopeo.try_run(&[&args[..], &[&src, &dest]].concat()) {
                panic!(
                    "push {repo} failed: {e}\n{}\n{}",
                    token.log(),
                    upstream.proc.logs()
                );
            }
            let flags = ["--cert-dir", &cert_dir, "--creds", &alice];
            let expected = expected(&skopeo, &flags, &upstream.host(), repo, "v1");
            let layers = layers_of(&layout, &desc);
            Pushed {
                repo,
                expected,
                layers,
            }
        };
        let public = push(PUBLIC, &[64 << 10, 3000]);
        let private = push(PRIVATE, &[96 << 10, 5000]);
        AuthSetup {
            upstream,
            token,
            skopeo,
            certs,
            public,
            private,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `skopeo copy <flags> <source> dir:<fresh dir named label>`; Ok: what it wrote.
    fn try_pull(&self, source: &str, flags: &[&str], label: &str) -> Result<PathBuf, String> {
        let dest = self.path(&format!("pull-{label}"));
        let dest_ref = format!("dir:{}", dest.display());
        let args = [&["copy"], flags, &[source, &dest_ref]].concat();
        self.skopeo.try_run(&args).map(|_| dest)
    }

    /// A pull that must succeed and match `image`'s upstream truth.
    fn pull_ok(
        &self,
        image: &Pushed,
        source: &str,
        flags: &[&str],
        label: &str,
        logs: &dyn Fn() -> String,
    ) {
        match self.try_pull(source, flags, label) {
            Ok(dest) => assert_same(&check_dir(&dest), &image.expected, label),
            Err(e) => panic!("pull {label} failed: {e}\n{}", logs()),
        }
    }

    /// A pull that must fail.
    fn pull_refused(&self, source: &str, flags: &[&str], label: &str, logs: &dyn Fn() -> String) {
        if let Ok(dest) = self.try_pull(source, flags, label) {
            panic!(
                "pull {label} of {source} succeeded into {}\n{}",
                dest.display(),
                logs()
            );
        }
    }

    /// Log tails of the token server and the registry (and `extra`).
    fn logs(&self, extra: &str) -> String {
        let registry = std::fs::read_to_string(&self.upstream.proc.stderr).unwrap_or_default();
        let tail: Vec<&str> = registry.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let registry = tail.join("\n");
        format!(
            "{extra}\n{}\n----- registry stderr (tail) -----\n{registry}",
            self.token.log()
        )
    }
}

#[test]
fn e2e_auth_registry_with_token_server() {
    if !proc::tools_present("e2e_auth_registry_with_token_server") {
        return;
    }
    let s = AuthSetup::new();
    let cert_dir = s.certs.cert_dir.to_string_lossy().into_owned();
    let host = s.upstream.host();
    let logs = || s.logs("");
    let (alice, wrong) = (alice(), wrong());
    let anon = ["--src-cert-dir", &cert_dir, "--src-no-creds"];
    let with_alice = ["--src-cert-dir", &cert_dir, "--src-creds", &alice];
    let with_wrong = ["--src-cert-dir", &cert_dir, "--src-creds", &wrong];
    let public = format!("docker://{host}/{PUBLIC}:v1");
    let private = format!("docker://{host}/{PRIVATE}:v1");
    let private_digest = format!("docker://{host}/{PRIVATE}@{}", s.private.expected.digest);

    // The pushes were alice's: the token server saw her, and the registry took the tokens.
    assert!(
        s.token.authenticated() > 0,
        "no authenticated token request\n{}",
        logs()
    );
    let anonymous = s.token.anonymous();
    s.pull_ok(&s.public, &public, &anon, "direct-public-anon", &logs);
    assert!(
        s.token.anonymous() > anonymous,
        "anonymous pull without a token\n{}",
        logs()
    );
    s.pull_refused(&private, &anon, "direct-private-anon", &logs);
    s.pull_refused(&private_digest, &anon, "direct-private-anon-digest", &logs);
    let rejected = s.token.rejected();
    s.pull_refused(&private, &with_wrong, "direct-private-wrong", &logs);
    assert!(
        s.token.rejected() > rejected,
        "wrong password not refused\n{}",
        logs()
    );
    s.pull_ok(
        &s.private,
        &private,
        &with_alice,
        "direct-private-alice",
        &logs,
    );
    s.pull_ok(
        &s.private,
        &private_digest,
        &with_alice,
        "direct-private-alice-digest",
        &logs,
    );
    // Refusals are logged as warnings, not as "response completed" lines. Anonymous
    // tokens for the private repository were valid but had no access to it.
    let log = std::fs::read_to_string(&s.upstream.proc.stderr).unwrap_or_default();
    let refused = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let scope = "error authorizing context: insufficient scope";
    let denied = log
        .lines()
        .filter(|l| l.contains(scope) && l.contains(PRIVATE))
        .count();
    assert!(
        denied > 0,
        "no insufficient-scope refusal logged\n{}",
        logs()
    );
    let invalid = refused("invalid token");
    assert_eq!(invalid, 0, "the registry rejected our JWTs\n{}", logs());
    let required = refused("error authorizing context: authorization token required");
    eprintln!(
        "e2e auth: token server issued {} anonymous and {} authenticated tokens, refused {}; \
         registry refused {required} requests without a token and {denied} with an \
         insufficient one",
        s.token.anonymous(),
        s.token.authenticated(),
        s.token.rejected()
    );
}

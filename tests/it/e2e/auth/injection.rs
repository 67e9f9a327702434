//! Issue 18, finding 1 against the real `docker-registry`: a manifest pushed to a public
//! repository with reference fields its media type does not define (extra `blobs` in an OCI
//! image manifest, `fsLayers` in a Docker schema 2 manifest, `manifests` in an image manifest
//! where the registry takes it) naming a private manifest and private layers. The registry
//! validates only the fields of the declared type, so it accepts them; Wharf must refuse the
//! document and never serve the private digests under the public repository.

use serde_json::{json, Value};
use std::process::Command;

use super::super::proc;
use super::super::token_server::{PASSWORD, SERVICE, USER};
use super::super::wharf::Wharf;
use super::pull_through::{http, wharf_token};
use super::{alice, AuthSetup, PRIVATE, PUBLIC};

/// `curl` against the registry or its token service (HTTPS with the test CA): status, body.
fn curl(s: &AuthSetup, args: &[&str]) -> (u16, Vec<u8>) {
    let ca = s.certs.ca_pem.to_string_lossy().into_owned();
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &ca, "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let status = std::str::from_utf8(&body[nl + 1..])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    body.truncate(nl);
    (status, body)
}

/// A registry token for alice with pull and push on `repo`.
fn alice_token(s: &AuthSetup, repo: &str) -> String {
    let url = format!(
        "{}?service={SERVICE}&scope=repository:{repo}:pull,push",
        s.token.realm()
    );
    let (status, body) = curl(s, &["-u", &format!("{USER}:{PASSWORD}"), &url]);
    assert_eq!(status, 200, "token: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

/// PUTs `manifest` as `repo:tag` with `media_type`; the registry's status.
fn push(
    s: &AuthSetup,
    token: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    manifest: &Value,
) -> u16 {
    let url = format!("{}/v2/{repo}/manifests/{tag}", s.upstream.url());
    let body = serde_json::to_string(manifest).expect("json");
    let (auth, ct) = (
        format!("Authorization: Bearer {token}"),
        format!("Content-Type: {media_type}"),
    );
    let (status, out) = curl(
        s,
        &[
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            &ct,
            "--data-binary",
            &body,
            &url,
        ],
    );
    eprintln!(
        "push {repo}:{tag}: {status} {}",
        String::from_utf8_lossy(&out)
    );
    status
}

#[test]
fn e2e_injected_manifest_fields_never_reach_private_content() {
    if !proc::tools_present("e2e_injected_manifest_fields_never_reach_private_content") {
        return;
    }
    let s = AuthSetup::new();
    let wharf = Wharf::start(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem);
    let logs = || s.logs(&wharf.proc.logs());
    let host = wharf.host();
    // Alice pulls the private image through Wharf: its manifest and layers are cached now.
    let alice = alice();
    let with_alice = ["--src-tls-verify=false", "--src-creds", alice.as_str()];
    let private_ref = format!("docker://{host}/{PRIVATE}:v1");
    s.pull_ok(
        &s.private,
        &private_ref,
        &with_alice,
        "alice-private",
        &logs,
    );

    // The public image's manifest, to build the injected ones on (its config and layers are
    // in the public repository, so the registry accepts them).
    let token = alice_token(&s, PUBLIC);
    let url = format!("{}/v2/{PUBLIC}/manifests/v1", s.upstream.url());
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = curl(&s, &["-H", accept, "-H", &auth, &url]);
    assert_eq!(status, 200, "public manifest");
    let base: Value = serde_json::from_slice(&body).expect("manifest JSON");
    let private_digest = s.private.expected.digest.clone();
    let layer = |d: &str| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 1});

    let mut with_blobs = base.clone();
    with_blobs["blobs"] = json!([layer(&s.private.layers[0]), layer(&s.private.layers[1])]);
    let mut with_manifests = base.clone();
    with_manifests["manifests"] =
        json!([{"mediaType": base["mediaType"], "digest": private_digest, "size": 1}]);
    let mut schema2 = base.clone();
    schema2["mediaType"] = json!("application/vnd.docker.distribution.manifest.v2+json");
    schema2["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    for l in schema2["layers"].as_array_mut().expect("layers") {
        l["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    schema2["fsLayers"] = json!(s
        .private
        .layers
        .iter()
        .map(|d| json!({"blobSum": d}))
        .collect::<Vec<_>>());
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let shapes = [
        ("evil-blobs", oci, &with_blobs),
        (
            "evil-fslayers",
            "application/vnd.docker.distribution.manifest.v2+json",
            &schema2,
        ),
        ("evil-manifests", oci, &with_manifests),
    ];
    let mut accepted = Vec::new();
    for (tag, media_type, m) in shapes {
        if push(&s, &token, PUBLIC, tag, media_type, m) == 201 {
            accepted.push(tag);
        }
    }
    // The registry takes the fields it does not validate (a free account anywhere can).
    assert!(
        accepted.contains(&"evil-blobs") && accepted.contains(&"evil-fslayers"),
        "{accepted:?}\n{}",
        logs()
    );

    let base_url = format!("http://{host}");
    let (status, anon) = wharf_token(&wharf, &format!("repository:{PUBLIC}:pull"), None);
    assert_eq!(status, 200);
    let bearer = [("authorization", format!("Bearer {anon}"))];
    for tag in &accepted {
        let url = format!("{base_url}/v2/{PUBLIC}/manifests/{tag}");
        let (status, _, body) = http("GET", &url, &bearer);
        assert_eq!(
            status,
            502,
            "{tag}: {}\n{}",
            String::from_utf8_lossy(&body),
            logs()
        );
        let code: Value = serde_json::from_slice(&body).expect("error envelope");
        assert_eq!(code["errors"][0]["code"], "MANIFEST_INVALID", "{tag}");
    }
    // Nothing private under the public name, by GET or HEAD.
    let mut asked = vec![format!("manifests/{private_digest}")];
    asked.extend(s.private.layers.iter().map(|l| format!("blobs/{l}")));
    for path in &asked {
        for method in ["GET", "HEAD"] {
            let url = format!("{base_url}/v2/{PUBLIC}/{path}");
            let (status, _, _) = http(method, &url, &bearer);
            assert!(
                matches!(status, 401 | 403 | 404),
                "{method} {path}: {status}\n{}",
                logs()
            );
        }
    }
    // The legitimate public image still pulls anonymously.
    let anon_flags = ["--src-tls-verify=false", "--src-no-creds"];
    let public_ref = format!("docker://{host}/{PUBLIC}:v1");
    s.pull_ok(&s.public, &public_ref, &anon_flags, "anon-public", &logs);
}

//! Pushing through Wharf to the real `docker-registry` behind token auth (the token server of
//! `auth`): `skopeo copy` to `docker://<wharf>/registry.test/...` arrives upstream with the same
//! digests, and the next pull through Wharf makes no upstream blob GET; wrong credentials and
//! an upstream without `allow_push` are refused. Then the referrers tag-schema fallback
//! (Distribution 2.8 has no referrers API): an artifact with a `subject` and the
//! `sha256-<hex>` index pushed through Wharf as cosign or oras would, listed by
//! `GET /v2/.../referrers/<digest>` through Wharf.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::auth::{alice, start_registry, wrong};
use super::images::{digest_of, Layout, Rng, OCI_INDEX, OCI_MANIFEST};
use super::proc;
use super::skopeo::{assert_same, check_dir, expected, Skopeo};
use super::wharf::{Wharf, UPSTREAM_NAME};

const REPO: &str = "e2e/pushed";
const READONLY: &str = "readonly.test";
const SIG: &str = "application/vnd.example.signature.v1";

/// One HTTP/1.1 request with a body: status, headers, body.
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Bytes) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        (parts.status.as_u16(), parts.headers, body)
    })
}

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A raw registry client of Wharf with alice's Wharf token.
struct Raw {
    base: String,
    bearer: String,
}

impl Raw {
    fn new(wharf: &Wharf, name: &str) -> Raw {
        use base64::Engine;
        let base = format!("http://{}", wharf.host());
        let url = format!("{base}/token?service=wharf&scope=repository:{name}:pull,push");
        let creds = base64::engine::general_purpose::STANDARD.encode(alice());
        let (status, _, body) = http(
            "GET",
            &url,
            &[("authorization", format!("Basic {creds}"))],
            vec![],
        );
        assert_eq!(
            status,
            200,
            "Wharf token: {}",
            String::from_utf8_lossy(&body)
        );
        let token: Value = serde_json::from_slice(&body).expect("token JSON");
        let token = token["token"].as_str().expect("token").to_string();
        Raw {
            base,
            bearer: format!("Bearer {token}"),
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut h = vec![("authorization", self.bearer.clone())];
        if let Some(ct) = ct {
            h.push(("content-type", ct.to_string()));
        }
        http(method, url, &h, body)
    }

    /// A monolithic blob upload: `POST`, then `PUT ?digest=` to the `Location`.
    fn blob(&self, name: &str, data: &[u8], logs: &dyn Fn() -> String) {
        let url = format!("{}/v2/{name}/blobs/uploads/", self.base);
        let (status, h, _) = self.send("POST", &url, None, vec![]);
        assert_eq!(status, 202, "POST {url}\n{}", logs());
        let loc = header(&h, "location");
        assert!(
            loc.starts_with(&format!("/v2/{name}/blobs/uploads/")),
            "{loc}"
        );
        let put = format!("{}{loc}&digest={}", self.base, digest_of(data));
        let (status, _, body) =
            self.send("PUT", &put, Some("application/octet-stream"), data.to_vec());
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 201, "PUT {put}: {body}\n{}", logs());
    }

    fn manifest(
        &self,
        name: &str,
        reference: &str,
        ct: &str,
        bytes: &[u8],
        logs: &dyn Fn() -> String,
    ) {
        let url = format!("{}/v2/{name}/manifests/{reference}", self.base);
        let (status, h, body) = self.send("PUT", &url, Some(ct), bytes.to_vec());
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 201, "PUT {url}: {body}\n{}", logs());
        assert_eq!(header(&h, "docker-content-digest"), digest_of(bytes));
    }
}

/// The value of `wharf_upload_tees_total{result}` for the test's upstream.
fn tees(wharf: &Wharf, result: &str) -> u64 {
    let url = format!("http://127.0.0.1:{}/metrics", wharf.admin_port);
    let (_, _, body) = http("GET", &url, &[], vec![]);
    let text = String::from_utf8_lossy(&body).into_owned();
    let line = text.lines().find(|l| {
        l.starts_with("wharf_upload_tees_total{")
            && l.contains(&format!("result=\"{result}\""))
            && l.contains(&format!("upstream=\"{UPSTREAM_NAME}\""))
    });
    let value = line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    value.unwrap_or_else(|| panic!("no upload tee metric for {result}:\n{text}")) as u64
}

#[test]
fn e2e_push_through_wharf_and_referrers_tag_schema() {
    if !proc::tools_present("e2e_push_through_wharf_and_referrers_tag_schema") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("wharf-e2e-push-")
        .tempdir()
        .expect("tempdir");
    let (certs, token, upstream) = start_registry(dir.path());
    let quoted = |s: &str| serde_json::to_string(s).expect("quote");
    // The same registry a second time, under a name without allow_push.
    let keys = format!(
        "tag_ttl = \"1h\"\nallow_push = true\n\n[[upstream]]\nname = \"{READONLY}\"\nurl = {}\nca_file = {}\n",
        quoted(&upstream.url()),
        quoted(&certs.ca_pem.to_string_lossy()),
    );
    let wharf = Wharf::start_with(dir.path(), &upstream.url(), &certs.ca_pem, &keys, &[]);
    let host = wharf.host();
    let skopeo = Skopeo::new(dir.path());
    let logs = || {
        let registry = std::fs::read_to_string(&upstream.proc.stderr).unwrap_or_default();
        let tail: Vec<&str> = registry.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}\n{}\n----- registry stderr (tail) -----\n{}",
            wharf.proc.logs(),
            token.log(),
            tail.join("\n")
        )
    };
    let (alice, wrong) = (alice(), wrong());
    let cert_dir = certs.cert_dir.to_string_lossy().into_owned();
    let upstream_flags = ["--cert-dir", cert_dir.as_str(), "--creds", alice.as_str()];

    // An image, pushed through Wharf with skopeo.
    let mut rng = Rng::from_entropy();
    let layout = Layout::new(&dir.path().join("layout-push"));
    let desc = layout.image(&mut rng, "amd64", &[3 << 20, 40 << 10]);
    layout.finish(&desc, "v1");
    let image_digest = desc["digest"].as_str().expect("digest").to_string();
    let src = format!("oci:{}:v1", layout.dir.display());
    let name = format!("{UPSTREAM_NAME}/{REPO}");
    let dest = format!("docker://{host}/{name}:v1");
    let push = |creds: &str, dest: &str| {
        let args = [
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            src.as_str(),
            dest,
        ];
        skopeo.try_run(&args)
    };
    if let Err(e) = push(&alice, &dest) {
        panic!("push through Wharf failed: {e}\n{}", logs());
    }
    // Upstream: the same digests, uploaded in PATCHes then a PUT, through Wharf.
    let truth = expected(&skopeo, &upstream_flags, &upstream.host(), REPO, "v1");
    assert_eq!(
        truth.digest, image_digest,
        "the manifest arrived byte for byte"
    );
    assert_eq!(truth.blobs, 3, "config and two layers");
    let reqs = upstream.settled_requests();
    let patches = reqs
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.contains(&format!("/v2/{REPO}/blobs/uploads/")))
        .count();
    assert!(
        patches >= 3,
        "chunked uploads (PATCH) upstream: {patches}\n{}",
        logs()
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "PUT" && r.uri.starts_with(&format!("/v2/{REPO}/manifests/v1"))),
        "manifest PUT upstream"
    );
    assert_eq!(
        tees(&wharf, "committed"),
        3,
        "every blob teed into the cache\n{}",
        logs()
    );
    assert_eq!(tees(&wharf, "digest_mismatch"), 0);

    // The next pull through Wharf: no upstream blob GET (nor anything else for the blobs).
    let mark = upstream.settled_requests().len();
    let pulled = dir.path().join("pull-after-push");
    let src_ref = format!("docker://{host}/{name}:v1");
    let dest_ref = format!("dir:{}", pulled.display());
    let args = [
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        alice.as_str(),
        src_ref.as_str(),
        dest_ref.as_str(),
    ];
    if let Err(e) = skopeo.try_run(&args) {
        panic!("pull after push failed: {e}\n{}", logs());
    }
    assert_same(&check_dir(&pulled), &truth, "pull after push");
    let reqs = upstream.settled_requests();
    let after: Vec<_> = reqs[mark..].iter().collect();
    let gets: Vec<_> = after.iter().filter(|r| r.is_blob_get()).collect();
    assert!(
        gets.is_empty(),
        "upstream blob GETs after the push: {gets:#?}"
    );
    eprintln!("e2e push: {patches} PATCHes upstream; the pull after it made {} upstream requests, 0 blob GETs", after.len());

    // Wrong credentials: refused, checked with the upstream's token service.
    let rejected = token.rejected();
    let other = format!("docker://{host}/{UPSTREAM_NAME}/e2e/wrong:v1");
    assert!(
        push(&wrong, &other).is_err(),
        "push with a wrong password succeeded"
    );
    assert!(
        token.rejected() > rejected,
        "the wrong password was not checked upstream"
    );
    // An upstream without allow_push: UNSUPPORTED, and nothing reaches the registry.
    let mark = upstream.settled_requests().len();
    let readonly = format!("docker://{host}/{READONLY}/e2e/other:v1");
    let err = push(&alice, &readonly).expect_err("push to an upstream without allow_push");
    let msg = "skopeo should report the mirror's UNSUPPORTED";
    assert!(err.to_lowercase().contains("unsupported"), "{msg}: {err}");
    let url = format!("http://{host}/v2/{READONLY}/e2e/other/blobs/uploads/");
    let (status, _, body) = http("POST", &url, &[], vec![]);
    let v: Value = serde_json::from_slice(&body).expect("error envelope");
    assert_eq!(
        (status, v["errors"][0]["code"].as_str()),
        (405, Some("UNSUPPORTED"))
    );
    let reqs = upstream.settled_requests();
    let uploads: Vec<_> = reqs[mark..]
        .iter()
        .filter(|r| r.uri.contains("/e2e/other/"))
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(
        uploads.is_empty(),
        "pushes reached the registry: {uploads:#?}"
    );

    // Referrers: a signature artifact with a subject, and the tag-schema index, pushed
    // through Wharf as a client does for a registry without the referrers API.
    let raw = Raw::new(&wharf, &name);
    let empty = b"{}".to_vec();
    let signature = rng.bytes(512);
    raw.blob(&name, &empty, &logs);
    raw.blob(&name, &signature, &logs);
    let image_size = std::fs::read(
        layout
            .dir
            .join("blobs/sha256")
            .join(image_digest.trim_start_matches("sha256:")),
    )
    .expect("manifest")
    .len();
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(&empty), "size": 2},
        "layers": [{"mediaType": SIG, "digest": digest_of(&signature), "size": signature.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image_size},
    }))
    .expect("artifact JSON");
    let artifact_digest = digest_of(&artifact);
    raw.manifest(&name, &artifact_digest, OCI_MANIFEST, &artifact, &logs);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": artifact.len(), "artifactType": SIG}],
    }))
    .expect("index JSON");
    let tag = image_digest.replace(':', "-");
    raw.manifest(&name, &tag, OCI_INDEX, &index, &logs);

    let mark = upstream.settled_requests().len();
    let url = format!("{}/v2/{name}/referrers/{image_digest}", raw.base);
    let (status, h, body) = raw.send("GET", &url, None, vec![]);
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    assert_eq!(header(&h, "content-type"), OCI_INDEX);
    let list: Value = serde_json::from_slice(&body).expect("index");
    assert_eq!(list["mediaType"], OCI_INDEX);
    assert_eq!(list["manifests"][0]["digest"], artifact_digest.as_str());
    assert_eq!(list["manifests"][0]["artifactType"], SIG);
    assert_eq!(list["manifests"].as_array().map(Vec::len), Some(1));
    let (_, h, body) = raw.send("GET", &format!("{url}?artifactType={SIG}"), None, vec![]);
    assert_eq!(header(&h, "oci-filters-applied"), "artifactType");
    let list: Value = serde_json::from_slice(&body).expect("index");
    assert_eq!(list["manifests"].as_array().map(Vec::len), Some(1));
    let (_, _, body) = raw.send(
        "GET",
        &format!("{url}?artifactType=application/other"),
        None,
        vec![],
    );
    let list: Value = serde_json::from_slice(&body).expect("index");
    assert_eq!(list["manifests"], json!([]));
    // How Wharf found it: the tag (the registry's 404 for the API is not in its log: no
    // route, no handler, no log line).
    let reqs = upstream.settled_requests();
    let asked: Vec<_> = reqs[mark..].iter().collect();
    assert!(
        asked.iter().any(|r| r.method == "GET" && r.uri.starts_with(&format!("/v2/{REPO}/manifests/{tag}"))),
        "no tag-schema GET upstream: {asked:#?}"
    );
    // A digest nothing refers to: an empty index.
    let nothing = digest_of(b"nothing refers to this");
    let nothing = format!("{}/v2/{name}/referrers/{nothing}", raw.base);
    let (status, _, body) = raw.send("GET", &nothing, None, vec![]);
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).expect("index");
    assert_eq!(
        list,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    );
}

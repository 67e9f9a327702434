//! The OCI 1.1 referrers API through Wharf against the fake upstream: from the upstream's API
//! (filtered, cached, stale while it is down, paginated), from the tag schema where the API
//! answers 404, for clients that may pull the repository only; artifacts with a `subject`
//! pull through like any manifest.

use crate::push::{start, PUSH};
use crate::support::{digest_of, Fake, Session, ALICE, BOB};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIG: &str = "application/vnd.example.sig";
const SBOM: &str = "application/spdx+json";
const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// A manifest referring to `subject`: with `artifactType` (1.1 style), or with only a config
/// media type saying what it is.
fn referrer(subject: &str, artifact_type: &str, explicit: bool, n: u32) -> Vec<u8> {
    let config_type = if explicit {
        "application/vnd.oci.empty.v1+json"
    } else {
        artifact_type
    };
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": EMPTY, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
        "annotations": {"n": n.to_string()},
    });
    if explicit {
        m["artifactType"] = json!(artifact_type);
    }
    serde_json::to_vec(&m).expect("json")
}

/// An image and two referrers of it (a signature and an SBOM) under `repo`; returns the
/// subject digest and the referrers' digests.
fn world(fake: &Fake, repo: &str) -> (String, String, String) {
    let (subject, _) = fake.put_image(repo, "v1", &[b"image layer"]);
    let sig = fake.put_manifest(repo, None, OCI_MANIFEST, &referrer(&subject, SIG, true, 1));
    let sbom = fake.put_manifest(
        repo,
        None,
        OCI_MANIFEST,
        &referrer(&subject, SBOM, false, 2),
    );
    (subject, sig, sbom)
}

/// The digests listed by a referrers answer, sorted, after checking it is an image index.
fn listed(r: &crate::support::Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let mut out: Vec<String> = v["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_string())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_come_from_the_upstream_api_filtered_by_artifact_type() {
    let fake = Fake::start().await;
    let (subject, sig, sbom) = world(&fake, "org/app");
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "").await;
    let s = Session::anonymous();
    let url = format!("http://{}/v2/org/app/referrers/{subject}", w.addr);
    let r = s.get(&url).await;
    assert_eq!(listed(&r), sorted(vec![sig.clone(), sbom.clone()]));
    assert_eq!(r.header("oci-filters-applied"), None);
    let m = r.json()["manifests"].as_array().expect("list").clone();
    let types: Vec<&str> = m
        .iter()
        .filter_map(|d| d["artifactType"].as_str())
        .collect();
    assert!(types.contains(&SIG) && types.contains(&SBOM), "{types:?}");
    let r = s.get(&format!("{url}?artifactType={SIG}")).await;
    assert_eq!(listed(&r), vec![sig.clone()]);
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let r = s
        .get(&format!("{url}?artifactType=application%2Fspdx%2Bjson"))
        .await;
    assert_eq!(listed(&r), vec![sbom.clone()], "a percent-encoded filter");
    let r = s.get(&format!("{url}?artifactType=application/none")).await;
    assert_eq!(listed(&r), Vec::<String>::new());
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    // The prefix form and ns= name the same list; all of it from one upstream request.
    let r = s
        .get(&format!(
            "http://{}/v2/up.test/org/app/referrers/{subject}",
            w.addr
        ))
        .await;
    assert_eq!(listed(&r).len(), 2);
    let r = s.get(&format!("{url}?ns=up.test&artifactType={SIG}")).await;
    assert_eq!(listed(&r), vec![sig]);
    assert_eq!(fake.count("GET referrers"), 1, "cached, filtered locally");
    let r = s.request("HEAD", &url, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.bytes().is_empty());
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_cached_for_referrers_ttl_and_served_stale_while_the_upstream_is_down() {
    let fake = Fake::start().await;
    let (subject, sig, sbom) = world(&fake, "org/app");
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "referrers_ttl = \"1s\"\nretries = 0\n").await;
    let s = Session::anonymous();
    let url = format!("http://{}/v2/org/app/referrers/{subject}", w.addr);
    assert_eq!(listed(&s.get(&url).await).len(), 2);
    assert_eq!(listed(&s.get(&url).await).len(), 2);
    assert_eq!(fake.count("GET referrers"), 1);
    // Someone signs again upstream: seen once the list is older than referrers_ttl.
    let again = fake.put_manifest(
        "org/app",
        None,
        OCI_MANIFEST,
        &referrer(&subject, SIG, true, 3),
    );
    assert_eq!(listed(&s.get(&url).await).len(), 2, "still the cached list");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        listed(&s.get(&url).await),
        sorted(vec![sig, sbom, again.clone()])
    );
    assert_eq!(fake.count("GET referrers"), 2);
    // Down: the last list, stale, filtered as usual.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fake.down.store(true, Ordering::SeqCst);
    let r = s.get(&url).await;
    assert_eq!(listed(&r).len(), 3, "served stale");
    let r = s.get(&format!("{url}?artifactType={SBOM}")).await;
    assert_eq!(listed(&r).len(), 1);
    assert_eq!(
        fake.count("GET referrers"),
        4,
        "the upstream was asked each time"
    );
    // A list never fetched cannot be made up.
    let other = digest_of(b"not cached");
    let r = s
        .get(&format!("http://{}/v2/org/app/referrers/{other}", w.addr))
        .await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_referrers_are_merged() {
    let fake = Fake::start().await;
    let (subject, sig, sbom) = world(&fake, "org/app");
    let third = fake.put_manifest(
        "org/app",
        None,
        OCI_MANIFEST,
        &referrer(&subject, SIG, true, 4),
    );
    fake.referrers_page.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "").await;
    let url = format!("http://{}/v2/org/app/referrers/{subject}", w.addr);
    let r = Session::anonymous().get(&url).await;
    assert_eq!(listed(&r), sorted(vec![sig.clone(), sbom, third.clone()]));
    assert_eq!(fake.count("GET referrers"), 3, "three pages followed");
    let r = Session::anonymous()
        .get(&format!("{url}?artifactType={SIG}"))
        .await;
    assert_eq!(listed(&r), sorted(vec![sig, third]));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_api_referrers_come_from_the_tag_schema() {
    let fake = Fake::start().await;
    fake.referrers_api.store(false, Ordering::SeqCst);
    let (subject, sig, sbom) = world(&fake, "org/app");
    // What cosign or oras push for a registry without the API: an index tagged sha256-<hex>.
    let desc = |d: &str, t: &str| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "artifactType": t});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(&sig, SIG), desc(&sbom, SBOM)]});
    let index = serde_json::to_vec(&index).expect("json");
    let tag = subject.replace(':', "-");
    fake.put_manifest("org/app", Some(&tag), OCI_INDEX, &index);
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "").await;
    let s = Session::anonymous();
    let url = format!("http://{}/v2/org/app/referrers/{subject}", w.addr);
    let r = s.get(&url).await;
    assert_eq!(listed(&r), sorted(vec![sig.clone(), sbom]));
    assert_eq!(
        r.bytes().as_ref(),
        index.as_slice(),
        "the tag's index as it is"
    );
    let r = s.get(&format!("{url}?artifactType={SIG}")).await;
    assert_eq!(listed(&r), vec![sig]);
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(
        (fake.count("GET referrers"), fake.count("GET manifest")),
        (1, 1),
        "one 404 from the API, one GET of the tag"
    );
    // No tag: an empty index.
    let other = digest_of(b"nothing refers to this");
    let r = s
        .get(&format!("http://{}/v2/org/app/referrers/{other}", w.addr))
        .await;
    assert_eq!(listed(&r), Vec::<String>::new());
    let empty: Value = r.json();
    assert_eq!(
        empty,
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_of_a_private_repository_need_pull_access() {
    let fake = Fake::start_with_auth().await;
    let (subject, sig, sbom) = world(&fake, "private/app");
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "").await;
    let url = format!("http://{}/v2/private/app/referrers/{subject}", w.addr);
    let alice = Session::user(ALICE.0, ALICE.1);
    assert_eq!(listed(&alice.get(&url).await), sorted(vec![sig, sbom]));
    // Cached now; still refused to clients the upstream refuses.
    let r = Session::anonymous().get(&url).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = Session::user(BOB.0, BOB.1).get(&url).await;
    assert!(matches!(r.status.as_u16(), 401 | 403), "bob: {}", r.status);
    let asked = fake.count("GET referrers");
    assert_eq!(listed(&alice.get(&url).await).len(), 2);
    assert_eq!(
        fake.count("GET referrers"),
        asked,
        "alice's second answer came from the cache"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_with_a_subject_pull_through_and_a_pushed_one_refreshes_the_list() {
    let fake = Fake::start().await;
    let (subject, sig, sbom) = world(&fake, "org/app");
    let dir = tempfile::tempdir().expect("tmp");
    fake.put_blob(b"{}");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    // A 1.1 artifact (image manifest with subject) and an OCI artifact manifest, by digest
    // and by tag.
    let m = referrer(&subject, SIG, true, 1);
    let r = s.get(&format!("{base}/v2/org/app/manifests/{sig}")).await;
    assert_eq!(r.bytes().as_ref(), m.as_slice());
    let artifact = serde_json::to_vec(&json!({
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "artifactType": SIG,
        "blobs": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
    }))
    .expect("json");
    let ad = fake.put_manifest(
        "org/app",
        Some("sig"),
        "application/vnd.oci.artifact.manifest.v1+json",
        &artifact,
    );
    for reference in ["sig", ad.as_str()] {
        let r = s
            .get(&format!("{base}/v2/org/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status, 200, "{reference}: {:?}", r.body);
        assert_eq!(r.bytes().as_ref(), artifact.as_slice());
        assert_eq!(
            r.header("content-type"),
            Some("application/vnd.oci.artifact.manifest.v1+json")
        );
    }
    // The list is cached; a referrer pushed through Wharf drops it at once.
    let url = format!("{base}/v2/org/app/referrers/{subject}");
    assert_eq!(listed(&s.get(&url).await).len(), 3);
    let pushed = referrer(&subject, SBOM, true, 9);
    let pd = digest_of(&pushed);
    let ct = [("content-type", OCI_MANIFEST)];
    let r = s
        .send(
            "PUT",
            &format!("{base}/v2/org/app/manifests/{pd}"),
            &ct,
            Bytes::from(pushed),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(listed(&s.get(&url).await), sorted(vec![sig, sbom, ad, pd]));
    assert_eq!(fake.count("GET referrers"), 2);
    w.shutdown().await;
}

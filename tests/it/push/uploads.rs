//! Blob uploads through Wharf.

use super::{cached, follow, location, open, push_blob, start, tees, temp_files, with_param, PUSH};
use crate::support::{self, data, digest_of, Fake, Session};
use bytes::Bytes;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_without_allow_push_are_unsupported_and_never_reach_the_upstream() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), "").await;
    let base = format!("http://{}", w.addr);
    let d = digest_of(b"x");
    let cases = [
        ("POST", "/v2/org/app/blobs/uploads/".to_string()),
        (
            "POST",
            format!("/v2/org/app/blobs/uploads/?mount={d}&from=org/base"),
        ),
        (
            "PATCH",
            "/v2/org/app/blobs/uploads/u1?_state=u1".to_string(),
        ),
        ("PUT", format!("/v2/org/app/blobs/uploads/u1?digest={d}")),
        ("GET", "/v2/org/app/blobs/uploads/u1".to_string()),
        ("DELETE", "/v2/org/app/blobs/uploads/u1".to_string()),
        ("PUT", "/v2/up.test/org/app/manifests/v1".to_string()),
        ("DELETE", format!("/v2/org/app/manifests/{d}")),
        ("DELETE", format!("/v2/org/app/blobs/{d}?ns=up.test")),
    ];
    let session = Session::anonymous();
    for (method, path) in &cases {
        let url = format!("{base}{path}");
        // Without a token (no challenge first: the answer is final) and with one.
        let r = support::send(method, &url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.error_code(), "UNSUPPORTED", "{method} {path}");
        assert!(r.header("www-authenticate").is_none(), "{method} {path}");
        let r = session
            .send(method, &url, &[], Bytes::from_static(b"{}"))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().as_str()),
            (405, "UNSUPPORTED"),
            "{method} {path} with a token"
        );
    }
    assert_eq!(fake.total(), 0, "no push request reached the upstream");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolithic_upload_is_teed_and_the_next_pull_is_a_hit() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let blob = data(3 << 20, 11);
    let d = digest_of(&blob);
    let uploads = format!("{base}/v2/org/app/blobs/uploads/");
    let r = push_blob(&s, &base, &uploads, &blob).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(location(&r), format!("/v2/org/app/blobs/{d}"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(fake.blob_bytes(&d).as_deref(), Some(blob.as_slice()));
    assert!(fake.has_blob_in("org/app", &d));
    assert!(cached(&w, &d), "the pushed blob is in Wharf's cache");
    assert_eq!(tees(&w, "committed"), 1);
    assert_eq!(temp_files(dir.path()), 0);
    let before = fake.total();
    let r = s.get(&format!("{base}/v2/org/app/blobs/{d}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), blob.as_slice());
    assert_eq!(
        (fake.count("GET blob"), fake.count("HEAD blob")),
        (0, 0),
        "the first pull after the push is a hit"
    );
    assert_eq!(fake.total(), before, "not even an authorization probe");
    // One POST ?digest= with the bytes works the same.
    let other = data(70_000, 12);
    let od = digest_of(&other);
    let url = format!("{base}/v2/org/app/blobs/uploads/?digest={od}");
    let r = s.send("POST", &url, &[], Bytes::from(other.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(cached(&w, &od));
    let r = s.get(&format!("{base}/v2/org/app/blobs/{od}")).await;
    assert_eq!(r.bytes().as_ref(), other.as_slice());
    assert_eq!(fake.count("GET blob"), 0);
    w.shutdown().await;
}

/// One chunked, resumable upload through Wharf under a naming form, with the fake answering
/// relative or absolute `Location`s: every `Location` points back at Wharf under that form.
async fn chunked_upload(
    fake: &Fake,
    base: &str,
    name: &str,
    ns: Option<&str>,
    seed: u64,
) -> (String, Vec<u8>) {
    let s = Session::anonymous();
    let q = ns.map(|n| format!("?ns={n}")).unwrap_or_default();
    let suffix = ns.map(|n| format!("ns={n}")).unwrap_or_default();
    let blob = data(600_000, seed);
    let d = digest_of(&blob);
    let r = open(&s, &format!("{base}/v2/{name}/blobs/uploads/{q}")).await;
    let loc = location(&r);
    let prefix = format!("/v2/{name}/blobs/uploads/");
    assert!(loc.starts_with(&prefix), "{loc} under {prefix}");
    assert!(
        loc.contains("_state="),
        "{loc}: the upstream's query is kept"
    );
    assert!(loc.ends_with(&suffix), "{loc} keeps {suffix:?}");
    let (first, second) = blob.split_at(250_000);
    let range = format!("0-{}", first.len() - 1);
    let h = [
        ("content-range", range.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    let r = s
        .send(
            "PATCH",
            &follow(base, &loc),
            &h,
            Bytes::copy_from_slice(first),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.header("range"), Some(range.as_str()));
    let loc = location(&r);
    assert!(loc.starts_with(&prefix) && loc.ends_with(&suffix), "{loc}");
    // Resumable: where is the upload?
    let r = s.get(&follow(base, &loc)).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("range"),
        Some(range.as_str()),
        "the upstream's Range"
    );
    let loc = location(&r);
    let range2 = format!("{}-{}", first.len(), blob.len() - 1);
    let h = [("content-range", range2.as_str())];
    let r = s
        .send(
            "PATCH",
            &follow(base, &loc),
            &h,
            Bytes::copy_from_slice(second),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let put = with_param(&follow(base, &location(&r)), &format!("digest={d}"));
    let r = s.send("PUT", &put, &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let expect = if suffix.is_empty() {
        format!("/v2/{name}/blobs/{d}")
    } else {
        format!("/v2/{name}/blobs/{d}?{suffix}")
    };
    assert_eq!(location(&r), expect);
    assert_eq!(fake.blob_bytes(&d).as_deref(), Some(blob.as_slice()));
    (d, blob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_resumable_uploads_come_back_through_wharf_in_every_naming_form() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let forms: [(&str, Option<&str>); 3] = [
        ("up.test/org/app", None),
        ("org/app", Some("up.test")),
        ("org/app", None),
    ];
    let mut seed = 20;
    for absolute in [false, true] {
        fake.absolute_locations.store(absolute, Ordering::SeqCst);
        for (name, ns) in forms {
            seed += 1;
            let (d, blob) = chunked_upload(&fake, &base, name, ns, seed).await;
            let q = ns.map(|n| format!("?ns={n}")).unwrap_or_default();
            let r = support::get(&format!("{base}/v2/{name}/blobs/{d}{q}")).await;
            assert_eq!(r.bytes().as_ref(), blob.as_slice(), "{name} {ns:?}");
            assert_eq!(
                fake.count("GET blob"),
                0,
                "{name} {ns:?} absolute={absolute}"
            );
        }
    }
    assert_eq!(tees(&w, "committed"), 6);
    assert_eq!(fake.count("PATCH upload"), 12);
    assert_eq!(fake.count("GET upload"), 6);
    assert_eq!(fake.open_uploads(), 0);
    assert_eq!(temp_files(dir.path()), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tee_that_missed_bytes_stores_nothing() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let blob = data(300_000, 31);
    let d = digest_of(&blob);
    let (first, second) = blob.split_at(100_000);
    let r = open(&s, &format!("{base}/v2/org/app/blobs/uploads/")).await;
    let r = s
        .send(
            "PATCH",
            &follow(&base, &location(&r)),
            &[],
            Bytes::copy_from_slice(first),
        )
        .await;
    assert_eq!(r.status, 202);
    // The second chunk goes to the upstream directly: Wharf never sees it.
    let loc = location(&r);
    let direct = format!("{}{loc}", fake.url());
    let r = support::send("PATCH", &direct, &[], Bytes::copy_from_slice(second)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let put = with_param(&follow(&base, &loc), &format!("digest={d}"));
    let r = s.send("PUT", &put, &[], Bytes::new()).await;
    assert_eq!(
        r.status, 201,
        "the upstream has the whole blob: {:?}",
        r.body
    );
    assert!(!cached(&w, &d), "Wharf saw only part of it: nothing stored");
    assert_eq!(tees(&w, "digest_mismatch"), 1);
    assert_eq!(tees(&w, "committed"), 0);
    assert_eq!(temp_files(dir.path()), 0, "the partial temp file is gone");
    let r = s.get(&format!("{base}/v2/org/app/blobs/{d}")).await;
    assert_eq!(r.bytes().as_ref(), blob.as_slice());
    assert_eq!(
        fake.count("GET blob"),
        1,
        "fetched from the upstream, verified"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_unchanged() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let blob = data(50_000, 41);
    // A digest that does not match the bytes: the upstream's 400, its body, nothing cached.
    let r = open(&s, &format!("{base}/v2/org/app/blobs/uploads/")).await;
    let wrong = digest_of(b"something else");
    let put = with_param(&follow(&base, &location(&r)), &format!("digest={wrong}"));
    let r = s.send("PUT", &put, &[], Bytes::from(blob.clone())).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        r.json()["errors"][0]["message"],
        "fake",
        "the upstream's own body"
    );
    assert!(!cached(&w, &wrong) && !cached(&w, &digest_of(&blob)));
    assert_eq!(tees(&w, "abandoned"), 1);
    // An unknown session: the upstream's 404.
    let url = format!("{base}/v2/org/app/blobs/uploads/nope?_state=nope");
    let r = s.send("PATCH", &url, &[], Bytes::from_static(b"x")).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    // A chunk out of order: the upstream's 416 with its Range.
    let r = open(&s, &format!("{base}/v2/org/app/blobs/uploads/")).await;
    let h = [("content-range", "10-19")];
    let url = follow(&base, &location(&r));
    let r = s
        .send("PATCH", &url, &h, Bytes::from_static(b"0123456789"))
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-0"));
    // A 5xx stays a 5xx (not Wharf's 502), with the upstream's code.
    fake.fail_next_kind("POST upload", 1, 503);
    let r = s
        .send(
            "POST",
            &format!("{base}/v2/org/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (503, "UNAVAILABLE")
    );
    // An upstream that is down: its 503 as it sent it.
    fake.down.store(true, Ordering::SeqCst);
    let r = s
        .send(
            "POST",
            &format!("{base}/v2/org/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 503, "the upstream's 503 while it is down");
    fake.down.store(false, Ordering::SeqCst);
    assert_eq!(temp_files(dir.path()), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_repository_mounts_map_from_like_any_name() {
    let fake = Fake::start().await;
    let base_layer = data(20_000, 51);
    let d = fake.put_blob_in("org/base", &base_layer);
    let dir = tempfile::tempdir().expect("tmp");
    // A second upstream, to mount from.
    let extra =
        format!("{PUSH}\n[[upstream]]\nname = \"other.test\"\nurl = \"http://127.0.0.1:9\"\n");
    let w = start(&fake, dir.path(), &extra).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    // Pull it once under org/base, so Wharf has it.
    let r = s.get(&format!("{base}/v2/org/base/blobs/{d}")).await;
    assert_eq!(r.bytes().as_ref(), base_layer.as_slice());
    // Its commit may end just after the client's last (verified) byte.
    w.registry
        .drain_fills(std::time::Duration::from_secs(10))
        .await;
    let url = format!("{base}/v2/up.test/org/app/blobs/uploads/?mount={d}&from=up.test/org/base");
    let r = s.send("POST", &url, &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(location(&r), format!("/v2/up.test/org/app/blobs/{d}"));
    assert!(
        fake.has_blob_in("org/app", &d),
        "mounted upstream from org/base"
    );
    // Linked to org/app in Wharf now: served there without asking the upstream.
    let gets = fake.count("GET blob") + fake.count("HEAD blob");
    let r = s.get(&format!("{base}/v2/up.test/org/app/blobs/{d}")).await;
    assert_eq!(r.bytes().as_ref(), base_layer.as_slice());
    assert_eq!(fake.count("GET blob") + fake.count("HEAD blob"), gets);
    // `from` on another upstream: no mount, an ordinary upload session instead.
    let url = format!("{base}/v2/org/new/blobs/uploads/?mount={d}&from=other.test/org/base");
    let r = s.send("POST", &url, &[], Bytes::new()).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert!(location(&r).starts_with("/v2/org/new/blobs/uploads/"));
    assert!(!fake.has_blob_in("org/new", &d));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_not_cut_short_and_push_failures_leave_pulls_alone() {
    let fake = Fake::start().await;
    let (_, m) = fake.put_image("org/app", "v1", &[b"layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let extra = format!("{PUSH}response_timeout = \"1s\"\nbreaker_failures = 1\n");
    let w = start(&fake, dir.path(), &extra).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let blob = data(100_000, 81);
    let d = digest_of(&blob);
    let r = open(&s, &format!("{base}/v2/org/app/blobs/uploads/")).await;
    // The upstream takes longer than response_timeout to answer a PATCH and the final PUT
    // (a large blob being written, moved into place): the upload still succeeds.
    fake.delay_next("PATCH upload", 1, std::time::Duration::from_millis(1500));
    fake.delay_next("PUT upload", 1, std::time::Duration::from_millis(1500));
    let url = follow(&base, &location(&r));
    let r = s.send("PATCH", &url, &[], Bytes::from(blob.clone())).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let put = with_param(&follow(&base, &location(&r)), &format!("digest={d}"));
    let r = s.send("PUT", &put, &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(cached(&w, &d));
    // Starting an upload is bounded by response_timeout.
    fake.delay_next("POST upload", 1, std::time::Duration::from_millis(1500));
    let r = s
        .send(
            "POST",
            &format!("{base}/v2/org/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (502, "UNAVAILABLE")
    );
    // A push-side 5xx does not open the breaker (one failure would): pulls go on.
    fake.fail_next_kind("POST upload", 1, 500);
    let r = s
        .send(
            "POST",
            &format!("{base}/v2/org/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 500, "the upstream's 500 as it is");
    let r = s.get(&format!("{base}/v2/org/app/manifests/v1")).await;
    assert_eq!(r.bytes().as_ref(), m.as_slice());
    assert_eq!(fake.count("GET manifest"), 1);
    w.shutdown().await;
}

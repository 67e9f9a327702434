//! `wharf prefetch`: whole images into the cache, directly into a stopped Wharf's data_dir or
//! through the running one, with platform selection, per-image failures and plain output.

use crate::support::{self, data, digest_of, get, Fake};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A config for `data_dir` listening on `listen`, whose upstream `up.test` is `url`.
fn config(dir: &Path, listen: &str, url: &str) -> PathBuf {
    let cfg = dir.join("wharf.toml");
    let text = format!(
        "listen = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [[upstream]]\nname = \"up.test\"\nurl = \"{url}\"\n",
        dir.join("data").display()
    );
    std::fs::write(&cfg, text).expect("config");
    cfg
}

/// `wharf prefetch --config cfg --progress lines <args>`, stdout and stderr not terminals.
fn prefetch(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("prefetch")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wharf prefetch")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The index `org/multi:v1` with an amd64 and an arm64 image; returns each one's blobs.
fn put_multi(fake: &Fake) -> (Vec<String>, Vec<String>) {
    let mut blobs = Vec::new();
    let mut descs = Vec::new();
    for (arch, seed) in [("amd64", 40), ("arm64", 50)] {
        let (d, m) = fake.put_image(
            "org/multi",
            &format!("only-{arch}"),
            &[&data(30_000, seed), &data(700, seed + 1)],
        );
        let v: serde_json::Value = serde_json::from_slice(&m).expect("json");
        let mut list = vec![v["config"]["digest"].as_str().expect("cfg").to_string()];
        for l in v["layers"].as_array().expect("layers") {
            list.push(l["digest"].as_str().expect("digest").to_string());
        }
        blobs.push(list);
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
            m.len()
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        descs.join(",")
    );
    fake.put_manifest(
        "org/multi",
        Some("v1"),
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    );
    let arm64 = blobs.pop().expect("arm64");
    (blobs.pop().expect("amd64"), arm64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_fills_a_stopped_cache_with_plain_output_and_per_image_failures() {
    let fake = Fake::start().await;
    let layers = [data(200_000, 1), data(3_000, 2)];
    let (app_digest, _) = fake.put_image("org/app", "v1", &[&layers[0], &layers[1]]);
    let (amd64, arm64) = put_multi(&fake);
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path(), "127.0.0.1:0", &fake.url());

    let out = prefetch(
        &cfg,
        &[
            "--platform",
            "linux/arm64",
            "up.test/org/app:v1",
            "up.test/org/multi:v1",
            "up.test/org/missing:v1",
            "quay.io/org/app:v1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("no Wharf is running on"),
        "direct mode: {stdout}"
    );
    // Plain output: one line per event, no escape codes or carriage returns.
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\r'),
        "{stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let of = |image: &str, what: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("] {image}: {what}")))
            .count()
    };
    assert_eq!(of("up.test/org/app:v1", "blob sha256:"), 3, "{stdout}");
    assert_eq!(
        of(
            "up.test/org/app:v1",
            &format!("{app_digest} (image): 3 blobs")
        ),
        1,
        "{stdout}"
    );
    assert_eq!(of("up.test/org/app:v1", "done: 1 manifests, 3 blobs"), 1);
    assert_eq!(
        of("up.test/org/multi:v1", "done: 2 manifests, 3 blobs"),
        1,
        "{stdout}"
    );
    assert_eq!(
        of(
            "up.test/org/missing:v1",
            "FAILED: manifest v1: MANIFEST_UNKNOWN"
        ),
        1
    );
    assert_eq!(of("quay.io/org/app:v1", "FAILED:"), 1, "{stdout}");
    assert!(
        stdout.contains(r#"no upstream named "quay.io" is configured (configured: up.test)"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("prefetched 2 of 4 images (6 blobs"),
        "{stdout}"
    );
    assert!(stderr.contains("failed: up.test/org/missing:v1: manifest v1: MANIFEST_UNKNOWN"));
    let blob_gets = fake.count("GET blob");
    assert_eq!(blob_gets, 6, "one upstream GET per blob");
    for d in &amd64 {
        assert!(
            !stdout.contains(d.as_str()),
            "amd64 blob {d} prefetched without being asked for"
        );
    }

    // The cache holds what was prefetched: a server on it answers without the upstream.
    let w = support::wharf(
        dir.path().join("data").as_path(),
        "up.test",
        &fake.url(),
        "",
    )
    .await;
    let before = fake.total();
    for d in arm64
        .iter()
        .chain([digest_of(&layers[0]), digest_of(&layers[1])].iter())
    {
        let repo = if arm64.contains(d) {
            "org/multi"
        } else {
            "org/app"
        };
        let r = get(&format!("http://{}/v2/{repo}/blobs/{d}", w.addr)).await;
        assert_eq!(r.status, 200, "{d}");
        assert_eq!(digest_of(r.bytes().as_ref()), *d);
    }
    let m = get(&format!(
        "http://{}/v2/org/app/manifests/{app_digest}",
        w.addr
    ))
    .await;
    assert_eq!(m.status, 200);
    assert_eq!(fake.count("GET blob"), blob_gets, "served from the cache");
    assert!(fake.total() - before <= 1, "at most a token or auth probe");
    w.shutdown().await;

    // No platform matches: the image fails and says what the index has.
    let out = prefetch(&cfg, &["--platform", "linux/s390x", "up.test/org/multi:v1"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(
            "no manifest for linux/s390x in the index (it has: linux/amd64, linux/arm64)"
        ),
        "{stdout}"
    );

    // An image list from a file, all platforms: only the amd64 blobs are new.
    let list = dir.path().join("images.txt");
    std::fs::write(&list, "# warm-up\nup.test/org/multi:v1\n\n").expect("list");
    let out = prefetch(
        &cfg,
        &["--all-platforms", "-f", list.to_str().expect("utf8")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("index: 2 of 2 manifests"), "{stdout}");
    assert_eq!(fake.count("GET blob"), blob_gets + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_goes_through_the_running_wharf() {
    let fake = Fake::start().await;
    let layers = [data(120_000, 7), data(900, 8)];
    let (digest, _) = fake.put_image("org/app", "v2", &[&layers[0], &layers[1]]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(
        dir.path().join("data").as_path(),
        "up.test",
        &fake.url(),
        "",
    )
    .await;
    // The config a CLI user has: the same data_dir, the server's listen address.
    let cfg = config(dir.path(), &w.addr.to_string(), &fake.url());
    let out = prefetch(&cfg, &[&format!("up.test/org/app@{digest}")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("a Wharf is running on") && stdout.contains(&w.addr.to_string()),
        "{stdout}"
    );
    assert_eq!(fake.count("GET blob"), 3);
    // The running server filled its cache: the pull is a hit.
    for l in &layers {
        let r = get(&format!(
            "http://{}/v2/org/app/blobs/{}",
            w.addr,
            digest_of(l)
        ))
        .await;
        assert_eq!(r.bytes().as_ref(), l.as_slice());
    }
    assert_eq!(fake.count("GET blob"), 3, "no upstream GET after prefetch");

    // A digest that does not exist fails cleanly; the server keeps serving.
    let bogus = digest_of(b"nothing");
    let out = prefetch(&cfg, &[&format!("up.test/org/app@{bogus}")]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: manifest"), "{stdout}");
    w.shutdown().await;

    // An explicit server that is down: every image fails, saying so.
    let out = prefetch(
        &cfg,
        &[
            "--server",
            "http://127.0.0.1:9",
            &format!("up.test/org/app@{digest}"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("cannot reach Wharf at http://127.0.0.1:9"),
        "{stdout}"
    );
}

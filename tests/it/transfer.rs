//! `wharf export` / `wharf import`: cached images carried to an air-gapped Wharf as an OCI
//! layout (directory or tar), verified on both sides, then served offline to anyone.

use crate::support::{self, data, digest_of, get, request_as, Fake, ALICE};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A config file for `data_dir` whose one upstream `up.test` is `url`.
fn config(dir: &Path, data_dir: &Path, url: &str) -> PathBuf {
    let cfg = dir.join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[upstream]]\nname = \"up.test\"\nurl = \"{url}\"\ndefault = true\n",
            data_dir.display()
        ),
    )
    .expect("config");
    cfg
}

fn wharf_cli(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .expect("wharf")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn failed(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Where nothing listens: the air-gapped site's upstream.
const NOWHERE: &str = "http://127.0.0.1:9";

struct Pulled {
    _fake: Fake,
    source: tempfile::TempDir,
    cfg: PathBuf,
    manifest: (String, Vec<u8>),
    blobs: Vec<(String, Vec<u8>)>,
    requests: u64,
}

/// An image pulled through a Wharf that is then stopped.
async fn pulled() -> Pulled {
    let fake = Fake::start().await;
    let layers = [data(70_000, 80), data(1_500, 81)];
    let (md, mb) = fake.put_image("org/app", "v1", &[&layers[0], &layers[1]]);
    let source = tempfile::tempdir().expect("tmp");
    let w = support::wharf(source.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let m = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(m.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&mb).expect("json");
    let config_d = v["config"]["digest"].as_str().expect("config").to_string();
    let config_b = fake.blob_bytes(&config_d).expect("config bytes");
    let mut blobs = vec![(config_d, config_b)];
    for l in &layers {
        blobs.push((digest_of(l), l.clone()));
    }
    for (d, b) in &blobs {
        let r = get(&format!("{base}/blobs/{d}")).await;
        assert_eq!(r.bytes().as_ref(), b.as_slice());
    }
    w.shutdown().await;
    let cfg = config(source.path(), source.path(), &fake.url());
    let requests = fake.total();
    Pulled {
        _fake: fake,
        source,
        cfg,
        manifest: (md, mb),
        blobs,
        requests,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_images_import_into_an_offline_wharf_and_serve_anonymously() {
    let p = pulled().await;
    let out = tempfile::tempdir().expect("tmp");
    let layout = out.path().join("layout");
    let tar = out.path().join("images.tar");
    for dest in [&layout, &tar] {
        let dest = dest.to_str().expect("utf8");
        let out = wharf_cli(&p.cfg, &["export", "up.test/org/app:v1", "-o", dest]);
        // Progress: one line per blob, the last at 100%.
        let progress = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = progress
            .lines()
            .filter(|l| l.starts_with("exported blob sha256:"))
            .collect();
        assert_eq!(lines.len(), p.blobs.len(), "{progress}");
        assert!(lines[lines.len() - 1].ends_with("(100%)"), "{progress}");
        ok(out, "export");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index json");
    let desc = &index["manifests"][0];
    assert_eq!(desc["digest"], p.manifest.0.as_str());
    assert_eq!(desc["size"], p.manifest.1.len());
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(
        desc["annotations"]["io.wharf.image.ref"],
        "up.test/org/app:v1"
    );
    assert!(layout.join("oci-layout").is_file());
    for (d, b) in &p.blobs {
        let hex = d.trim_start_matches("sha256:");
        assert_eq!(
            &std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob"),
            b
        );
    }
    // Unknown images are refused by name.
    let err = failed(
        wharf_cli(
            &p.cfg,
            &["export", "up.test/org/app:nope", "-o", "/nonexistent/x"],
        ),
        "export of an uncached tag",
    );
    assert!(err.contains("up.test/org/app:nope"), "{err}");

    for src in [&layout, &tar] {
        let site = tempfile::tempdir().expect("tmp");
        let data_dir = site.path().join("data");
        let cfg = config(site.path(), &data_dir, NOWHERE);
        let said = ok(
            wharf_cli(&cfg, &["import", src.to_str().expect("utf8")]),
            "import",
        );
        assert!(said.contains("imported up.test/org/app:v1"), "{said}");
        let ls = ok(wharf_cli(&cfg, &["ls"]), "ls");
        assert!(
            ls.contains(&format!("up.test/org/app:v1\t{}", p.manifest.0)),
            "{ls}"
        );

        let w = support::wharf_with(&data_dir, "up.test", NOWHERE, "", "offline = true").await;
        let base = format!("http://{}/v2/org/app", w.addr);
        for reference in ["v1", p.manifest.0.as_str()] {
            let r = get(&format!("{base}/manifests/{reference}")).await;
            assert_eq!(r.status, 200, "manifest {reference} from {}", src.display());
            assert_eq!(r.bytes().as_ref(), p.manifest.1.as_slice());
            assert_eq!(
                r.header("docker-content-digest"),
                Some(p.manifest.0.as_str())
            );
        }
        for (d, b) in &p.blobs {
            let r = get(&format!("{base}/blobs/{d}")).await;
            assert_eq!(r.status, 200, "blob {d}");
            assert_eq!(r.bytes().as_ref(), b.as_slice());
            assert_eq!(digest_of(r.bytes()), *d);
        }
        w.shutdown().await;
    }
    assert_eq!(
        p._fake.total(),
        p.requests,
        "requests to the upstream after the pull"
    );
    drop(p.source);
}

/// With a Wharf running on the data_dir, `import` and `export` go through its control socket
/// (a 0700 directory in data_dir), and an imported tag is served at once, even one the server
/// had just been asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_export_go_through_a_running_wharf() {
    let p = pulled().await;
    let out = tempfile::tempdir().expect("tmp");
    let tar = out.path().join("images.tar");
    ok(
        wharf_cli(
            &p.cfg,
            &["export", "--all", "-o", tar.to_str().expect("utf8")],
        ),
        "export",
    );
    let site = tempfile::tempdir().expect("tmp");
    let data_dir = site.path().join("data");
    let cfg = config(site.path(), &data_dir, NOWHERE);
    let w = support::wharf_with(&data_dir, "up.test", NOWHERE, "", "offline = true").await;
    {
        use std::os::unix::fs::PermissionsExt;
        let run = data_dir.join("run");
        let mode = std::fs::metadata(&run)
            .expect("run dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "control socket directory mode");
        assert!(run.join("control.sock").exists());
    }
    let base = format!("http://{}/v2/org/app", w.addr);
    // Offline and empty: not there yet.
    assert_eq!(get(&format!("{base}/manifests/v1")).await.status, 502);

    // A corrupt archive through the socket: the error names the digest, nothing is stored.
    let mut bytes = std::fs::read(&tar).expect("tar");
    let (bad_d, bad_b) = &p.blobs[1];
    let at = bytes
        .windows(64)
        .position(|w| w == &bad_b[..64])
        .expect("layer in tar");
    bytes[at + 10] ^= 1;
    let bad = out.path().join("bad.tar");
    std::fs::write(&bad, &bytes).expect("bad tar");
    let err = failed(
        wharf_cli(
            &cfg,
            &[
                "import",
                "--name",
                "up.test/org/other",
                bad.to_str().expect("utf8"),
            ],
        ),
        "corrupt import through the socket",
    );
    assert!(err.contains(bad_d.as_str()), "{err}");
    assert_eq!(get(&format!("{base}/manifests/v1")).await.status, 502);

    let out_import = wharf_cli(&cfg, &["import", tar.to_str().expect("utf8")]);
    let said = String::from_utf8_lossy(&out_import.stderr).into_owned();
    assert!(said.contains("importing through it"), "{said}");
    let said = ok(out_import, "import into the running Wharf");
    assert!(said.contains("imported up.test/org/app:v1"), "{said}");
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(r.status, 200, "imported tag served at once");
    // The blob is cached now, but an archive's corrupt copy of it is still refused: an import
    // vouches for (and opens) only what its own bytes prove.
    let err = failed(
        wharf_cli(
            &cfg,
            &[
                "import",
                "--name",
                "up.test/org/other",
                bad.to_str().expect("utf8"),
            ],
        ),
        "corrupt copy of a cached blob",
    );
    assert!(err.contains(bad_d.as_str()), "{err}");
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(
        r.bytes().as_ref(),
        p.manifest.1.as_slice(),
        "the cache is as it was"
    );
    for (d, b) in &p.blobs {
        let r = get(&format!("{base}/blobs/{d}")).await;
        assert_eq!(r.bytes().as_ref(), b.as_slice(), "blob {d}");
    }

    // Export from the running Wharf, to a relative path resolved by the client.
    let exported = out.path().join("again");
    let said = ok(
        wharf_cli(
            &cfg,
            &[
                "export",
                "org/app:v1", // the default upstream's short form
                "-o",
                exported.to_str().expect("utf8"),
            ],
        ),
        "export through the running Wharf",
    );
    assert!(said.contains("exported 1 images"), "{said}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], p.manifest.0.as_str());
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(r.status, 200, "still serving");
    w.shutdown().await;
    assert!(
        !data_dir.join("run/control.sock").exists(),
        "the socket is removed at shutdown"
    );
}

/// An import opens exactly what it imported to anyone. Other cached content of the same
/// repository (someone's private pull) stays behind the upstream's authorization, online and
/// offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_opens_only_what_it_imported() {
    let fake = Fake::start_with_auth().await;
    let (public_layer, secret_layer) = (data(20_000, 90), data(30_000, 91));
    let (v1, v1_bytes) = fake.put_image("private/app", "v1", &[&public_layer]);
    let (secret, _) = fake.put_image("private/app", "secret", &[&secret_layer]);
    // Alice pulls a whole image (manifest, config, layer) through the Wharf at `addr`.
    let pull_as_alice = |addr: std::net::SocketAddr, reference: String, layer: Vec<u8>| async move {
        let base = format!("http://{addr}/v2/private/app");
        let url = format!("{base}/manifests/{reference}");
        let m = request_as("GET", &url, &[], Some(ALICE)).await;
        assert_eq!(m.status, 200, "alice pulls {reference}");
        let config = m.json()["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string();
        for d in [config, digest_of(&layer)] {
            let b = request_as("GET", &format!("{base}/blobs/{d}"), &[], Some(ALICE)).await;
            assert_eq!(b.status, 200, "alice pulls blob {d}");
        }
    };

    // Connected side: alice pulls v1; it is exported.
    let source = tempfile::tempdir().expect("tmp");
    let w = support::wharf(source.path(), "up.test", &fake.url(), "").await;
    pull_as_alice(w.addr, "v1".into(), public_layer.clone()).await;
    w.shutdown().await;
    let src_cfg = config(source.path(), source.path(), &fake.url());
    let tar = source.path().join("v1.tar");
    ok(
        wharf_cli(
            &src_cfg,
            &[
                "export",
                "up.test/private/app:v1",
                "-o",
                tar.to_str().expect("utf8"),
            ],
        ),
        "export",
    );

    // The site has alice's private `secret` cached, then imports v1 into the same repository.
    let site = tempfile::tempdir().expect("tmp");
    let data_dir = site.path().join("data");
    let w = support::wharf(&data_dir, "up.test", &fake.url(), "").await;
    pull_as_alice(w.addr, "secret".into(), secret_layer.clone()).await;
    w.shutdown().await;
    let cfg = config(site.path(), &data_dir, &fake.url());
    ok(
        wharf_cli(&cfg, &["import", tar.to_str().expect("utf8")]),
        "import",
    );

    for top in ["", "offline = true"] {
        let w = support::wharf_with(&data_dir, "up.test", &fake.url(), "", top).await;
        let base = format!("http://{}/v2/private/app", w.addr);
        for reference in ["v1".to_string(), v1.clone()] {
            let r = get(&format!("{base}/manifests/{reference}")).await;
            assert_eq!(r.status, 200, "imported {reference} ({top:?})");
            assert_eq!(r.bytes().as_ref(), v1_bytes.as_slice());
        }
        let r = get(&format!("{base}/blobs/{}", digest_of(&public_layer))).await;
        assert_eq!(
            r.bytes().as_ref(),
            public_layer.as_slice(),
            "imported blob ({top:?})"
        );
        for reference in ["secret".to_string(), secret.clone()] {
            let r = get(&format!("{base}/manifests/{reference}")).await;
            assert_eq!(r.status, 401, "alice's {reference} to anonymous ({top:?})");
        }
        let r = get(&format!("{base}/blobs/{}", digest_of(&secret_layer))).await;
        assert_eq!(r.status, 401, "alice's layer to anonymous ({top:?})");
        assert_ne!(r.bytes().as_ref(), secret_layer.as_slice());
        w.shutdown().await;
    }
}

/// `docker save` (Docker 25+) writes an OCI layout whose entries carry the full name in
/// `io.containerd.image.name` (and a bare tag in `ref.name`), beside its legacy
/// `manifest.json` and `repositories`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_save_layouts_import_under_their_containerd_names() {
    let p = pulled().await;
    let out = tempfile::tempdir().expect("tmp");
    let layout = out.path().join("layout");
    ok(
        wharf_cli(
            &p.cfg,
            &["export", "--all", "-o", layout.to_str().expect("utf8")],
        ),
        "export",
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": p.manifest.0,
            "size": p.manifest.1.len(),
            "annotations": {
                // A host this site knows as an alias of its upstream `up.test`.
                "io.containerd.image.name": "mirror.test/org/saved:2.0",
                "org.opencontainers.image.ref.name": "2.0"
            }
        }]
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index");
    std::fs::write(layout.join("manifest.json"), b"[]").expect("legacy manifest.json");
    std::fs::write(layout.join("repositories"), b"{}").expect("legacy repositories");

    let site = tempfile::tempdir().expect("tmp");
    let cfg = config(site.path(), &site.path().join("data"), NOWHERE);
    let text = std::fs::read_to_string(&cfg).expect("config") + "aliases = [\"mirror.test\"]\n";
    std::fs::write(&cfg, text).expect("alias");
    let said = ok(
        wharf_cli(&cfg, &["import", layout.to_str().expect("utf8")]),
        "import of a docker save layout",
    );
    assert!(said.contains("imported up.test/org/saved:2.0"), "{said}");
    let ls = ok(wharf_cli(&cfg, &["ls"]), "ls");
    assert!(
        ls.contains(&format!("up.test/org/saved:2.0\t{}", p.manifest.0)),
        "{ls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_incomplete_layouts_are_refused_by_digest() {
    let p = pulled().await;
    let out = tempfile::tempdir().expect("tmp");
    let layout = out.path().join("layout");
    ok(
        wharf_cli(
            &p.cfg,
            &["export", "--all", "-o", layout.to_str().expect("utf8")],
        ),
        "export --all",
    );
    // The big layer, one byte flipped.
    let (bad_d, bad_b) = &p.blobs[1];
    let bad_path = layout
        .join("blobs/sha256")
        .join(bad_d.trim_start_matches("sha256:"));
    let mut flipped = bad_b.clone();
    flipped[12_345] ^= 0x40;
    std::fs::write(&bad_path, &flipped).expect("corrupt");

    let site = tempfile::tempdir().expect("tmp");
    let data_dir = site.path().join("data");
    let cfg = config(site.path(), &data_dir, NOWHERE);
    let err = failed(
        wharf_cli(&cfg, &["import", layout.to_str().expect("utf8")]),
        "import of a corrupt blob",
    );
    assert!(err.contains(bad_d.as_str()), "{err}");
    let hex = bad_d.trim_start_matches("sha256:");
    assert!(
        !data_dir
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .exists(),
        "the corrupt blob was stored"
    );
    let ls = ok(wharf_cli(&cfg, &["ls"]), "ls");
    assert!(!ls.contains("org/app"), "a tag was recorded: {ls}");

    // The same blob missing altogether.
    std::fs::remove_file(&bad_path).expect("rm");
    let err = failed(
        wharf_cli(&cfg, &["import", layout.to_str().expect("utf8")]),
        "import of an incomplete layout",
    );
    assert!(
        err.contains(bad_d.as_str()) && err.contains("missing"),
        "{err}"
    );

    // A tar with a flipped byte in the blob.
    std::fs::write(&bad_path, bad_b).expect("restore");
    let tar = out.path().join("images.tar");
    ok(
        wharf_cli(
            &p.cfg,
            &["export", "--all", "-o", tar.to_str().expect("utf8")],
        ),
        "export tar",
    );
    let mut bytes = std::fs::read(&tar).expect("tar");
    let at = bytes
        .windows(64)
        .position(|w| w == &bad_b[..64])
        .expect("layer in tar");
    bytes[at + 100] ^= 1;
    std::fs::write(&tar, &bytes).expect("corrupt tar");
    let err = failed(
        wharf_cli(&cfg, &["import", tar.to_str().expect("utf8")]),
        "import of a corrupt tar",
    );
    assert!(err.contains(bad_d.as_str()), "{err}");
    assert!(!data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .exists());

    // A tar cut off in the middle of the big layer (a copy that did not finish).
    bytes[at + 100] ^= 1;
    let cut = out.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..at + bad_b.len() / 2]).expect("truncated tar");
    let err = failed(
        wharf_cli(&cfg, &["import", cut.to_str().expect("utf8")]),
        "import of a truncated tar",
    );
    assert!(
        err.contains("cut.tar") && err.contains("truncated"),
        "{err}"
    );
    let ls = ok(wharf_cli(&cfg, &["ls"]), "ls after the refused imports");
    assert!(!ls.contains("org/app"), "a tag was recorded: {ls}");

    // The good archive imports into the same site; a truncated one afterwards leaves it whole.
    std::fs::write(&tar, &bytes).expect("restore tar");
    ok(
        wharf_cli(&cfg, &["import", tar.to_str().expect("utf8")]),
        "import of the good tar",
    );
    failed(
        wharf_cli(&cfg, &["import", cut.to_str().expect("utf8")]),
        "truncated import into a filled cache",
    );
    let ls = ok(wharf_cli(&cfg, &["ls"]), "ls after the good import");
    assert!(ls.contains("up.test/org/app:v1"), "{ls}");
    ok(wharf_cli(&cfg, &["fsck"]), "fsck after the refused import");

    // A cache whose blob was evicted cannot export the image.
    let src_hex = hex;
    std::fs::remove_file(
        p.source
            .path()
            .join("blobs/sha256")
            .join(&src_hex[..2])
            .join(src_hex),
    )
    .expect("evict");
    let err = failed(
        wharf_cli(
            &p.cfg,
            &[
                "export",
                "up.test/org/app:v1",
                "-o",
                out.path().join("again").to_str().expect("utf8"),
            ],
        ),
        "export with an evicted blob",
    );
    assert!(
        err.contains("up.test/org/app:v1") && err.contains(bad_d.as_str()),
        "{err}"
    );
}

/// Interoperability with skopeo: it reads what `export` writes (`oci:` and `oci-archive:`), and
/// `import` reads the `oci-archive:` skopeo writes, whose entries carry only a tag (`--name`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_exports_and_writes_importable_archives() {
    let p = pulled().await;
    let out = tempfile::tempdir().expect("tmp");
    let skopeo = crate::e2e::skopeo::Skopeo::new(out.path());
    let layout = out.path().join("layout");
    let ours = out.path().join("ours.tar");
    for dest in [&layout, &ours] {
        let dest = dest.to_str().expect("utf8");
        ok(
            wharf_cli(&p.cfg, &["export", "up.test/org/app:v1", "-o", dest]),
            "export",
        );
    }
    let theirs = out.path().join("theirs.tar");
    // The fake's "layers" are not gzip: without --preserve-digests skopeo would compress them.
    skopeo.run(&[
        "copy",
        "--preserve-digests",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci-archive:{}:v1", theirs.display()),
    ]);
    let raw = skopeo.run(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:v1", ours.display()),
    ]);
    assert_eq!(raw, p.manifest.1, "skopeo reads the exported tar");

    let site = tempfile::tempdir().expect("tmp");
    let data_dir = site.path().join("data");
    let cfg = config(site.path(), &data_dir, NOWHERE);
    let theirs = theirs.to_str().expect("utf8");
    let err = failed(
        wharf_cli(&cfg, &["import", theirs]),
        "import without --name",
    );
    assert!(err.contains("--name"), "{err}");
    ok(
        wharf_cli(&cfg, &["import", theirs, "--name", "up.test/org/app"]),
        "import --name",
    );
    let w = support::wharf_with(&data_dir, "up.test", NOWHERE, "", "offline = true").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let r = get(&format!("{base}/manifests/v1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().as_ref(), p.manifest.1.as_slice());
    for (d, b) in &p.blobs {
        let r = get(&format!("{base}/blobs/{d}")).await;
        assert_eq!(r.bytes().as_ref(), b.as_slice(), "blob {d}");
    }
    w.shutdown().await;
    assert_eq!(p._fake.total(), p.requests);
}

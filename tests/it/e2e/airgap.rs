//! The air-gapped workflow end to end with the real registry and skopeo: `wharf prefetch` a
//! multi-arch OCI image and a Docker schema2 image from `docker-registry` (directly into a
//! stopped cache, and through a running Wharf), `wharf export` them to a tar, `wharf import`
//! into a fresh Wharf whose upstream does not exist, `wharf serve --offline`, and pull with
//! skopeo by tag and by digest: the digests are the upstream's. An archive written by
//! `skopeo copy ... oci-archive:` imports too.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc::{self, free_port};
use super::skopeo::{assert_same, check_dir};
use super::wharf::{write_config, Wharf, UPSTREAM_NAME};
use super::Setup;

/// `wharf <args> --config <cfg>` with stdout/stderr to files (not terminals), at most 120 s.
/// Returns (exit code, stdout, stderr).
fn wharf_cli(dir: &Path, cfg: &Path, label: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = dir.join(format!("{label}.out"));
    let err = dir.join(format!("{label}.err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create"))
        .stderr(std::fs::File::create(&err).expect("create"))
        .spawn()
        .expect("spawn wharf");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wharf {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status.code(), read(&out), read(&err))
}

fn must(r: (Option<i32>, String, String), what: &str) -> String {
    assert_eq!(r.0, Some(0), "{what} failed:\n{}\n{}", r.1, r.2);
    r.1
}

#[test]
fn e2e_prefetch_export_import_serves_offline() {
    if !proc::tools_present("e2e_prefetch_export_import_serves_offline") {
        return;
    }
    let mut s = Setup::new();
    let (app, multi, docker) = (&s.expected[0], &s.expected[1], &s.expected[2]);
    let connected = s.path("connected");
    std::fs::create_dir_all(&connected).expect("mkdir");
    let url = s.upstream.url();
    let port = free_port();
    let cfg = write_config(&connected, port, free_port(), &url, &s.certs.ca_pem, "");

    // 1. Nothing runs on the cache: prefetch fills it directly. Multi-arch (all platforms)
    //    and Docker schema2, written as users write them.
    let before = s.upstream.blob_gets();
    let multi_ref = format!("{UPSTREAM_NAME}/e2e/multi:v1");
    let docker_ref = format!("{UPSTREAM_NAME}/e2e/docker:v1");
    let out = must(
        wharf_cli(
            &connected,
            &cfg,
            "prefetch-direct",
            &["prefetch", "--all-platforms", &multi_ref, &docker_ref],
        ),
        "prefetch (direct)",
    );
    assert!(out.starts_with("no Wharf is running on"), "{out}");
    assert!(
        !out.contains('\x1b') && !out.contains('\r'),
        "plain output: {out:?}"
    );
    for line in out.lines().skip(1).filter(|l| l.starts_with('[')) {
        assert!(
            line.starts_with("[1/2] ") || line.starts_with("[2/2] "),
            "one event per line: {line}"
        );
    }
    assert!(
        out.contains(&format!(
            "[1/2] {multi_ref}: {} (index: 2 of 2 manifests)",
            multi.digest
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("[2/2] {docker_ref}: {} (image)", docker.digest)),
        "{out}"
    );
    assert!(out.contains("prefetched 2 of 2 images"), "{out}");
    let gets = s.upstream.blob_gets() - before;
    assert_eq!(
        gets,
        multi.blobs + docker.blobs,
        "one upstream GET per blob"
    );

    // 2. A Wharf runs on the cache: prefetch goes through it (a short name, the default
    //    upstream), and a pull afterwards is served without an upstream blob GET.
    let wharf = Wharf::start_with(&connected, &url, &s.certs.ca_pem, "", &[]);
    let before = s.upstream.blob_gets();
    let out = must(
        wharf_cli(
            &connected,
            &cfg_of(&connected),
            "prefetch-server",
            &["prefetch", "e2e/app:v1"],
        ),
        "prefetch (server)",
    );
    assert!(out.starts_with("a Wharf is running on"), "{out}");
    assert!(
        out.contains(&format!("{UPSTREAM_NAME}/e2e/app:v1: {}", app.digest)),
        "{out}"
    );
    assert_eq!(s.upstream.blob_gets() - before, app.blobs);
    let host = wharf.host();
    let tls = ["--src-tls-verify=false"];
    let logs = || wharf.proc.logs();
    s.pull(
        0,
        &format!("docker://{host}/e2e/app:v1"),
        &tls,
        "after-prefetch",
        &logs,
    );
    assert_eq!(
        s.upstream.blob_gets() - before,
        app.blobs,
        "pull after prefetch was a hit"
    );
    drop(wharf);

    // 3. skopeo's own archive of the app image, made while the upstream is still there.
    let cert_dir = s.certs.cert_dir.to_string_lossy().into_owned();
    let skopeo_tar = s.path("skopeo-app.tar");
    let src = format!("docker://{}/e2e/app:v1", s.upstream.host());
    let dest = format!("oci-archive:{}:v1", skopeo_tar.display());
    s.skopeo
        .run(&["copy", "--src-cert-dir", &cert_dir, &src, &dest]);

    // 4. Export everything from the (stopped) connected cache, then lose the upstream.
    let archive = s.path("images.tar");
    let out = must(
        wharf_cli(
            &connected,
            &cfg,
            "export",
            &["export", "--all", "-o", archive.to_str().expect("utf8")],
        ),
        "export",
    );
    assert!(out.contains("exported 3 images"), "{out}");
    s.upstream.stop();

    // 5. A fresh site whose upstream does not exist imports both archives.
    let site = s.path("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let site_cfg = write_config(
        &site,
        free_port(),
        free_port(),
        &nowhere,
        &s.certs.ca_pem,
        "",
    );
    let out = must(
        wharf_cli(
            &site,
            &site_cfg,
            "import",
            &["import", archive.to_str().expect("utf8")],
        ),
        "import",
    );
    assert!(out.contains(&format!("imported {multi_ref}")), "{out}");
    let name = format!("{UPSTREAM_NAME}/e2e/skopeo-app");
    let out = must(
        wharf_cli(
            &site,
            &site_cfg,
            "import-skopeo",
            &[
                "import",
                "--name",
                &name,
                skopeo_tar.to_str().expect("utf8"),
            ],
        ),
        "import of skopeo's oci-archive",
    );
    assert!(out.contains(&format!("imported {name}:v1")), "{out}");

    // 6. Served offline, by tag and by digest, with the upstream's digests.
    let wharf = Wharf::start_with(&site, &nowhere, &s.certs.ca_pem, "", &["--offline"]);
    let host = wharf.host();
    let logs = || wharf.proc.logs();
    for (i, image) in s.images.iter().enumerate() {
        let (repo, tag, digest) = (image.repo, image.tag, &s.expected[i].digest);
        let by_tag = format!("docker://{host}/{repo}:{tag}");
        s.pull(i, &by_tag, &tls, &format!("offline-{i}-tag"), &logs);
        let by_digest = format!("docker://{host}/{UPSTREAM_NAME}/{repo}@{digest}");
        s.pull(i, &by_digest, &tls, &format!("offline-{i}-digest"), &logs);
    }
    let dest = s.path("pull-skopeo-app");
    let src = format!("docker://{host}/e2e/skopeo-app:v1");
    let dest_ref = format!("dir:{}", dest.display());
    if let Err(e) = s
        .skopeo
        .try_run(&["copy", "--src-tls-verify=false", &src, &dest_ref])
    {
        panic!("pull of the skopeo-made archive failed: {e}\n{}", logs());
    }
    assert_same(&check_dir(&dest), app, "skopeo oci-archive imported");
}

/// The config file `Wharf::start_with` wrote for `dir`.
fn cfg_of(dir: &Path) -> std::path::PathBuf {
    dir.join("wharf.toml")
}

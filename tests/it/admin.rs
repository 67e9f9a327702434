//! The admin API (`/admin/v1/`) and `wharf cache`: off without a token (404), 401 without
//! or with a wrong token, the JSON of the read endpoints, and the CLI run as the built binary
//! against an in-process Wharf.

use crate::support::{self, data, get, send, BlobBehavior, Fake};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";

/// A token file (mode 0600) in `dir`.
pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("admin-token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// An in-process Wharf on `fake` with the admin API on (its token in `dir`), and `extra` in
/// its `[[upstream]]`.
pub async fn wharf_with_api(dir: &Path, fake: &Fake, top: &str) -> wharf::app::Running {
    wharf_with_api_up(dir, fake, top, "").await
}

/// [`wharf_with_api`] with `extra` in the `[[upstream]]` table.
pub async fn wharf_with_api_up(
    dir: &Path,
    fake: &Fake,
    top: &str,
    extra: &str,
) -> wharf::app::Running {
    let tf = token_file(dir);
    let data = dir.join("data");
    let top = format!(
        "{top}\n[admin]\ntoken_file = {:?}\n",
        tf.display().to_string()
    );
    support::wharf_with(&data, "up.test", &fake.url(), extra, &top).await
}

/// Makes the fake send blob `d` slowly (64 KiB every 40 ms), so that its fill stays visible.
fn slow(fake: &Fake, d: &str) {
    fake.set_behavior(
        d,
        BlobBehavior {
            chunk: 64 * 1024,
            delay: Duration::from_millis(40),
            ..Default::default()
        },
    );
}

/// `POST /admin/v1/purge?ref=<r>` with the token.
async fn purge_api(w: &wharf::app::Running, r: &str) -> support::Resp {
    let url = format!("http://{}/admin/v1/purge?ref={r}", w.admin_addr);
    let auth = format!("Bearer {TOKEN}");
    send(
        "POST",
        &url,
        &[("authorization", &auth)],
        Default::default(),
    )
    .await
}

async fn admin_get(w: &wharf::app::Running, path: &str, token: Option<&str>) -> support::Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    // No token dance: the challenge's realm is not a token service.
    send(
        "GET",
        &format!("http://{}{path}", w.admin_addr),
        &headers,
        Default::default(),
    )
    .await
}

/// An image whose config has labels and whose manifest has annotations.
fn put_labelled_image(fake: &Fake, repo: &str, tag: &str, layer: &[u8]) -> String {
    let config = r#"{"architecture":"amd64","os":"linux","config":{"Labels":{"org.opencontainers.image.licenses":"MIT","maintainer":"ops"}}}"#;
    let cd = fake.put_blob_in(repo, config.as_bytes());
    let ld = fake.put_blob_in(repo, layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}],"annotations":{{"org.opencontainers.image.source":"https://example.com/app","org.opencontainers.image.description":"an app"}}}}"#,
        config.len(),
        layer.len()
    );
    fake.put_manifest(
        repo,
        Some(tag),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )
}

/// Pulls `repo:tag` and every blob of its manifest through `w`.
pub async fn pull(w: &wharf::app::Running, repo: &str, tag: &str) {
    let base = format!("http://{}/v2/{repo}", w.addr);
    let m = get(&format!("{base}/manifests/{tag}")).await;
    assert_eq!(m.status, 200, "manifest {repo}:{tag}");
    let doc = m.json();
    let mut digests = vec![doc["config"]["digest"]
        .as_str()
        .expect("present")
        .to_string()];
    for l in doc["layers"].as_array().expect("present") {
        digests.push(l["digest"].as_str().expect("present").to_string());
    }
    for d in digests {
        assert_eq!(
            get(&format!("{base}/blobs/{d}")).await.status,
            200,
            "blob {d}"
        );
    }
    settled(w).await;
}

/// Waits until no fill is in flight (a client has its last byte before the commit ends).
pub async fn settled(w: &wharf::app::Running) {
    for _ in 0..250 {
        if w.registry.fills_view().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fills still in flight after 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_off_without_a_token_and_metrics_stay_open() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    for path in ["/admin/v1/upstreams", "/admin/v1/fills", "/admin/"] {
        assert_eq!(admin_get(&w, path, Some(TOKEN)).await.status, 404, "{path}");
    }
    assert_eq!(admin_get(&w, "/metrics", None).await.status, 200);
    assert_eq!(admin_get(&w, "/healthz", None).await.status, 200);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_or_with_a_wrong_token_the_api_answers_401() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    let wrong = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    for token in [None, Some(wrong.as_str()), Some(""), Some(&TOKEN[..32])] {
        let r = admin_get(&w, "/admin/v1/upstreams", token).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert!(r.headers.contains_key("www-authenticate"));
    }
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    let url = format!("http://{}/admin/v1/upstreams", w.admin_addr);
    assert_eq!(
        send("GET", &url, &basic, Default::default()).await.status,
        401
    );
    assert_eq!(
        admin_get(&w, "/admin/v1/upstreams", Some(TOKEN))
            .await
            .status,
        200
    );
    assert_eq!(admin_get(&w, "/metrics", None).await.status, 200);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstreams_repositories_tags_and_image_report_what_is_cached() {
    let fake = Fake::start().await;
    let layer = data(50_000, 7);
    let digest = put_labelled_image(&fake, "org/app", "v1", &layer);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "[cache]\npin = [\"up.test/org/app:v*\"]").await;
    pull(&w, "org/app", "v1").await;
    let t = Some(TOKEN);

    let ups = admin_get(&w, "/admin/v1/upstreams", t).await.json();
    let up = &ups["upstreams"][0];
    assert_eq!(up["name"], "up.test", "{ups}");
    assert_eq!(up["breaker"], "closed");
    assert_eq!(up["cached"]["blobs"], 2, "{ups}");
    assert_eq!(up["cached"]["repositories"], 1);
    let config_len = up["cached"]["bytes"].as_u64().expect("present") - layer.len() as u64;
    assert!(config_len > 0 && config_len < 1000, "{ups}");

    let repos = admin_get(&w, "/admin/v1/repositories?upstream=up.test", t)
        .await
        .json();
    let r = &repos["repositories"][0];
    assert_eq!(r["repository"], "org/app", "{repos}");
    assert_eq!(r["tags"], 1);
    assert_eq!(r["blobs"], 2);
    assert!(r["last_pulled"].is_string(), "{repos}");

    let tags = admin_get(&w, "/admin/v1/tags?repository=up.test/org/app", t)
        .await
        .json();
    let tag = &tags["tags"][0];
    assert_eq!(tag["tag"], "v1", "{tags}");
    assert_eq!(tag["digest"], digest.as_str());
    assert_eq!(
        tag["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(tag["pinned"], true);
    assert_eq!(tag["size"], up["cached"]["bytes"]);

    let img = admin_get(&w, "/admin/v1/image?ref=up.test/org/app:v1", t)
        .await
        .json();
    assert_eq!(img["digest"], digest.as_str(), "{img}");
    assert_eq!(img["layers"][0]["size"], layer.len() as u64);
    assert_eq!(img["layers"][0]["cached"], true);
    assert_eq!(img["labels"]["org.opencontainers.image.licenses"], "MIT");
    assert_eq!(
        img["annotations"]["org.opencontainers.image.source"],
        "https://example.com/app"
    );
    assert_eq!(img["pinned_by"][0], "cache.pin up.test/org/app:v*");
    let by_digest = format!("/admin/v1/image?ref=up.test/org/app@{digest}");
    assert_eq!(
        admin_get(&w, &by_digest, t).await.json()["layers"],
        img["layers"]
    );

    let missing = admin_get(&w, "/admin/v1/image?ref=up.test/org/app:v2", t).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]
        .as_str()
        .expect("present")
        .contains("not in the cache"));
    let bad = admin_get(&w, "/admin/v1/image?ref=nonsense", t).await;
    assert_eq!(bad.status, 400);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fills_in_progress_show_bytes_written_size_waiters_and_origin() {
    let fake = Fake::start().await;
    let big = data(2 * 1024 * 1024, 8);
    let d = fake.put_blob_in("org/app", &big);
    slow(&fake, &d);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    let url = format!("http://{}/v2/org/app/blobs/{d}", w.addr);
    let readers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_owned(url.clone())))
        .collect();
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        seen = admin_get(&w, "/admin/v1/fills", Some(TOKEN)).await.json();
        let f = &seen["fills"][0];
        if f["state"] == "streaming" && f["written"].as_u64() > Some(0) && f["waiters"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let f = &seen["fills"][0];
    assert_eq!(f["digest"], d.as_str(), "{seen}");
    assert_eq!(f["state"], "streaming", "{seen}");
    assert_eq!(f["size"], big.len() as u64);
    assert_eq!(f["waiters"], 2, "{seen}");
    assert_eq!(f["origin"], "up.test");
    for r in readers {
        assert_eq!(r.await.expect("present"), 200);
    }
    // The fill leaves the list once committed.
    settled(&w).await;
    let after = admin_get(&w, "/admin/v1/fills", Some(TOKEN)).await.json();
    assert_eq!(after["fills"], serde_json::json!([]), "{after}");
    w.shutdown().await;
}

async fn get_owned(url: String) -> u16 {
    get(&url).await.status.as_u16()
}

/// `wharf cache ...` as the built binary, with `args` after `cache`.
fn cli(w: &wharf::app::Running, token: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("cache").args(args);
    cmd.args(["--admin", &format!("http://{}", w.admin_addr)]);
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    cmd.env_remove("WHARF_ADMIN_TOKEN")
        .output()
        .expect("run wharf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wharf_cache_ls_and_inspect_print_tables_json_and_one_line_errors() {
    let fake = Fake::start().await;
    let layer = data(30_000, 9);
    let digest = put_labelled_image(&fake, "org/app", "v1", &layer);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    pull(&w, "org/app", "v1").await;
    let tf = dir.path().join("admin-token");
    let run = |args: &[&str]| tokio::task::block_in_place(|| cli(&w, Some(&tf), args));
    let out = run(&["ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.starts_with("UPSTREAM") && text.contains("up.test"),
        "{text}"
    );
    let out = run(&["ls", "up.test"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("org/app"),
        "{out:?}"
    );
    let out = run(&["ls", "up.test/org/app", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["tags"][0]["digest"], digest.as_str());
    let out = run(&["inspect", "up.test/org/app:v1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&digest)
            && text.contains("org.opencontainers.image.source=https://example.com/app"),
        "{text}"
    );
    assert!(
        text.contains("org.opencontainers.image.licenses=MIT"),
        "{text}"
    );

    // Errors: one line, exit status 1.
    let one_line = |out: &std::process::Output, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    };
    one_line(
        &run(&["inspect", "up.test/org/app:nope"]),
        "not in the cache",
    );
    one_line(&run(&["inspect", "nonsense"]), "UPSTREAM/REPO");
    let no_token = tokio::task::block_in_place(|| cli(&w, None, &["ls"]));
    one_line(&no_token, "refused the token");
    let addr = w.admin_addr;
    w.shutdown().await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    let gone = cmd
        .args([
            "cache",
            "ls",
            "--admin",
            &format!("http://{addr}"),
            "--token-file",
        ])
        .arg(&tf)
        .output()
        .expect("run");
    one_line(&gone, "is Wharf running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pin_set_with_wharf_cache_pin_survives_a_restart_and_unpin_removes_it() {
    let fake = Fake::start().await;
    let layer = data(20_000, 10);
    let digest = put_labelled_image(&fake, "org/app", "v1", &layer);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    pull(&w, "org/app", "v1").await;
    let tf = dir.path().join("admin-token");
    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["pin", "up.test/org/app:v1"]));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pinned up.test/org/app:v1"));
    // Not cached: refused, so a typo pins nothing.
    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["pin", "up.test/org/app:v9"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    w.shutdown().await;

    let w = wharf_with_api(dir.path(), &fake, "").await;
    let t = Some(TOKEN);
    let img = admin_get(&w, "/admin/v1/image?ref=up.test/org/app:v1", t)
        .await
        .json();
    assert_eq!(img["pinned"], true, "{img}");
    let why = img["pinned_by"][0].as_str().expect("a reason");
    assert!(
        why.starts_with("wharf cache pin up.test/org/app:v1 (since "),
        "{why}"
    );
    let by_digest = format!("/admin/v1/image?ref=up.test/org/app@{digest}");
    assert_eq!(admin_get(&w, &by_digest, t).await.json()["pinned"], true);
    let pins = admin_get(&w, "/admin/v1/pins", t).await.json();
    assert_eq!(pins["pins"][0]["ref"], "up.test/org/app:v1", "{pins}");
    // Eviction keeps it: the store's pinned set, which the evictor uses, names its blobs.
    let keep = w.registry.store().pinned_digests(&[]).expect("pinned");
    assert_eq!(keep.len(), 3, "manifest, config, layer: {keep:?}");

    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["unpin", "up.test/org/app:v1"]));
    assert!(out.status.success(), "{out:?}");
    let img = admin_get(&w, "/admin/v1/image?ref=up.test/org/app:v1", t)
        .await
        .json();
    assert_eq!(img["pinned"], false, "{img}");
    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["unpin", "up.test/org/app:v1"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run-time pin"));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_shows_a_moved_tag_before_tag_ttl_even_an_immutable_one() {
    let fake = Fake::start().await;
    let (old, _) = fake.put_image("org/app", "v1", &[&data(5_000, 11)]);
    let dir = tempfile::tempdir().expect("tmp");
    let extra = "tag_ttl = \"1h\"\nimmutable_tags = [\"^v\"]";
    let w = wharf_with_api_up(dir.path(), &fake, "", extra).await;
    pull(&w, "org/app", "v1").await;
    let tf = dir.path().join("admin-token");

    let out =
        tokio::task::block_in_place(|| cli(&w, Some(&tf), &["refresh", "up.test/org/app:v1"]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("up.test/org/app:v1 unchanged: {old}"));

    let (new, _) = fake.put_image("org/app", "v1", &[&data(5_000, 12)]);
    let url = format!("http://{}/v2/org/app/manifests/v1", w.addr);
    assert_eq!(
        support::digest_of(get(&url).await.bytes()),
        old,
        "served from the cache"
    );
    let gets = fake.count("GET manifest");
    let out =
        tokio::task::block_in_place(|| cli(&w, Some(&tf), &["refresh", "up.test/org/app:v1"]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("up.test/org/app:v1 moved: {old} -> {new}")
    );
    assert_eq!(
        fake.count("GET manifest"),
        gets + 1,
        "one GET of the new manifest"
    );
    assert_eq!(
        support::digest_of(get(&url).await.bytes()),
        new,
        "the tag moved"
    );
    assert_eq!(
        fake.count("GET manifest"),
        gets + 1,
        "then served from the cache"
    );

    let r = send(
        "POST",
        &format!(
            "http://{}/admin/v1/refresh?ref=up.test/org/app:v1",
            w.admin_addr
        ),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Default::default(),
    )
    .await
    .json();
    assert_eq!(r["result"], "unchanged", "{r}");
    assert_eq!(r["digest"], new.as_str());
    let out =
        tokio::task::block_in_place(|| cli(&w, Some(&tf), &["refresh", "up.test/org/app:nope"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_wharf_cache_purge_the_next_pull_fetches_from_the_upstream_again() {
    let fake = Fake::start().await;
    fake.put_image("org/app", "v1", &[&data(40_000, 13)]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    pull(&w, "org/app", "v1").await;
    let (m0, b0) = (fake.count("GET manifest"), fake.count("GET blob"));
    pull(&w, "org/app", "v1").await;
    assert_eq!(
        (fake.count("GET manifest"), fake.count("GET blob")),
        (m0, b0),
        "cached"
    );

    let tf = dir.path().join("admin-token");
    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["purge", "up.test/org/app:v1"]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("purged up.test/org/app:v1: 1 tags, 1 manifests, 2 blobs"),
        "{text}"
    );
    let ups = admin_get(&w, "/admin/v1/upstreams", Some(TOKEN))
        .await
        .json();
    assert_eq!(ups["upstreams"][0]["cached"]["blobs"], 0, "{ups}");
    let out = tokio::task::block_in_place(|| cli(&w, Some(&tf), &["purge", "up.test/org/app:v1"]));
    assert_eq!(out.status.code(), Some(1), "nothing left: {out:?}");

    pull(&w, "org/app", "v1").await;
    assert_eq!(fake.count("GET manifest"), m0 + 1, "the manifest again");
    assert_eq!(fake.count("GET blob"), b0 + 2, "config and layer again");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_during_a_fill_of_its_blob_changes_nothing_and_the_client_gets_every_byte() {
    let fake = Fake::start().await;
    let big = data(1024 * 1024, 14);
    fake.put_image("org/app", "v1", &[&big]);
    let d = support::digest_of(&big);
    slow(&fake, &d);
    let dir = tempfile::tempdir().expect("tmp");
    let w = wharf_with_api(dir.path(), &fake, "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    assert_eq!(get(&format!("{base}/manifests/v1")).await.status, 200);
    let reader = tokio::spawn(get_owned(format!("{base}/blobs/{d}")));
    for _ in 0..100 {
        if !w.registry.fills_view().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = purge_api(&w, "up.test/org/app:v1").await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .expect("msg")
        .contains("being filled"));
    assert_eq!(
        reader.await.expect("join"),
        200,
        "the in-flight client is served"
    );
    settled(&w).await;
    let img = admin_get(&w, "/admin/v1/image?ref=up.test/org/app:v1", Some(TOKEN)).await;
    assert_eq!(img.status, 200, "nothing was purged");
    // Once the fill is done, the purge goes through.
    let r = purge_api(&w, "up.test/org/app:v1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["freed_bytes"]
            .as_u64()
            .map(|b| b >= big.len() as u64),
        Some(true)
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_is_counted_and_told_as_a_purge_event() {
    let fake = Fake::start().await;
    let (digest, _) = fake.put_image("org/app", "v1", &[&data(10_000, 21)]);
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("events.jsonl");
    let top = format!(
        "[[notify]]\nfile = {:?}\nevents = [\"purge\"]\n",
        events.display().to_string()
    );
    let w = wharf_with_api(dir.path(), &fake, &top).await;
    pull(&w, "org/app", "v1").await;
    let r = purge_api(&w, "up.test/org/app:v1").await;
    assert_eq!(r.status, 200, "{:?}", r.bytes());
    let text = crate::support::scrape::scrape(w.admin_addr).await;
    let purged =
        crate::support::scrape::sample(&text, "wharf_cache_removals_total{reason=\"purge\"}");
    assert_eq!(
        purged, 3.0,
        "the manifest, the config and the layer:\n{text}"
    );
    let mut line = None;
    for _ in 0..100 {
        let body = std::fs::read_to_string(&events).unwrap_or_default();
        line = body
            .lines()
            .find(|l| l.contains(&digest))
            .map(str::to_string);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = line.expect("a purge event naming the manifest");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(v["action"], "purge");
    assert_eq!(v["target"]["digest"], digest);
    assert_eq!(v["target"]["repository"], "org/app");
    w.shutdown().await;
}

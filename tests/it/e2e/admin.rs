//! `wharf cache` against the real `wharf serve`, with `docker-registry` upstream and `skopeo`
//! pulling: a purged image is fetched from the upstream again on the next pull; a refreshed
//! tag that moved upstream is served moved at once, well within `tag_ttl`.

use super::proc;
use super::wharf::{Wharf, UPSTREAM_NAME};
use super::Setup;
use std::os::unix::fs::PermissionsExt;

/// `wharf serve` with `tag_ttl = "1h"` and the admin API on (a token file beside it).
fn with_admin(s: &Setup) -> (Wharf, std::path::PathBuf) {
    let token_file = s.path("admin-token");
    std::fs::write(&token_file, "e2e-admin-token-0123456789abcdefghijklmnop\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let keys = format!(
        "tag_ttl = \"1h\"\n\n[admin]\ntoken_file = {}\n",
        serde_json::to_string(&token_file.to_string_lossy()).expect("quote")
    );
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, &keys, &[]);
    (wharf, token_file)
}

/// Runs `wharf cache <command> <reference>` against `wharf`'s admin API.
fn cache(
    wharf: &Wharf,
    token_file: &std::path::Path,
    command: &str,
    reference: &str,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["cache", command, reference, "--admin"])
        .arg(format!("http://127.0.0.1:{}", wharf.admin_port))
        .arg("--token-file")
        .arg(token_file)
        .output()
        .unwrap_or_else(|e| panic!("run wharf cache {command}: {e}"))
}

#[test]
fn e2e_wharf_cache_purge_then_pull_fetches_from_the_upstream_again() {
    if !proc::tools_present("e2e_wharf_cache_purge_then_pull_fetches_from_the_upstream_again") {
        return;
    }
    let s = Setup::new();
    let (wharf, token_file) = with_admin(&s);
    let (image, blobs) = (&s.images[0], s.expected[0].blobs);
    let source = format!("docker://{}/{}:{}", wharf.host(), image.repo, image.tag);
    let tls = ["--src-tls-verify=false"];
    let logs = || wharf.proc.logs();

    let before = s.upstream.blob_gets();
    s.pull(0, &source, &tls, "cold", &logs);
    assert_eq!(s.upstream.blob_gets() - before, blobs, "cold pull");
    s.pull(0, &source, &tls, "warm", &logs);
    assert_eq!(
        s.upstream.blob_gets() - before,
        blobs,
        "warm pull: from the cache"
    );

    let reference = format!("{UPSTREAM_NAME}/{}:{}", image.repo, image.tag);
    let out = cache(&wharf, &token_file, "purge", &reference);
    assert!(out.status.success(), "{out:?}\n{}", logs());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("purged {reference}: 1 tags")),
        "{text}"
    );

    s.pull(0, &source, &tls, "after-purge", &logs);
    assert_eq!(
        s.upstream.blob_gets() - before,
        2 * blobs,
        "every blob fetched again"
    );
}

#[test]
fn e2e_wharf_cache_refresh_shows_a_moved_tag_before_tag_ttl() {
    if !proc::tools_present("e2e_wharf_cache_refresh_shows_a_moved_tag_before_tag_ttl") {
        return;
    }
    let s = Setup::new();
    let (wharf, token_file) = with_admin(&s);
    let source = format!("docker://{}/e2e/app:v1", wharf.host());
    let tls = ["--src-tls-verify=false"];
    let logs = || wharf.proc.logs();
    s.pull(0, &source, &tls, "before", &logs);
    // The tag moves upstream: e2e/app:v1 becomes the image of e2e/docker.
    let cert_dir = s.certs.cert_dir.to_string_lossy().into_owned();
    let layout = format!("oci:{}:v1", s.images[2].layout.display());
    let dest = format!("docker://{}/e2e/app:v1", s.upstream.host());
    s.skopeo.run(&[
        "copy",
        "--dest-cert-dir",
        &cert_dir,
        "--format",
        "v2s2",
        &layout,
        &dest,
    ]);
    // Within tag_ttl, Wharf still serves what it confirmed.
    s.pull(0, &source, &tls, "within-ttl", &logs);
    let reference = format!("{UPSTREAM_NAME}/e2e/app:v1");
    let out = cache(&wharf, &token_file, "refresh", &reference);
    assert!(out.status.success(), "{out:?}\n{}", logs());
    let text = String::from_utf8_lossy(&out.stdout);
    let moved = format!(
        "{reference} moved: {} -> {}",
        s.expected[0].digest, s.expected[2].digest
    );
    assert!(text.contains(&moved), "{text}");
    // The next pull gets the new image at once.
    s.pull(2, &source, &tls, "after-refresh", &logs);
}

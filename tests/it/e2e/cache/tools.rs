//! `wharf fsck [--repair]` and `wharf gc` on the data dir of a stopped Wharf.

use super::{Cli, WharfProc, World};
use crate::support::scrape::{blob_path, sample};
use crate::support::{data, digest_of};
use std::path::Path;
use std::time::Duration;

const GRACE: Duration = Duration::from_secs(3);

/// Pulls `repo:tag` by tag (manifest, config, layers), checking every blob's bytes against its
/// digest; returns (digest, size) of the config and each layer.
fn pull(w: &World, wharf: &WharfProc, repo: &str, tag: &str) -> Vec<(String, u64)> {
    let url = format!("http://127.0.0.1:{}/v2/{repo}/manifests/{tag}", wharf.port);
    let r = w.get(&url);
    assert_eq!(
        r.status,
        200,
        "manifest {repo}:{tag}\n{}",
        wharf.proc.logs()
    );
    let m = r.json();
    let mut descs = vec![m["config"].clone()];
    descs.extend(m["layers"].as_array().expect("layers").iter().cloned());
    descs
        .iter()
        .map(|desc| {
            let d = desc["digest"].as_str().expect("digest").to_string();
            let r = w.get(&wharf.blob_url(repo, &d));
            assert_eq!(r.status, 200, "blob {d}\n{}", wharf.proc.logs());
            assert_eq!(digest_of(r.bytes()), d, "bytes of {d}");
            (d, r.bytes().len() as u64)
        })
        .collect()
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Every file name under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn assert_exit(cli: &Cli, code: i32, what: &str) {
    assert_eq!(cli.code, Some(code), "{what}: exit status\n{}", cli.output);
}

/// An image `org/app:v1` of two layers, pulled through a Wharf that is then stopped; returns
/// the layers' digests.
fn cached_app(w: &World) -> Vec<String> {
    let layers = [data(300 << 10, 400), data(200 << 10, 401)];
    w.fake.put_image("org/app", "v1", &[&layers[0], &layers[1]]);
    let mut wharf = w.start(GRACE);
    let pulled = pull(w, &wharf, "org/app", "v1");
    wharf.proc.stop();
    assert_eq!(w.fake.count("GET blob"), 3, "config and two layers fetched");
    pulled[1..].iter().map(|(d, _)| d.clone()).collect()
}

#[test]
fn e2e_fsck_finds_a_corrupt_blob_and_repair_quarantines_it() {
    let w = World::new("fsck-corrupt", "");
    let layers = cached_app(&w);
    let clean = w.cli(&["fsck"]);
    assert_exit(&clean, 0, "fsck of a clean cache");

    let path = blob_path(&w.data_dir(), &layers[0]);
    let mut bytes = std::fs::read(&path).expect("blob file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).expect("corrupt the blob");

    let found = w.cli(&["fsck"]);
    assert_exit(&found, 1, "fsck of a corrupt blob");
    assert!(
        found.output.contains(hex(&layers[0])),
        "fsck names the corrupt blob {}:\n{}",
        layers[0],
        found.output
    );
    assert!(path.exists(), "fsck without --repair changes nothing");

    let repaired = w.cli(&["fsck", "--repair"]);
    assert_exit(&repaired, 0, "fsck --repair");
    assert!(!path.exists(), "the corrupt file left blobs/");
    let quarantined = files_under(&w.data_dir().join("quarantine"));
    assert!(
        quarantined.iter().any(|n| n.contains(hex(&layers[0]))),
        "the corrupt file is in quarantine/: {quarantined:?}"
    );
    assert_exit(&w.cli(&["fsck"]), 0, "fsck after the repair");

    let wharf = w.start(GRACE);
    let r = w.get(&wharf.blob_url("org/app", &layers[0]));
    assert_eq!(r.status, 200, "{}", wharf.proc.logs());
    assert_eq!(digest_of(r.bytes()), layers[0], "the blob, fetched again");
    assert_eq!(w.fake.count("GET blob"), 4, "refetched once");
    let r = w.get(&wharf.blob_url("org/app", &layers[1]));
    assert_eq!(digest_of(r.bytes()), layers[1]);
    assert_eq!(w.fake.count("GET blob"), 4, "the healthy blob is a hit");
}

#[test]
fn e2e_fsck_finds_a_missing_blob_file_and_repair_drops_its_record() {
    let w = World::new("fsck-missing", "");
    let layers = cached_app(&w);
    let path = blob_path(&w.data_dir(), &layers[1]);
    std::fs::remove_file(&path).expect("remove the blob file");

    let found = w.cli(&["fsck"]);
    assert_exit(&found, 1, "fsck of a missing blob file");
    assert!(
        found.output.contains(hex(&layers[1])),
        "fsck names the missing blob {}:\n{}",
        layers[1],
        found.output
    );
    assert_exit(&w.cli(&["fsck", "--repair"]), 0, "fsck --repair");
    assert_exit(&w.cli(&["fsck"]), 0, "fsck after the repair");

    let wharf = w.start(GRACE);
    let metrics = w.get(&format!("http://127.0.0.1:{}/metrics", wharf.admin_port));
    let text = String::from_utf8_lossy(metrics.bytes()).into_owned();
    assert_eq!(
        sample(&text, "wharf_cache_blobs"),
        2.0,
        "the config and one layer are left"
    );
    let r = w.get(&wharf.blob_url("org/app", &layers[1]));
    assert_eq!(r.status, 200, "{}", wharf.proc.logs());
    assert_eq!(digest_of(r.bytes()), layers[1], "the blob, fetched again");
    assert_eq!(w.fake.count("GET blob"), 4, "refetched once");
}

/// The two numbers after "freed" in `wharf gc`'s output (`freed N blobs, M bytes`).
fn freed(output: &str) -> Option<(u64, u64)> {
    let rest = &output[output.find("freed")? + 5..];
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

#[test]
fn e2e_gc_frees_unpinned_blobs_down_to_the_target() {
    let top = "[cache]\nmax_size = \"1GiB\"\npin = [\"up.test/org/base:*\"]\n";
    let w = World::new("gc", top);
    let base_layer = data(100 << 10, 410);
    w.fake.put_image("org/base", "v1", &[&base_layer]);
    let layers = [data(300 << 10, 411), data(200 << 10, 412)];
    w.fake.put_image("org/app", "v1", &[&layers[0], &layers[1]]);
    let mut wharf = w.start(GRACE);
    let base = pull(&w, &wharf, "org/base", "v1");
    let app = pull(&w, &wharf, "org/app", "v1");
    wharf.proc.stop();
    assert_eq!(w.fake.count("GET blob"), 5);

    let gc = w.cli(&["gc", "--to", "1"]);
    assert_exit(&gc, 0, "wharf gc --to 1");
    let app_bytes: u64 = app.iter().map(|(_, n)| n).sum();
    assert_eq!(
        freed(&gc.output),
        Some((3, app_bytes)),
        "gc frees the app's three blobs, not the pinned base's:\n{}",
        gc.output
    );
    for (d, _) in &app {
        assert!(!blob_path(&w.data_dir(), d).exists(), "{d} freed");
    }
    for (d, _) in &base {
        assert!(blob_path(&w.data_dir(), d).exists(), "pinned {d} kept");
    }
    assert_exit(&w.cli(&["fsck"]), 0, "fsck after gc");

    let wharf = w.start(GRACE);
    pull(&w, &wharf, "org/app", "v1");
    assert_eq!(w.fake.count("GET blob"), 8, "the app fetched again");
    pull(&w, &wharf, "org/base", "v1");
    assert_eq!(w.fake.count("GET blob"), 8, "the pinned base is a hit");
}

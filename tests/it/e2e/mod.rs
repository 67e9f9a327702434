//! End-to-end tests with real software: CNCF Distribution (`docker-registry`) as the HTTPS
//! upstream, `skopeo` as the client, and the `wharf` binary that cargo built in between.
//!
//! Needs `docker-registry`, `skopeo` and `openssl` on PATH (Debian packages of those names);
//! without them the tests fail, unless `WHARF_SKIP_E2E=1`, which makes them skip.
//!
//! - `admin`: `wharf cache purge` between two pulls (the purged blobs fetched again), and
//!   `wharf cache refresh` of a tag moved upstream before `tag_ttl`.
//! - `airgap`: `wharf prefetch` → `export` → `import` into a fresh Wharf → `serve --offline`.
//! - `proc`: child processes stopped on drop, free ports, polling, the tool check.
//! - `images`: OCI image layouts generated in Rust (tar, gzip, config, manifest, index).
//! - `upstream`: certificates, the registry, and the parser of its request log.
//! - `skopeo`: sealed skopeo runs and the checks of `dir:` copies.
//! - `wharf`: the `wharf serve` child process.
//! - `token_server`: the upstream's token service (ES256 JWTs), for `auth`.
//! - `auth`: the registry behind token auth, directly and through Wharf.
//! - `push`: `skopeo copy` pushing through Wharf to the registry behind token auth, the next
//!   pull a cache hit; the referrers tag-schema fallback against the registry.
//! - `resilience`: a tag moved upstream seen after `tag_ttl`; `wharf serve --offline`.
//! - `rules`: repository rules refusing a pull before any upstream request.
//! - `expiry`: `cache.max_idle` sweeping an image, `upstream.max_size` with two upstreams.
//! - `dashboard`: the Grafana dashboard's queries and metric names (no external software).
//! - `prometheus`: a real Prometheus (`prometheus` on PATH) and the text exposition format.
//! - `cache`: `kill -9` during fills, `wharf fsck` and `wharf gc` (in-process fake upstream,
//!   no external software).
//! - `mtls`: an upstream requiring client certificates; `[tls]` startup errors.
//! - `metrics`: Wharf's `/metrics` after a pull, scraped by Prometheus, against the dashboard.
//! - `containerd`, `podman`: real containerd (`ctr images pull --hosts-dir`) and real Podman
//!   (`registries.conf` mirror) pulling through Wharf; `runtimes`: what they share. They need
//!   `containerd`, `ctr` and `podman` on PATH and root.
//! - `garage`: a real Garage cluster (S3-compatible, `garage` 2.x, built by `scripts/setup.sh
//!   --test`) on loopback, with a bucket and a key; `cluster`: three Wharf replicas sharing
//!   that bucket, concurrent cold pulls, a replica killed mid-pull, a fresh replica served
//!   without upstream requests.

mod admin;
mod airgap;
mod auth;
mod cache;
mod cluster;
mod containerd;
mod dashboard;
mod expiry;
pub(crate) mod garage;
mod images;
mod metrics;
pub(crate) mod mtls;
mod podman;
pub(crate) mod proc;
mod prometheus;
mod push;
mod resilience;
mod rules;
mod runtimes;
mod s3_backend;
pub(crate) mod skopeo;
mod tls;
pub(crate) mod tls_front;
mod token_flood;
mod token_server;
pub(crate) mod upstream;
mod wharf;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use images::TestImage;
use skopeo::{assert_same, check_dir, expected, Expected, Skopeo};
use upstream::{Certs, Upstream};
use wharf::{Wharf, UPSTREAM_NAME};

/// One test's world: certificates, a running upstream with the three images pushed, and
/// what the upstream says about them. Fields drop in order: the registry before the dir.
struct Setup {
    upstream: Upstream,
    skopeo: Skopeo,
    certs: Certs,
    images: Vec<TestImage>,
    expected: Vec<Expected>,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-")
            .tempdir()
            .expect("tempdir");
        let certs = upstream::make_certs(dir.path());
        let upstream = Upstream::start(dir.path(), &certs);
        let skopeo = Skopeo::new(dir.path());
        let images = images::generate(dir.path());
        let cert_dir = certs.cert_dir.to_string_lossy().into_owned();
        let mut expected_all = Vec::new();
        for image in &images {
            let src = format!("oci:{}:{}", image.layout.display(), image.tag);
            let dest = format!("docker://{}/{}:{}", upstream.host(), image.repo, image.tag);
            let mut args = vec!["copy", "--dest-cert-dir", &cert_dir];
            if image.multi {
                args.push("--all");
            }
            if image.docker {
                args.extend(["--format", "v2s2"]);
            }
            args.extend([src.as_str(), dest.as_str()]);
            if let Err(e) = skopeo.try_run(&args) {
                panic!("push failed: {e}\n{}", upstream.proc.logs());
            }
            let tls = ["--cert-dir", cert_dir.as_str()];
            let exp = expected(&skopeo, &tls, &upstream.host(), image.repo, image.tag);
            expected_all.push(exp);
        }
        // The upstream holds what each test image is meant to exercise.
        assert_eq!(expected_all[0].media_type, images::OCI_MANIFEST);
        assert_eq!(expected_all[1].media_type, images::OCI_INDEX);
        assert_eq!(expected_all[1].instances.len(), 2);
        assert_eq!(expected_all[2].media_type, images::DOCKER_MANIFEST);
        Setup {
            upstream,
            skopeo,
            certs,
            images,
            expected: expected_all,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `skopeo copy` of `source` (a `docker://` reference) into a fresh `dir:` named `label`,
    /// then checks it against image `i`'s upstream truth. `extra_logs` is added to failures.
    fn pull(
        &self,
        i: usize,
        source: &str,
        tls: &[&str],
        label: &str,
        extra_logs: &dyn Fn() -> String,
    ) {
        let dest = self.path(&format!("pull-{label}"));
        let dest_ref = format!("dir:{}", dest.display());
        let mut args = vec!["copy"];
        args.extend_from_slice(tls);
        if self.images[i].multi {
            args.push("--all");
        }
        args.extend([source, dest_ref.as_str()]);
        if let Err(e) = self.skopeo.try_run(&args) {
            panic!("pull {label} failed: {e}\n{}", extra_logs());
        }
        assert_same(&check_dir(&dest), &self.expected[i], label);
    }
}

#[test]
fn e2e_upstream_harness_serves_pushed_images() {
    if !proc::tools_present("e2e_upstream_harness_serves_pushed_images") {
        return;
    }
    let s = Setup::new();
    let cert_dir = s.certs.cert_dir.to_string_lossy().into_owned();
    let tls = ["--src-cert-dir", cert_dir.as_str()];
    let no_logs = || String::new();
    let host = s.upstream.host();
    for (i, image) in s.images.iter().enumerate() {
        let by_tag = format!("docker://{host}/{}:{}", image.repo, image.tag);
        let by_digest = format!("docker://{host}/{}@{}", image.repo, s.expected[i].digest);
        for (source, how) in [(by_tag, "tag"), (by_digest, "digest")] {
            let before = s.upstream.blob_gets();
            s.pull(i, &source, &tls, &format!("direct-{i}-{how}"), &no_logs);
            // Exactly one GET per distinct blob: the log counter counts the right thing.
            let gets = s.upstream.blob_gets() - before;
            assert_eq!(gets, s.expected[i].blobs, "blob GETs for {source}");
        }
    }
    // The pushes' blob HEADs are in the log and were not counted as GETs.
    let reqs = s.upstream.settled_requests();
    let heads = reqs
        .iter()
        .filter(|r| r.method == "HEAD" && r.uri.contains("/blobs/sha256:"));
    assert!(heads.count() > 0, "no blob HEAD logged: {reqs:#?}");
    assert!(
        reqs.iter().any(|r| r.is_manifest()),
        "no manifest request logged"
    );
}

#[test]
fn e2e_wharf_pull_through_cache() {
    if !proc::tools_present("e2e_wharf_pull_through_cache") {
        return;
    }
    let started = Instant::now();
    let mut s = Setup::new();
    let wharf = Wharf::start(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem);
    let host = wharf.host();
    let tls = ["--src-tls-verify=false"];
    let registry_log = s.upstream.proc.stderr.clone();
    let logs = || {
        let registry = std::fs::read_to_string(&registry_log).unwrap_or_default();
        let tail: Vec<&str> = registry.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}\n----- registry stderr (tail) -----\n{}",
            wharf.proc.logs(),
            tail.join("\n")
        )
    };

    // Every image by tag, by digest, and by tag through the path-prefix form.
    let pull_round = |s: &Setup, round: &str| {
        for (i, image) in s.images.iter().enumerate() {
            let (repo, tag, digest) = (image.repo, image.tag, &s.expected[i].digest);
            let by_tag = format!("docker://{host}/{repo}:{tag}");
            s.pull(i, &by_tag, &tls, &format!("{round}-{i}-tag"), &logs);
            let by_digest = format!("docker://{host}/{repo}@{digest}");
            s.pull(i, &by_digest, &tls, &format!("{round}-{i}-digest"), &logs);
            let prefixed = format!("docker://{host}/{UPSTREAM_NAME}/{repo}:{tag}");
            s.pull(i, &prefixed, &tls, &format!("{round}-{i}-prefix"), &logs);
        }
    };

    let before = s.upstream.blob_gets();
    pull_round(&s, "first");
    let after_first = s.upstream.blob_gets();
    let distinct: usize = s.expected.iter().map(|e| e.blobs).sum();
    eprintln!(
        "e2e: first round through Wharf: {} upstream blob GETs for {distinct} distinct blobs",
        after_first - before
    );

    // Second round: everything must come from Wharf's cache.
    let mark = s.upstream.settled_requests().len();
    pull_round(&s, "second");
    let reqs = s.upstream.settled_requests();
    let blob_gets: Vec<_> = reqs[mark..].iter().filter(|r| r.is_blob_get()).collect();
    assert!(
        blob_gets.is_empty(),
        "second pull through Wharf made {} upstream blob GETs: {blob_gets:#?}",
        blob_gets.len()
    );
    let manifests = reqs[mark..].iter().filter(|r| r.is_manifest()).count();
    eprintln!("e2e: second round: 0 upstream blob GETs, {manifests} manifest requests");

    // Upstream gone, tags past their TTL: Wharf still serves by tag and by digest.
    s.upstream.stop();
    std::thread::sleep(Duration::from_millis(1500));
    pull_round(&s, "offline");
    eprintln!("e2e: Wharf pull-through test took {:?}", started.elapsed());
}

//! Freshness and offline mode end to end: a tag moved on the real registry becomes visible
//! through Wharf once `tag_ttl` has passed, and `wharf serve --offline` serves a cache warmed
//! by an earlier run, by tag and by digest, without opening a single upstream connection.

use std::cell::RefCell;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::images::{Layout, Rng};
use super::proc;
use super::skopeo::{assert_same, check_dir, expected, Expected, Skopeo};
use super::upstream::{self, Certs, Upstream};
use super::wharf::Wharf;

/// Certificates, the registry, skopeo. Fields drop in order: the registry before the dir.
struct World {
    upstream: Upstream,
    skopeo: Skopeo,
    certs: Certs,
    rng: RefCell<Rng>,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-resilience-")
            .tempdir()
            .expect("tempdir");
        let certs = upstream::make_certs(dir.path());
        let upstream = Upstream::start(dir.path(), &certs);
        let skopeo = Skopeo::new(dir.path());
        World {
            upstream,
            skopeo,
            certs,
            rng: RefCell::new(Rng::from_entropy()),
            dir,
        }
    }

    fn cert_dir(&self) -> String {
        self.certs.cert_dir.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Generates a new single-platform image (layers of `sizes` random bytes), pushes it as
    /// `repo:tag`, and returns what the registry says about it.
    fn push(&self, label: &str, repo: &str, tag: &str, sizes: &[usize]) -> Expected {
        let layout = Layout::new(&self.path(&format!("layout-{label}")));
        let desc = layout.image(&mut self.rng.borrow_mut(), "amd64", sizes);
        layout.finish(&desc, tag);
        let cert_dir = self.cert_dir();
        let src = format!("oci:{}:{tag}", layout.dir.display());
        let dest = format!("docker://{}/{repo}:{tag}", self.upstream.host());
        let args = ["copy", "--dest-cert-dir", &cert_dir, &src, &dest];
        if let Err(e) = self.skopeo.try_run(&args) {
            panic!("push {label} failed: {e}\n{}", self.upstream.proc.logs());
        }
        let tls = ["--cert-dir", cert_dir.as_str()];
        expected(&self.skopeo, &tls, &self.upstream.host(), repo, tag)
    }

    /// `skopeo copy` of `source` (through a plain-HTTP Wharf) into `dir:pull-<label>`,
    /// checked against `want`.
    fn pull(&self, source: &str, label: &str, want: &Expected, logs: &dyn Fn() -> String) {
        let dest = format!("dir:{}", self.path(&format!("pull-{label}")).display());
        let args = ["copy", "--src-tls-verify=false", source, &dest];
        if let Err(e) = self.skopeo.try_run(&args) {
            panic!("pull {label} failed: {e}\n{}", logs());
        }
        let got = check_dir(&self.path(&format!("pull-{label}")));
        assert_same(&got, want, label);
    }

    /// Wharf's logs and the registry's stderr tail, for failure messages.
    fn logs(&self, wharf: &Wharf) -> String {
        let registry = std::fs::read_to_string(&self.upstream.proc.stderr).unwrap_or_default();
        let tail: Vec<&str> = registry.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}\n----- registry stderr (tail) -----\n{}",
            wharf.proc.logs(),
            tail.join("\n")
        )
    }
}

#[test]
fn e2e_a_tag_moved_upstream_is_seen_through_wharf_after_tag_ttl() {
    if !proc::tools_present("e2e_a_tag_moved_upstream_is_seen_through_wharf_after_tag_ttl") {
        return;
    }
    let w = World::new();
    let (repo, tag) = ("e2e/moving", "latest");
    let first = w.push("first", repo, tag, &[64 << 10, 2000]);
    let ca = w.certs.ca_pem.clone();
    let wharf = Wharf::start_with(
        w.dir.path(),
        &w.upstream.url(),
        &ca,
        "tag_ttl = \"3s\"\n",
        &[],
    );
    let logs = || w.logs(&wharf);
    let by_tag = format!("docker://{}/{repo}:{tag}", wharf.host());
    w.pull(&by_tag, "first", &first, &logs);
    let checked = Instant::now();

    let moved = w.push("moved", repo, tag, &[80 << 10, 3000]);
    assert_ne!(moved.digest, first.digest, "the push moved the tag");
    // Within tag_ttl Wharf still answers with the first image (if the push was quick
    // enough to tell).
    if checked.elapsed() < Duration::from_millis(2000) {
        w.pull(&by_tag, "within-ttl", &first, &logs);
    } else {
        eprintln!(
            "e2e: push took {:?}, within-TTL check skipped",
            checked.elapsed()
        );
    }
    let mark = w.upstream.settled_requests().len();
    let wait = (checked + Duration::from_millis(3200)).saturating_duration_since(Instant::now());
    thread::sleep(wait);
    w.pull(&by_tag, "after-ttl", &moved, &logs);
    let reqs = w.upstream.settled_requests();
    let manifest_path = format!("/v2/{repo}/manifests/{tag}");
    assert!(
        reqs[mark..]
            .iter()
            .any(|r| r.method == "HEAD" && r.uri == manifest_path),
        "no revalidating HEAD of {manifest_path}: {:#?}",
        &reqs[mark..]
    );
    // The first image is still there by digest.
    let by_digest = format!("docker://{}/{repo}@{}", wharf.host(), first.digest);
    w.pull(&by_digest, "first-by-digest", &first, &logs);
}

/// A TCP listener on 127.0.0.1 that counts and closes every connection it accepts.
struct ConnCounter {
    port: u16,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConnCounter {
    fn start() -> ConnCounter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind counter");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (accepted, stop) = (accepted.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            drop(conn);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        ConnCounter {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ConnCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn e2e_wharf_serve_offline_serves_a_warmed_cache_without_any_connection() {
    if !proc::tools_present("e2e_wharf_serve_offline_serves_a_warmed_cache_without_any_connection")
    {
        return;
    }
    let w = World::new();
    let app = w.push("app", "e2e/offline", "v1", &[1 << 20, 40 << 10, 3000]);
    let uncached = w.push("uncached", "e2e/uncached", "v1", &[10 << 10]);
    let ca = w.certs.ca_pem.clone();
    let keys = "tag_ttl = \"1s\"\n";
    {
        // Online: warm the cache anonymously, by tag and by digest.
        let wharf = Wharf::start_with(w.dir.path(), &w.upstream.url(), &ca, keys, &[]);
        let logs = || w.logs(&wharf);
        let host = wharf.host();
        let by_tag = format!("docker://{host}/e2e/offline:v1");
        w.pull(&by_tag, "online-tag", &app, &logs);
        let by_digest = format!("docker://{host}/e2e/offline@{}", app.digest);
        w.pull(&by_digest, "online-digest", &app, &logs);
    } // stopped here (SIGTERM), releasing the data dir

    // Offline, with the upstream URL pointing at a listener that counts connections.
    let counter = ConnCounter::start();
    thread::sleep(Duration::from_millis(1100)); // past tag_ttl
    let fake_url = format!("https://127.0.0.1:{}", counter.port);
    let wharf = Wharf::start_with(w.dir.path(), &fake_url, &ca, keys, &["--offline"]);
    let logs = || w.logs(&wharf);
    let host = wharf.host();
    let by_tag = format!("docker://{host}/e2e/offline:v1");
    w.pull(&by_tag, "offline-tag", &app, &logs);
    let by_digest = format!("docker://{host}/e2e/offline@{}", app.digest);
    w.pull(&by_digest, "offline-digest", &app, &logs);
    // Not cached: an error, not an upstream request.
    for reference in [
        format!("docker://{host}/e2e/uncached:v1"),
        format!("docker://{host}/e2e/uncached@{}", uncached.digest),
    ] {
        let args = ["inspect", "--raw", "--tls-verify=false", reference.as_str()];
        let r = w.skopeo.try_run(&args);
        assert!(r.is_err(), "offline Wharf served uncached {reference}");
    }
    assert_eq!(
        counter.count(),
        0,
        "the offline Wharf opened upstream connections\n{}",
        logs()
    );
}

//! Three Wharf replicas sharing one S3 bucket (a real 3-node Garage cluster) in front of the
//! real registry, pulled by 16 concurrent skopeo clients:
//!
//! 1. Cold image X through replicas a, b and c at once: every copy is the upstream's image,
//!    and the upstream's log shows each layer fetched at most once and at most 5 % more bytes
//!    than the blobs hold: the replicas split the fetches instead of each filling alone.
//! 2. Cold image Y the same way, with replica b killed (`kill -9`) once bytes reach clients:
//!    a failed pull is retried on the next live replica (as behind a Kubernetes Service that
//!    dropped the dead endpoint) and every client ends with Y.
//! 3. Once a and c have uploaded what they fetched, a fourth replica d with an empty data
//!    dir serves X and Y by tag and by digest: not a single upstream request, everything
//!    comes from the bucket (or the live peers).
//!
//! Each replica's `wharf_upstream_bytes_total`, `wharf_peer_fills_total`,
//! `wharf_shared_fills_total` and `wharf_shared_store_errors_total` are printed for diagnosis;
//! the assertions rest on the registry's own log.
//!
//! - here: the world (registry, Garage, pushed images), replicas, clients and the log checks.
//! - `replicas`: the test, phase by phase.

mod replicas;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::garage::Garage;
use super::images::{Layout, Rng};
use super::prometheus::http_get;
use super::runtimes::tail;
use super::skopeo::{assert_same, check_dir, expected, Expected, Skopeo};
use super::upstream::{self, Certs, Logged, Upstream};
use super::wharf::Wharf;

/// Concurrent clients per phase.
const CLIENTS: usize = 16;
/// Tries per client in phase 2: the first and up to two retries on other replicas.
const ATTEMPTS: usize = 3;
const MIB: usize = 1 << 20;
/// The replicas, in the order of the `replicas` vector.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
/// The metrics printed after each phase.
const METRICS: [&str; 5] = [
    "wharf_upstream_bytes_total",
    "wharf_peer_fills_total",
    "wharf_shared_fills_total",
    "wharf_shared_store_errors_total",
    "wharf_shared_backstop_uploads_total",
];

/// An image pushed to the registry: what the registry says about it, and its blobs.
struct Pushed {
    repo: &'static str,
    tag: &'static str,
    want: Expected,
    /// Digest and size of the config, then of each layer, from the upstream's manifest.
    blobs: Vec<(String, u64)>,
}

/// What one client did: the `dir:` copy it ended with, and the errors of its failed tries.
struct Client {
    dest: Option<PathBuf>,
    errors: Vec<String>,
}

/// Certificates, the registry, skopeo and the Garage cluster. Fields drop in order: Garage
/// and the registry before the dir. The replicas live outside, declared later, so they stop
/// first.
struct World {
    garage: Garage,
    upstream: Upstream,
    skopeo: Skopeo,
    certs: Certs,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-cluster-")
            .tempdir()
            .expect("tempdir");
        let certs = upstream::make_certs(dir.path());
        let upstream = Upstream::start(dir.path(), &certs);
        let skopeo = Skopeo::new(dir.path());
        let garage = Garage::start(dir.path(), 3);
        World {
            garage,
            upstream,
            skopeo,
            certs,
            dir,
        }
    }

    /// Waits (up to a minute) until the bucket holds every blob of `imgs`: the uploads that
    /// follow fills end after their clients' pulls do. The blobs still missing.
    fn wait_shared(&self, imgs: &[&Pushed]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut missing: Vec<String> = imgs
            .iter()
            .flat_map(|i| i.blobs.iter().map(|b| b.0.clone()))
            .collect();
        while !missing.is_empty() && Instant::now() < deadline {
            missing.retain(|d| {
                let hex = d.trim_start_matches("sha256:");
                !self.garage.has_object(&format!("blobs/sha256/{hex}"))
            });
            if !missing.is_empty() {
                thread::sleep(Duration::from_millis(200));
            }
        }
        missing
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Generates a single-platform image (layers of `sizes` random bytes), pushes it as
    /// `repo:tag`, and reads back what the registry holds.
    fn push(
        &self,
        rng: &mut Rng,
        repo: &'static str,
        tag: &'static str,
        sizes: &[usize],
    ) -> Pushed {
        let layout = Layout::new(&self.path(&format!("layout-{}", repo.replace('/', "-"))));
        let desc = layout.image(rng, "amd64", sizes);
        layout.finish(&desc, tag);
        let cert_dir = self.certs.cert_dir.to_string_lossy().into_owned();
        let host = self.upstream.host();
        let src = format!("oci:{}:{tag}", layout.dir.display());
        let dest = format!("docker://{host}/{repo}:{tag}");
        let args = ["copy", "--dest-cert-dir", cert_dir.as_str(), &src, &dest];
        if let Err(e) = self.skopeo.try_run(&args) {
            panic!(
                "push {repo}:{tag} failed: {e}\n{}",
                self.upstream.proc.logs()
            );
        }
        let want = expected(&self.skopeo, &["--cert-dir", &cert_dir], &host, repo, tag);
        let raw = self
            .skopeo
            .run(&["inspect", "--raw", "--cert-dir", &cert_dir, &dest]);
        let manifest: Value = serde_json::from_slice(&raw).expect("upstream manifest is JSON");
        let blob = |d: &Value| {
            let digest = d["digest"].as_str().expect("blob digest").to_string();
            (digest, d["size"].as_u64().expect("blob size"))
        };
        let mut blobs = vec![blob(&manifest["config"])];
        let layers = manifest["layers"].as_array().expect("manifest layers");
        blobs.extend(layers.iter().map(blob));
        Pushed {
            repo,
            tag,
            want,
            blobs,
        }
    }

    /// The `[[upstream]]` keys of a replica listening on `port`, then its `[storage]` (the
    /// shared bucket) and `[cluster]` (peers listening on `peers`) tables.
    fn replica_keys(&self, port: u16, peers: &[u16]) -> String {
        let peers: Vec<String> = peers
            .iter()
            .map(|p| format!("\"http://127.0.0.1:{p}\""))
            .collect();
        format!(
            "tag_ttl = \"1h\"\n{storage}\n[cluster]\nadvertise = \"http://127.0.0.1:{port}\"\n\
             peers = [{peers}]\n",
            storage = self.garage.storage_toml(),
            peers = peers.join(", "),
        )
    }

    /// Starts the replicas `(name, port, admin port)` at once, each in `replica-<name>/`.
    fn start_replicas(&self, specs: &[(&str, u16, u16)], peers: &[u16]) -> Vec<Wharf> {
        let url = self.upstream.url();
        let (url, ca) = (url.as_str(), self.certs.ca_pem.as_path());
        thread::scope(|s| {
            let handles: Vec<_> = specs
                .iter()
                .map(|&(name, port, admin)| {
                    let keys = self.replica_keys(port, peers);
                    let dir = self.path(&format!("replica-{name}"));
                    s.spawn(move || {
                        std::fs::create_dir_all(&dir).expect("create replica dir");
                        Wharf::start_in(&dir, port, admin, url, ca, &keys, &[])
                    })
                })
                .collect();
            let started = handles.into_iter().map(|h| h.join());
            started
                .map(|r| r.expect("a replica did not start (its panic is above)"))
                .collect()
        })
    }

    /// Client `i` pulls `reference` (`<repo>:<tag>` or `<repo>@<digest>`) from replica
    /// `i % hosts.len()`; a failed try is retried (`attempts` tries in all) on the next
    /// replica, skipping those marked `down`.
    fn client(
        &self,
        hosts: &[String],
        down: &[AtomicBool],
        i: usize,
        reference: &str,
        label: &str,
        attempts: usize,
    ) -> Client {
        let mut target = i % hosts.len();
        let mut errors = Vec::new();
        for attempt in 0..attempts {
            for _ in 0..hosts.len() {
                if !down[target].load(Ordering::SeqCst) {
                    break;
                }
                target = (target + 1) % hosts.len();
            }
            let dest = self.path(&format!("pull-{label}-{attempt}"));
            let source = format!("docker://{}/{reference}", hosts[target]);
            let dest_ref = format!("dir:{}", dest.display());
            let args = ["copy", "--src-tls-verify=false", &source, &dest_ref];
            match self.skopeo.try_run(&args) {
                Ok(_) => {
                    return Client {
                        dest: Some(dest),
                        errors,
                    }
                }
                Err(e) => errors.push(format!("try {} via {}: {e}", attempt + 1, hosts[target])),
            }
            target = (target + 1) % hosts.len();
        }
        Client { dest: None, errors }
    }

    /// [`CLIENTS`] concurrent [`World::client`]s (dirs `pull-<label>-<i>-<try>`), while
    /// `meanwhile` runs on this thread with the count of clients done.
    fn pull_all(
        &self,
        hosts: &[String],
        down: &[AtomicBool],
        reference: &str,
        label: &str,
        attempts: usize,
        meanwhile: impl FnOnce(&AtomicUsize),
    ) -> Vec<Client> {
        let done = AtomicUsize::new(0);
        thread::scope(|s| {
            let handles: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let (done, label) = (&done, format!("{label}-{i}"));
                    s.spawn(move || {
                        let client = self.client(hosts, down, i, reference, &label, attempts);
                        done.fetch_add(1, Ordering::SeqCst);
                        client
                    })
                })
                .collect();
            meanwhile(&done);
            let clients = handles.into_iter().map(|h| h.join());
            clients.map(|c| c.expect("client thread")).collect()
        })
    }

    /// Asserts that every client ended with a copy of `img`; returns the failed tries.
    fn check_clients(
        &self,
        clients: &[Client],
        img: &Pushed,
        phase: &str,
        replicas: &[Wharf],
    ) -> Vec<String> {
        for (i, c) in clients.iter().enumerate() {
            let Some(dest) = &c.dest else {
                panic!(
                    "{phase}: client {i} failed every try:\n{}\n{}",
                    c.errors.join("\n"),
                    self.logs(replicas)
                );
            };
            assert_same(&check_dir(dest), &img.want, &format!("{phase}, client {i}"));
        }
        clients.iter().flat_map(|c| c.errors.clone()).collect()
    }

    /// Bytes in the `dir:` copies named `<prefix>...` (files being written included).
    fn bytes_pulled(&self, prefix: &str) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .filter_map(|e| std::fs::read_dir(e.path()).ok())
            .flat_map(|files| files.flatten())
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Every replica's logs, the registry's and Garage's tails, for failure messages.
    fn logs(&self, replicas: &[Wharf]) -> String {
        let mut out = String::new();
        for (name, r) in NAMES.iter().zip(replicas) {
            out += &format!("===== replica {name} =====\n{}\n", r.proc.logs());
        }
        let registry = tail(&self.upstream.proc.stderr, 40);
        out += &format!("----- registry stderr (tail) -----\n{registry}\n");
        out + &self.garage.logs()
    }
}

/// Upstream GETs of `img`'s blobs among `reqs`: per digest, how many and the bytes sent.
fn blob_gets(reqs: &[Logged], img: &Pushed) -> BTreeMap<String, (usize, u64)> {
    let digests: BTreeSet<&str> = img.blobs.iter().map(|(d, _)| d.as_str()).collect();
    let mut out = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.is_blob_get()) {
        if let Some(digest) = r.blob().filter(|d| digests.contains(d)) {
            let entry = out.entry(digest.to_string()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += r.written;
        }
    }
    out
}

/// The cluster counters ([`METRICS`]) of each replica's `/metrics`, for diagnosis.
fn cluster_metrics(replicas: &[Wharf]) -> String {
    let mut out = String::new();
    for (name, r) in NAMES.iter().zip(replicas) {
        match http_get(r.admin_port, "/metrics") {
            Ok((200, text)) => {
                let lines = text
                    .lines()
                    .filter(|l| METRICS.iter().any(|m| l.starts_with(m)));
                for line in lines {
                    out += &format!("  {name}: {line}\n");
                }
            }
            Ok((status, _)) => out += &format!("  {name}: /metrics answered {status}\n"),
            Err(e) => out += &format!("  {name}: /metrics: {e}\n"),
        }
    }
    out
}

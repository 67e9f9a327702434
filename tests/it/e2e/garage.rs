//! A real Garage cluster (an S3-compatible object store, `garage` 2.x) on loopback: the
//! shared bucket of the cluster test, and of any test that needs a real S3 server.
//!
//! Garage is not packaged in Debian 12, so `scripts/setup.sh --test` builds garage 2.5.0 with
//! `cargo install` into `${WHARF_TOOLS:-~/.cache/wharf/tools}/bin`. The binary used is
//! `$WHARF_GARAGE`, else `garage` on PATH, else that install location. Without it the tests
//! fail, unless `WHARF_SKIP_E2E=1`, which makes them skip ([`garage_present`]).
//!
//! [`Garage::start`] does what an operator does by hand (checked against garage 2.5.0): one
//! `garage.toml` per node (its own metadata and data dirs, RPC, S3 and admin ports, a shared
//! `rpc_secret`), `garage server` on each, `node connect` from node 0 to the others, `layout
//! assign` of one zone per node and `layout apply`, then waits until every node sees every
//! other one healthy. The key is generated here and `key import`ed, so nothing is parsed out
//! of the CLI's tables; then `bucket create` and `bucket allow --read --write --owner`.
//! The nodes log to `garage-<i>/garage-<i>.stderr`; `WHARF_GARAGE_LOG` is their `RUST_LOG`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::images::Rng;
use super::proc::{free_ports, on_path, tcp_open, wait_ready, Proc};
use super::prometheus::http_get;
use super::runtimes::{quoted, run, tail};

/// How long one `garage` CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a bring-up step that needs the cluster's quorum may keep failing.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Garage cluster with one bucket and one key allowed to read, write and own it.
/// Fields drop in order: the nodes are killed (`kill -9`: their data is throwaway) first.
pub struct Garage {
    /// `garage server` of node `i`, logging to `dir/garage-<i>/garage-<i>.std{out,err}`.
    pub nodes: Vec<Proc>,
    /// Each node's `garage.toml`, for `garage -c <config> ...`.
    pub configs: Vec<PathBuf>,
    /// Each node's S3 API port (every node serves the whole bucket).
    pub s3_ports: Vec<u16>,
    /// Node 0's S3 API port.
    pub s3_port: u16,
    /// `s3_region` of every node: `garage`.
    pub region: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    binary: PathBuf,
    /// Where CLI runs keep their output (deleted after each run).
    cli_dir: PathBuf,
}

/// The garage binary: `$WHARF_GARAGE`, `garage` on PATH, or where `scripts/setup.sh` puts it.
fn garage_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_GARAGE") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    if on_path("garage") {
        return Some(PathBuf::from("garage"));
    }
    let tools = match std::env::var_os("WHARF_TOOLS") {
        Some(tools) => PathBuf::from(tools),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/wharf/tools"),
    };
    Some(tools.join("bin/garage")).filter(|p| p.is_file())
}

/// Checks that a garage binary exists. Returns false (after saying so) if it is missing and
/// `WHARF_SKIP_E2E=1`; panics if it is missing otherwise (as [`super::proc::tools_present`]).
pub fn garage_present(test: &str) -> bool {
    if garage_binary().is_some() {
        return true;
    }
    if std::env::var("WHARF_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("e2e test {test} SKIPPED: no garage binary (WHARF_SKIP_E2E=1)");
        return false;
    }
    panic!(
        "e2e test {test} needs Garage 2.x: run `scripts/setup.sh --test` (builds garage 2.5.0 \
         into ~/.cache/wharf/tools/bin), put `garage` on PATH or set WHARF_GARAGE to it, or set \
         WHARF_SKIP_E2E=1 to skip it"
    );
}

/// The `key: value` line `key` of `garage health` output.
fn health_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// True if `garage health` says the cluster is healthy with all `n` nodes connected and up.
fn all_healthy(text: &str, n: usize) -> bool {
    let n = n.to_string();
    health_field(text, "Cluster health") == Some("HEALTHY")
        && health_field(text, "Connected nodes") == Some(n.as_str())
        && health_field(text, "Storage nodes up") == Some(n.as_str())
}

impl Garage {
    /// Starts an `n`-node Garage cluster on 127.0.0.1 under `dir/garage-<i>/`: connects the
    /// nodes, applies a layout (one zone and 1 GB per node, replication factor `min(n, 3)`),
    /// imports a generated key, creates the bucket `wharf` and allows the key to read, write
    /// and own it. Returns once every node sees all `n` healthy and the S3 API answers.
    pub fn start(dir: &Path, n: usize) -> Garage {
        assert!(n >= 1, "a Garage cluster needs a node");
        let binary = garage_binary().expect("no garage binary: check garage_present() first");
        let mut rng = Rng::from_entropy();
        let rpc_secret = hex::encode(rng.bytes(32));
        let ports = free_ports(3 * n);
        let cli_dir = dir.join("garage-cli");
        std::fs::create_dir_all(&cli_dir).expect("create garage-cli dir");
        let mut g = Garage {
            nodes: Vec::new(),
            configs: Vec::new(),
            s3_ports: Vec::new(),
            s3_port: ports[1],
            region: "garage".to_string(),
            bucket: "wharf".to_string(),
            // Garage's formats: `GK` + 24 hex digits, and 64 hex digits.
            key_id: format!("GK{}", hex::encode(rng.bytes(12))),
            secret: hex::encode(rng.bytes(32)),
            binary,
            cli_dir,
        };
        for i in 0..n {
            let (rpc, s3, admin) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let node_dir = dir.join(format!("garage-{i}"));
            std::fs::create_dir_all(&node_dir).expect("create garage node dir");
            let config = format!(
                "metadata_dir = {meta}\ndata_dir = {data}\ndb_engine = \"lmdb\"\n\
                 replication_factor = {replication}\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{rpc_secret}\"\n\n\
                 [s3_api]\ns3_region = \"{region}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = quoted(node_dir.join("meta")),
                data = quoted(node_dir.join("data")),
                replication = n.min(3),
                region = g.region,
            );
            let config_file = node_dir.join("garage.toml");
            std::fs::write(&config_file, config).expect("write garage.toml");
            g.configs.push(config_file);
            g.s3_ports.push(s3);
            let mut cmd = g.command(i);
            cmd.arg("server");
            let node = Proc::spawn(&format!("garage-{i}"), cmd, &node_dir, Duration::ZERO);
            g.nodes.push(node);
        }
        for (i, node) in g.nodes.iter_mut().enumerate() {
            let (rpc, s3) = (ports[3 * i], ports[3 * i + 1]);
            let what = format!("garage node {i}");
            wait_ready(node, &what, Duration::from_secs(30), || {
                tcp_open(rpc) && tcp_open(s3)
            });
        }

        // `<hex id>@127.0.0.1:<rpc port>` of each node (read from its metadata dir).
        let ids: Vec<String> = (0..n)
            .map(|i| {
                let out = g.cli(i, &["node", "id", "-q"]);
                let id = out.lines().map(str::trim).find(|l| l.contains('@'));
                let id = id.unwrap_or_else(|| panic!("garage node id {i}: no <id>@<addr>: {out}"));
                id.to_string()
            })
            .collect();
        for id in &ids[1..] {
            g.cli_until_ok(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let hex_id = id.split('@').next().unwrap_or_default();
            let zone = format!("dc{i}");
            g.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", hex_id]);
        }
        g.cli(0, &["layout", "apply", "--version", "1"]);
        let deadline = Instant::now() + QUORUM_TIMEOUT;
        for i in 0..n {
            loop {
                let health = g.try_cli(i, &["health"]);
                if health.as_deref().is_ok_and(|text| all_healthy(text, n)) {
                    break;
                }
                if Instant::now() >= deadline {
                    let health = health.unwrap_or_else(|e| e);
                    panic!(
                        "garage node {i} does not see {n} healthy nodes within \
                         {QUORUM_TIMEOUT:?}:\n{health}\n{}",
                        g.logs()
                    );
                }
                sleep(Duration::from_millis(100));
            }
        }

        let (key_id, secret, bucket) = (g.key_id.clone(), g.secret.clone(), g.bucket.clone());
        let (key_id, secret, bucket) = (key_id.as_str(), secret.as_str(), bucket.as_str());
        g.cli_until_ok(&["key", "import", "--yes", "-n", "wharf-test", key_id, secret]);
        g.cli_until_ok(&["bucket", "create", bucket]);
        let allow = [
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key_id,
        ];
        g.cli_until_ok(&allow);
        // The S3 API answers (an anonymous request is refused, with an S3 error).
        let path = format!("/{bucket}");
        let s3_port = g.s3_port;
        wait_ready(
            &mut g.nodes[0],
            "garage S3 API",
            Duration::from_secs(10),
            || http_get(s3_port, &path).is_ok(),
        );
        g
    }

    /// `garage -c <node's config>`, in a clean environment (no `GARAGE_*` variable of the
    /// machine can point it elsewhere).
    fn command(&self, node: usize) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("HOME", &self.cli_dir)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1");
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(log) = std::env::var_os("WHARF_GARAGE_LOG") {
            cmd.env("RUST_LOG", log);
        }
        cmd.arg("-c").arg(&self.configs[node]);
        cmd
    }

    /// Runs `garage -c <node's config> <args>` (at most [`CLI_TIMEOUT`]): its stdout, or a
    /// message with its status and output.
    pub fn try_cli(&self, node: usize, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command(node);
        cmd.args(args);
        run(cmd, CLI_TIMEOUT, &self.cli_dir)
    }

    /// As [`Garage::try_cli`]; panics with the error and the nodes' logs on failure.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        self.try_cli(node, args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Runs `args` on node 0 until it succeeds (at most [`QUORUM_TIMEOUT`]): a step that needs
    /// a quorum may fail while the nodes still learn the layout. A retry answering "already
    /// exists" means an earlier attempt did succeed.
    fn cli_until_ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + QUORUM_TIMEOUT;
        let mut retried = false;
        loop {
            match self.try_cli(0, args) {
                Ok(out) => return out,
                Err(e) if retried && e.contains("AlreadyExists") => return e,
                Err(e) if Instant::now() >= deadline => {
                    panic!("{e}\n(retried for {QUORUM_TIMEOUT:?})\n{}", self.logs())
                }
                Err(_) => sleep(Duration::from_millis(200)),
            }
            retried = true;
        }
    }

    /// `http://127.0.0.1:<node 0's S3 port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A `[storage]` table for Wharf's configuration (starting with a newline, so it can be
    /// appended to the end of any table) pointing at this cluster's bucket through node 0.
    pub fn storage_toml(&self) -> String {
        format!(
            "\n[storage]\nbackend = \"s3\"\nbucket = {bucket}\nendpoint = {endpoint}\n\
             region = {region}\naccess_key_id = {key}\nsecret_access_key = {secret}\n\
             path_style = true\n",
            bucket = quoted(&self.bucket),
            endpoint = quoted(self.endpoint()),
            region = quoted(&self.region),
            key = quoted(&self.key_id),
            secret = quoted(&self.secret),
        )
    }

    /// Whether the bucket holds object `key` (a signed `HEAD` through node 0).
    pub fn has_object(&self, key: &str) -> bool {
        let url = format!("http://127.0.0.1:{}/{}/{key}", self.s3_port, self.bucket);
        curl_s3(self, &self.secret, &["-I", &url]).is_ok()
    }

    /// Wharf's S3 settings for this cluster's bucket, keys under `prefix`.
    pub fn s3_config(&self, prefix: &str) -> wharf::config::S3Config {
        wharf::config::S3Config {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint()),
            region: self.region.clone(),
            access_key_id: self.key_id.clone(),
            secret_access_key: self.secret.clone(),
            path_style: true,
            prefix: prefix.to_string(),
            redirect: false,
            ca_file: None,
        }
    }

    /// GETs a (pre-signed) URL with curl: the body.
    pub fn curl(url: &str) -> Vec<u8> {
        let out = std::process::Command::new("curl")
            .args(["-sf", url])
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET {url}: {out:?}");
        out.stdout
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out += &format!(
                "----- garage node {i} ({}) -----\n{}\n",
                node.stderr.display(),
                tail(&node.stderr, 40)
            );
        }
        out
    }
}

/// The node rows of `garage status`'s `==== HEALTHY NODES ====` table.
fn healthy_rows(status: &str) -> Vec<&str> {
    let mut lines = status.lines();
    let start = lines.by_ref().position(|l| l.contains("HEALTHY NODES"));
    if start.is_none() {
        return Vec::new();
    }
    lines
        .take_while(|l| !l.starts_with("===="))
        .filter(|l| l.contains("127.0.0.1:"))
        .collect()
}

/// `curl --aws-sigv4` (SigV4, as any S3 client signs) as this cluster's key with `secret`.
fn curl_s3(g: &Garage, secret: &str, args: &[&str]) -> Result<String, String> {
    let user = format!("{}:{secret}", g.key_id);
    let sigv4 = format!("aws:amz:{}:s3", g.region);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", "20"]);
    cmd.args(["--aws-sigv4", &sigv4, "--user", &user]);
    cmd.args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    cmd.args(args);
    run(cmd, Duration::from_secs(30), &g.cli_dir)
}

#[test]
fn e2e_garage_harness_starts_a_cluster() {
    if !garage_present("e2e_garage_harness_starts_a_cluster") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("wharf-e2e-garage-")
        .tempdir()
        .expect("tempdir");
    let started = Instant::now();
    let g = Garage::start(dir.path(), 3);
    eprintln!("e2e: 3-node Garage cluster up in {:?}", started.elapsed());

    // Every node lists all three as healthy (peering is gossip: give it a moment).
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..3 {
        loop {
            let status = g.cli(i, &["status"]);
            if healthy_rows(&status).len() == 3 && !status.contains("FAILED NODES") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "garage status on node {i} does not list 3 healthy nodes:\n{status}\n{}",
                g.logs()
            );
            sleep(Duration::from_millis(200));
        }
    }
    let info = g.cli(2, &["bucket", "info", &g.bucket]);
    let key_row = info.lines().find(|l| l.contains(&g.key_id));
    assert!(
        key_row.is_some_and(|row| row.split_whitespace().next() == Some("RWO")),
        "bucket info does not show the key with RWO:\n{info}"
    );

    // What Wharf reads parses as TOML with the contract's keys.
    let storage: toml::Table = g.storage_toml().parse().expect("storage_toml is TOML");
    let s = storage["storage"].as_table().expect("[storage] table");
    assert_eq!(s["backend"].as_str(), Some("s3"));
    assert_eq!(s["endpoint"].as_str(), Some(g.endpoint().as_str()));
    assert_eq!(s["access_key_id"].as_str(), Some(g.key_id.as_str()));
    assert_eq!(s["path_style"].as_bool(), Some(true));

    // A signed S3 round trip: put through node 0, read back through every node.
    if !on_path("curl") {
        eprintln!("e2e: curl not on PATH, signed S3 round trip skipped");
        return;
    }
    let body = hex::encode(Rng::from_entropy().bytes(100 << 10));
    let file = dir.path().join("object.txt");
    std::fs::write(&file, &body).expect("write object");
    let file = file.to_string_lossy().into_owned();
    let url = |port: u16| format!("http://127.0.0.1:{port}/{}/harness/object", g.bucket);
    let put = curl_s3(&g, &g.secret, &["-T", &file, &url(g.s3_port)]);
    put.unwrap_or_else(|e| panic!("S3 PUT: {e}"));
    for &port in &g.s3_ports {
        let got = curl_s3(&g, &g.secret, &[&url(port)]);
        let got = got.unwrap_or_else(|e| panic!("S3 GET: {e}"));
        assert!(got == body, "object read through port {port} differs");
    }
    let list = format!("http://127.0.0.1:{}/{}?list-type=2", g.s3_port, g.bucket);
    let listing = curl_s3(&g, &g.secret, &[&list]).unwrap_or_else(|e| panic!("S3 list: {e}"));
    assert!(listing.contains("<Key>harness/object</Key>"), "{listing}");
    // A wrong secret is refused: the checks above did rest on the signature.
    let refused = curl_s3(&g, &"0".repeat(64), &[&list]);
    assert!(
        refused.is_err_and(|e| e.contains("AccessDenied")),
        "a wrong secret was not refused"
    );
}

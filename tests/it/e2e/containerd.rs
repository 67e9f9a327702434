//! Real containerd pulling through Wharf as a registry mirror, configured the way a
//! Kubernetes node is: `<hosts dir>/<registry>/hosts.toml` with Wharf as a `[host]` that may
//! `pull` and `resolve`, so containerd sends `?ns=<registry>` to Wharf. The upstream's own
//! certificate is not trusted by containerd, so a direct pull fails and only Wharf can serve.
//!
//! Each test runs its own `containerd` (temporary root, state and socket, only the `native`
//! snapshotter, no CRI) and pulls with `ctr images pull --hosts-dir`: over plain HTTP to
//! Wharf, then with the upstream stopped; and over HTTPS to a Wharf with `[tls]` whose CA
//! containerd trusts for the mirror only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::images::digest_of;
use super::proc::{free_port, tcp_open, wait_ready, Proc};
use super::runtimes::{self, quoted, tail};
use super::upstream::make_certs;
use super::wharf::{Wharf, UPSTREAM_NAME};
use super::Setup;

/// Plugins that would touch the machine outside the temporary root (`/opt/containerd`,
/// kernel modules, block devices) or are not needed for pulls.
const DISABLED_PLUGINS: &str = r#"["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs"]"#;

/// A `containerd` of its own, stopped (and anything left mounted under its root unmounted)
/// on drop.
pub struct Containerd {
    base: PathBuf,
    socket: PathBuf,
    pub proc: Proc,
}

impl Containerd {
    /// Starts containerd under `<dir>/<label>` and waits until `ctr version` answers.
    pub fn start(dir: &Path, label: &str) -> Containerd {
        let base = dir.join(label);
        for sub in ["root", "state"] {
            std::fs::create_dir_all(base.join(sub)).expect("create containerd dirs");
        }
        let socket = base.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = {root}\nstate = {state}\ndisabled_plugins = {DISABLED_PLUGINS}\n\
             [grpc]\n  address = {sock}\n[ttrpc]\n  address = {ttrpc}\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            root = quoted(base.join("root")),
            state = quoted(base.join("state")),
            sock = quoted(&socket),
            ttrpc = quoted(base.join("containerd.sock.ttrpc")),
        );
        let config_file = base.join("config.toml");
        std::fs::write(&config_file, config).expect("write containerd config");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config_file);
        sealed(&mut cmd, &base);
        let mut proc = Proc::spawn(label, cmd, dir, Duration::from_secs(5));
        wait_ready(&mut proc, "containerd", Duration::from_secs(20), || {
            let mut version = ctr_command(&socket, &base);
            version.arg("version");
            socket.exists() && runtimes::run(version, Duration::from_secs(5), &base).is_ok()
        });
        Containerd { base, socket, proc }
    }

    /// `ctr <args>` (at most 45 s): its stdout, or the failure with its output.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = ctr_command(&self.socket, &self.base);
        cmd.args(args);
        runtimes::run(cmd, Duration::from_secs(45), &self.base)
    }

    /// Like [`Containerd::ctr`], panicking with `logs()` and containerd's log on failure.
    pub fn ctr_ok(&self, args: &[&str], logs: &dyn Fn() -> String) -> String {
        self.ctr(args).unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n----- containerd stderr (tail) -----\n{}",
                logs(),
                tail(&self.proc.stderr, 30)
            )
        })
    }

    /// The target digest and media type of image `name`, from `ctr images ls`.
    pub fn image(&self, name: &str) -> Option<(String, String)> {
        let out = self.ctr(&["images", "ls"]).expect("ctr images ls");
        out.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&name)).then(|| (cols[2].to_string(), cols[1].to_string()))
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.proc.stop();
        // The native snapshotter's temporary mounts are containerd's to undo; in case one
        // survived a crash, unmount everything under our root, deepest first.
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let base = self.base.to_string_lossy().into_owned();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}

/// `ctr` talking to the containerd at `socket`, in namespace `e2e`.
fn ctr_command(socket: &Path, base: &Path) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args(["--namespace", "e2e"]);
    sealed(&mut cmd, base);
    cmd
}

/// A clean environment: only `PATH`, with `HOME` and `TMPDIR` under `base`.
fn sealed(cmd: &mut Command, base: &Path) {
    let tmp = base.join("tmp");
    std::fs::create_dir_all(&tmp).expect("create tmp");
    cmd.env_clear().env("HOME", base).env("TMPDIR", tmp);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
}

/// Writes `<hosts_dir>/<registry>/hosts.toml`: `server` is the upstream's real URL, and
/// `mirror` (a URL, with maybe a CA file for its certificate) is tried first for pulls.
pub fn write_hosts(
    hosts_dir: &Path,
    registry: &str,
    server: &str,
    mirror: Option<(&str, Option<&Path>)>,
) {
    let dir = hosts_dir.join(registry);
    std::fs::create_dir_all(&dir).expect("create hosts dir");
    let mut text = format!("server = {}\n", quoted(server));
    if let Some((url, ca)) = mirror {
        text += &format!(
            "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
            quoted(url)
        );
        if let Some(ca) = ca {
            text += &format!("  ca = {}\n", quoted(ca));
        }
    }
    std::fs::write(dir.join("hosts.toml"), text).expect("write hosts.toml");
}

/// Checks image `name` in containerd against image `i`'s upstream truth: the same manifest
/// bytes (by digest) and media type, and every config and layer blob in the content store.
pub fn check_image(ctd: &Containerd, s: &Setup, i: usize, name: &str, logs: &dyn Fn() -> String) {
    let exp = &s.expected[i];
    let (digest, media_type) = ctd
        .image(name)
        .unwrap_or_else(|| panic!("{name} not in `ctr images ls`\n{}", logs()));
    assert_eq!(digest, exp.digest, "{name}: digest differs from upstream");
    assert_eq!(media_type, exp.media_type, "{name}: media type differs");
    let content: BTreeSet<String> = ctd
        .ctr_ok(&["content", "ls", "-q"], logs)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    let get = |digest: &str| -> Value {
        let bytes = ctd.ctr_ok(&["content", "get", digest], logs);
        assert_eq!(
            digest_of(bytes.as_bytes()),
            digest,
            "{name}: content {digest}"
        );
        serde_json::from_str(&bytes).expect("manifest JSON")
    };
    let top = get(&digest);
    let manifests = match top["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|m| get(m["digest"].as_str().expect("instance digest")))
            .collect(),
        None => vec![top],
    };
    let mut blobs = BTreeSet::new();
    for m in &manifests {
        blobs.insert(m["config"]["digest"].as_str().expect("config").to_string());
        for l in m["layers"].as_array().expect("layers") {
            blobs.insert(l["digest"].as_str().expect("layer").to_string());
        }
    }
    assert_eq!(blobs.len(), exp.blobs, "{name}: blob count differs");
    let missing: Vec<_> = blobs.difference(&content).collect();
    assert!(missing.is_empty(), "{name}: blobs not pulled: {missing:?}");
    // Content complete for this platform, and unpacked into the native snapshotter.
    let filter = format!("name=={name}");
    let check = ctd.ctr_ok(
        &["images", "check", "--snapshotter", "native", &filter],
        logs,
    );
    let row = check.lines().nth(1).unwrap_or_default();
    let ok = row.contains(" complete (") && row.trim_end().ends_with(" true");
    assert!(ok, "{name}: ctr images check:\n{check}");
}

/// Pulls every test image (and image 0 by digest) as `<registry>/<repo>` with `hosts_dir`,
/// and checks each against the upstream.
fn pull_all(ctd: &Containerd, s: &Setup, registry: &str, hosts: &Path, logs: &dyn Fn() -> String) {
    let hosts = hosts.to_string_lossy().into_owned();
    for (i, image) in s.images.iter().enumerate() {
        let mut refs = vec![format!("{registry}/{}:{}", image.repo, image.tag)];
        if i == 0 {
            refs.push(format!(
                "{registry}/{}@{}",
                image.repo, s.expected[i].digest
            ));
        }
        for name in refs {
            let mut args = vec!["images", "pull", "--snapshotter", "native"];
            args.extend(["--hosts-dir", &hosts]);
            if image.multi {
                args.push("--all-platforms");
            }
            args.push(&name);
            ctd.ctr_ok(&args, logs);
            check_image(ctd, s, i, &name, logs);
        }
    }
}

#[test]
fn e2e_containerd_pulls_through_wharf() {
    if !runtimes::present("e2e_containerd_pulls_through_wharf", &["containerd", "ctr"]) {
        return;
    }
    let mut s = Setup::new();
    let wharf = Wharf::start(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem);
    let logs = || wharf.proc.logs();
    let mirror = format!("http://{}", wharf.host());
    let upstream_url = s.upstream.url();

    // The control: the upstream itself as the `[host]` fails on its certificate, which
    // containerd does not trust. (containerd 1.6 rejects a hosts.toml with no `[host]`.)
    let direct = s.path("hosts-direct");
    write_hosts(
        &direct,
        UPSTREAM_NAME,
        &upstream_url,
        Some((&upstream_url, None)),
    );
    let hosts = s.path("hosts");
    write_hosts(&hosts, UPSTREAM_NAME, &upstream_url, Some((&mirror, None)));

    let ctd = Containerd::start(s.dir.path(), "containerd-1");
    let name = format!("{UPSTREAM_NAME}/{}:{}", s.images[0].repo, s.images[0].tag);
    let direct_dir = direct.to_string_lossy().into_owned();
    let args = [
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        &direct_dir,
        &name,
    ];
    let err = ctd.ctr(&args).expect_err("a direct pull must fail");
    assert!(err.contains("x509"), "direct pull failed otherwise:\n{err}");

    pull_all(&ctd, &s, UPSTREAM_NAME, &hosts, &logs);
    drop(ctd);

    // Upstream gone, tags past their TTL: a fresh containerd still gets everything.
    s.upstream.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let ctd = Containerd::start(s.dir.path(), "containerd-2");
    pull_all(&ctd, &s, UPSTREAM_NAME, &hosts, &logs);
}

/// A registry named `<host>:<port>` (images `127.0.0.1:<port>/e2e/app:v1`, Wharf's upstream
/// with that alias), so containerd sends `?ns=127.0.0.1%3A<port>`: percent-encoded, as Go's
/// `url.Values` does. Ignored until Wharf decodes `ns`.
#[test]
fn e2e_containerd_registry_with_port() {
    if !runtimes::present("e2e_containerd_registry_with_port", &["containerd", "ctr"]) {
        return;
    }
    let s = Setup::new();
    let registry = s.upstream.host();
    let keys = format!("tag_ttl = \"1s\"\naliases = [{}]\n", quoted(&registry));
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, &keys, &[]);
    let logs = || wharf.proc.logs();
    let hosts = s.path("hosts");
    let mirror = format!("http://{}", wharf.host());
    write_hosts(&hosts, &registry, &s.upstream.url(), Some((&mirror, None)));
    let ctd = Containerd::start(s.dir.path(), "containerd");
    pull_all(&ctd, &s, &registry, &hosts, &logs);
}

/// Wharf serving HTTPS (`[tls]`) with a certificate from a CA of its own, which containerd
/// trusts only for the mirror (`ca = ...` in the `[host]` table).
#[test]
fn e2e_containerd_pulls_through_wharf_over_tls() {
    if !runtimes::present(
        "e2e_containerd_pulls_through_wharf_over_tls",
        &["containerd", "ctr"],
    ) {
        return;
    }
    let s = Setup::new();
    let dir = s.dir.path();
    let tls_dir = s.path("wharf-tls");
    std::fs::create_dir_all(&tls_dir).expect("create wharf-tls");
    let wharf_certs = make_certs(&tls_dir);
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ndata_dir = {data}\n\
         [tls]\ncert_file = {cert}\nkey_file = {key}\n\n\
         [[upstream]]\nname = \"{UPSTREAM_NAME}\"\nurl = {url}\ndefault = true\nca_file = {ca}\n",
        data = quoted(dir.join("wharf-data")),
        cert = quoted(&wharf_certs.server_pem),
        key = quoted(&wharf_certs.server_key),
        url = quoted(s.upstream.url()),
        ca = quoted(&s.certs.ca_pem),
    );
    let config_file = dir.join("wharf-tls.toml");
    std::fs::write(&config_file, config).expect("write wharf-tls.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["serve", "--config"])
        .arg(&config_file)
        .current_dir(dir);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut wharf = Proc::spawn("wharf", cmd, dir, Duration::from_secs(3));
    wait_ready(
        &mut wharf,
        "wharf serve (TLS)",
        Duration::from_secs(30),
        || tcp_open(port),
    );
    let logs = || wharf.logs();

    let hosts = s.path("hosts");
    let mirror = format!("https://127.0.0.1:{port}");
    let ca = Some(wharf_certs.ca_pem.as_path());
    write_hosts(
        &hosts,
        UPSTREAM_NAME,
        &s.upstream.url(),
        Some((&mirror, ca)),
    );
    let ctd = Containerd::start(dir, "containerd");
    pull_all(&ctd, &s, UPSTREAM_NAME, &hosts, &logs);
    let text = std::fs::read_to_string(&wharf.stderr).unwrap_or_default();
    let h2 = text.contains("HTTP/2.0");
    eprintln!("e2e: containerd over TLS to Wharf, HTTP/2 seen in Wharf's log: {h2}");
}

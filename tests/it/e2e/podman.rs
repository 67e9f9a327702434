//! Real Podman pulling through Wharf as a registry mirror: `registries.conf` names the
//! upstream's location with a `[[registry.mirror]]` at `<wharf>/<upstream name>` (Wharf's
//! path-prefix routing, plain HTTP). Podman does not trust the upstream's certificate, so a
//! direct pull fails and only the mirror can serve.
//!
//! Podman runs sealed: its own HOME, XDG dirs, auth file, signature policy, storage (`vfs`
//! under a temporary root), containers.conf (no events, cgroupfs, CNI config dir of its own).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::runtimes::{self, quoted};
use super::wharf::{Wharf, UPSTREAM_NAME};
use super::Setup;

/// A sealed Podman configuration under `<dir>/podman`.
struct Podman {
    base: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        let base = dir.join("podman");
        for sub in [
            "home",
            "tmp",
            "xdg-runtime",
            "xdg-config",
            "xdg-data",
            "networks",
        ] {
            std::fs::create_dir_all(base.join(sub)).expect("create podman dirs");
        }
        let write = |name: &str, text: String| {
            std::fs::write(base.join(name), text).expect("write podman config");
        };
        write(
            "policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#.to_string(),
        );
        write("auth.json", "{}".to_string());
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
                quoted(base.join("root")),
                quoted(base.join("runroot"))
            ),
        );
        write(
            "containers.conf",
            format!(
                "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n\
                 [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = {}\n",
                quoted(base.join("networks"))
            ),
        );
        Podman { base }
    }

    /// Writes a `registries.conf` named `name`; returns its path.
    fn registries(&self, name: &str, text: &str) -> PathBuf {
        let path = self.base.join(name);
        let text = format!("unqualified-search-registries = []\n{text}");
        std::fs::write(&path, text).expect("write registries.conf");
        path
    }

    /// `podman <args>` with `registries` as registries.conf (at most 45 s).
    fn run(&self, registries: &Path, args: &[&str]) -> Result<String, String> {
        let b = &self.base;
        let mut cmd = Command::new("podman");
        cmd.env_clear()
            .env("HOME", b.join("home"))
            .env("TMPDIR", b.join("tmp"))
            .env("XDG_RUNTIME_DIR", b.join("xdg-runtime"))
            .env("XDG_CONFIG_HOME", b.join("xdg-config"))
            .env("XDG_DATA_HOME", b.join("xdg-data"))
            .env("REGISTRY_AUTH_FILE", b.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", registries)
            .env("CONTAINERS_STORAGE_CONF", b.join("storage.conf"))
            .env("CONTAINERS_CONF", b.join("containers.conf"));
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.arg("--root")
            .arg(b.join("root"))
            .arg("--runroot")
            .arg(b.join("runroot"))
            .arg("--tmpdir")
            .arg(b.join("libpod-tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args);
        runtimes::run(cmd, Duration::from_secs(45), b)
    }

    /// `podman pull` with the sealed signature policy.
    fn pull(&self, registries: &Path, extra: &[&str], reference: &str) -> Result<String, String> {
        let policy = self.base.join("policy.json").to_string_lossy().into_owned();
        let mut args = vec!["pull", "--signature-policy", &policy];
        args.extend_from_slice(extra);
        args.push(reference);
        self.run(registries, &args)
    }

    /// `podman image inspect --format <format> <reference>`, trimmed.
    fn inspect(&self, registries: &Path, reference: &str, format: &str) -> String {
        let args = ["image", "inspect", "--format", format, reference];
        let out = self
            .run(registries, &args)
            .unwrap_or_else(|e| panic!("{e}"));
        out.trim().to_string()
    }
}

/// Pulls every test image (image 0 also by digest; the index for linux/arm64) and checks
/// that Podman holds the upstream's manifest digest.
fn pull_all(p: &Podman, s: &Setup, conf: &Path, round: &str, logs: &dyn Fn() -> String) {
    let host = s.upstream.host();
    for (i, image) in s.images.iter().enumerate() {
        let exp = &s.expected[i];
        let mut refs = vec![format!("{host}/{}:{}", image.repo, image.tag)];
        if i == 0 {
            refs.push(format!("{host}/{}@{}", image.repo, exp.digest));
        }
        let extra: &[&str] = if image.multi {
            &["--platform", "linux/arm64"]
        } else {
            &[]
        };
        for reference in refs {
            if let Err(e) = p.pull(conf, extra, &reference) {
                panic!("{round}: podman pull {reference}: {e}\n{}", logs());
            }
            let digest = p.inspect(conf, &reference, "{{.Digest}}");
            assert_eq!(digest, exp.digest, "{round}: {reference}: digest differs");
            if image.multi {
                let arch = p.inspect(conf, &reference, "{{.Architecture}}");
                assert_eq!(arch, "arm64", "{round}: {reference}: wrong instance");
            }
        }
    }
}

#[test]
fn e2e_podman_pulls_through_wharf() {
    if !runtimes::present("e2e_podman_pulls_through_wharf", &["podman"]) {
        return;
    }
    let mut s = Setup::new();
    let wharf = Wharf::start(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem);
    let logs = || wharf.proc.logs();
    let podman = Podman::new(s.dir.path());
    let upstream = s.upstream.host();

    // The control: without the mirror the pull fails on the untrusted certificate.
    let direct = podman.registries("registries-direct.conf", "");
    let reference = format!("{upstream}/{}:{}", s.images[0].repo, s.images[0].tag);
    let err = podman
        .pull(&direct, &[], &reference)
        .expect_err("a direct pull must fail");
    assert!(
        err.contains("x509") || err.contains("certificate"),
        "direct pull failed otherwise:\n{err}"
    );

    let mirror = format!("{}/{UPSTREAM_NAME}", wharf.host());
    let conf = podman.registries(
        "registries.conf",
        &format!(
            "[[registry]]\nlocation = {}\n[[registry.mirror]]\nlocation = {}\ninsecure = true\n",
            quoted(&upstream),
            quoted(&mirror)
        ),
    );
    pull_all(&podman, &s, &conf, "first", &logs);

    // Upstream gone, tags past their TTL, local images removed: Wharf still serves.
    podman
        .run(&conf, &["rmi", "--all", "--force"])
        .unwrap_or_else(|e| panic!("{e}"));
    s.upstream.stop();
    std::thread::sleep(Duration::from_millis(1500));
    pull_all(&podman, &s, &conf, "offline", &logs);
}

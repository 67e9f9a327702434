//! Running skopeo in a sealed environment, and checking the `dir:` copies it writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::images::{digest_of, sha256_hex, DOCKER_MANIFEST, OCI_INDEX};

/// skopeo with its own HOME, auth file, registries.conf and TMPDIR, so nothing of the
/// machine's configuration leaks in.
pub struct Skopeo {
    home: PathBuf,
}

impl Skopeo {
    pub fn new(dir: &Path) -> Skopeo {
        let home = dir.join("skopeo-home");
        for sub in ["tmp", "registries.d"] {
            std::fs::create_dir_all(home.join(sub)).expect("create skopeo home");
        }
        std::fs::write(home.join("auth.json"), "{}").expect("write auth.json");
        std::fs::write(
            home.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("write registries.conf");
        Skopeo { home }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("skopeo");
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.join("tmp"))
            .env("REGISTRY_AUTH_FILE", self.home.join("auth.json"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.home.join("registries.conf"),
            );
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.arg("--insecure-policy")
            .arg("--command-timeout=90s")
            .arg("--registries.d")
            .arg(self.home.join("registries.d"));
        cmd
    }

    /// Runs `skopeo <args>`: its stdout, or a message with its stderr on failure.
    pub fn try_run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut cmd = self.command();
        cmd.args(args);
        let out = cmd.output().expect("run skopeo");
        if out.status.success() {
            return Ok(out.stdout);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("skopeo {args:?} failed ({}):\n{err}", out.status))
    }

    /// Runs `skopeo <args>` and returns its stdout; panics with its stderr on failure.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// What a checked `dir:` copy holds.
#[derive(Debug)]
pub struct Pulled {
    /// Digest of `manifest.json`, byte for byte.
    pub digest: String,
    /// Its `mediaType` field.
    pub media_type: String,
    /// For an index copied with `--all`: the digests of the instances, in index order.
    pub instances: Vec<String>,
    /// Number of blob files (configs and layers).
    pub blobs: usize,
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse(bytes: &[u8], what: &Path) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", what.display()))
}

fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// Asserts that the config and every layer of image manifest `m` are blob files in `dir`.
fn check_image_blobs(dir: &Path, m: &Value) {
    let config = m["config"]["digest"]
        .as_str()
        .expect("manifest without config digest");
    let layers = m["layers"].as_array().expect("manifest without layers");
    assert!(
        !layers.is_empty(),
        "manifest in {} has no layers",
        dir.display()
    );
    let digests = layers
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest"));
    for digest in std::iter::once(config).chain(digests) {
        let file = dir.join(hex_of(digest));
        assert!(
            file.is_file(),
            "blob {digest} missing from {}",
            dir.display()
        );
    }
}

/// Checks a `dir:` copy: every blob file hashes to its name, every manifest (and, for an
/// index, each instance manifest `<hex>.manifest.json`) hashes to the digest that refers to
/// it, and every referenced blob is there.
pub fn check_dir(dir: &Path) -> Pulled {
    let mut blobs = 0;
    for entry in std::fs::read_dir(dir).expect("read dir: copy") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let actual = sha256_hex(&read(&entry.path()));
            assert_eq!(
                actual,
                name,
                "blob file {} has the wrong sha256",
                entry.path().display()
            );
            blobs += 1;
        }
    }
    let top_path = dir.join("manifest.json");
    let top_bytes = read(&top_path);
    let top = parse(&top_bytes, &top_path);
    let media_type = top["mediaType"].as_str().unwrap_or_default().to_string();
    let mut instances = Vec::new();
    if media_type == OCI_INDEX || top.get("manifests").is_some() {
        for m in top["manifests"]
            .as_array()
            .expect("index without manifests")
        {
            let digest = m["digest"]
                .as_str()
                .expect("index entry digest")
                .to_string();
            let path = dir.join(format!("{}.manifest.json", hex_of(&digest)));
            let bytes = read(&path);
            assert_eq!(
                digest_of(&bytes),
                digest,
                "{} has the wrong digest",
                path.display()
            );
            check_image_blobs(dir, &parse(&bytes, &path));
            instances.push(digest);
        }
    } else {
        check_image_blobs(dir, &top);
    }
    Pulled {
        digest: digest_of(&top_bytes),
        media_type,
        instances,
        blobs,
    }
}

/// What the upstream says about an image, straight from it (`skopeo inspect --raw`).
#[derive(Debug, Clone)]
pub struct Expected {
    pub digest: String,
    pub media_type: String,
    pub instances: Vec<String>,
    /// Distinct blobs (configs and layers) of the image and all its instances.
    pub blobs: usize,
}

/// Asserts that a pulled copy is exactly the upstream's image.
pub fn assert_same(pulled: &Pulled, expected: &Expected, what: &str) {
    assert_eq!(
        pulled.digest, expected.digest,
        "{what}: manifest digest differs from upstream"
    );
    assert_eq!(
        pulled.media_type, expected.media_type,
        "{what}: manifest mediaType differs"
    );
    assert_eq!(
        pulled.instances, expected.instances,
        "{what}: index instances differ"
    );
    assert_eq!(
        pulled.blobs, expected.blobs,
        "{what}: number of blob files differs"
    );
    if expected.media_type == DOCKER_MANIFEST {
        assert_eq!(
            pulled.media_type, DOCKER_MANIFEST,
            "{what}: Docker schema2 not kept"
        );
    }
}

/// Reads image `<repo>:<tag>` raw from the registry at `host` (`skopeo inspect --raw`,
/// with `tls` flags such as `--cert-dir`).
pub fn expected(skopeo: &Skopeo, tls: &[&str], host: &str, repo: &str, tag: &str) -> Expected {
    let raw = |reference: String| {
        let mut args = vec!["inspect", "--raw"];
        args.extend_from_slice(tls);
        let reference = format!("docker://{host}/{repo}{reference}");
        args.push(&reference);
        skopeo.run(&args)
    };
    let bytes = raw(format!(":{tag}"));
    let top: Value = serde_json::from_slice(&bytes).expect("inspect --raw is JSON");
    let media_type = top["mediaType"].as_str().unwrap_or_default().to_string();
    let mut blobs = std::collections::BTreeSet::new();
    let mut add_image = |m: &Value| {
        blobs.insert(
            m["config"]["digest"]
                .as_str()
                .expect("config digest")
                .to_string(),
        );
        for l in m["layers"].as_array().expect("layers") {
            blobs.insert(l["digest"].as_str().expect("layer digest").to_string());
        }
    };
    let mut instances = Vec::new();
    if let Some(list) = top["manifests"].as_array() {
        for m in list {
            let digest = m["digest"].as_str().expect("instance digest").to_string();
            let inner = raw(format!("@{digest}"));
            assert_eq!(
                digest_of(&inner),
                digest,
                "upstream instance digest mismatch"
            );
            add_image(&serde_json::from_slice(&inner).expect("instance JSON"));
            instances.push(digest);
        }
    } else {
        add_image(&top);
    }
    Expected {
        digest: digest_of(&bytes),
        media_type,
        instances,
        blobs: blobs.len(),
    }
}

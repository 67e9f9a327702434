//! Test images generated in Rust as OCI image layouts on disk: gzip'ed tar layers with
//! random contents, a real config with the right diff_ids, a manifest, maybe an index.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// splitmix64: fast, good enough for incompressible test data.
pub struct Rng(u64);

impl Rng {
    /// Seeded from std's per-process random hash keys, so every run differs.
    pub fn from_entropy() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        Rng(h.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// One 512-byte ustar header.
fn tar_header(name: &str, size: usize, dir: bool) -> [u8; 512] {
    assert!(name.len() < 100, "tar name too long: {name}");
    let mut h = [0u8; 512];
    let mut put = |off: usize, bytes: &[u8]| h[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, name.as_bytes());
    put(100, if dir { b"0000755\0" } else { b"0000644\0" });
    put(108, b"0000000\0"); // uid
    put(116, b"0000000\0"); // gid
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"14000000000\0"); // mtime: 2014-08-13, any fixed value
    put(148, b"        "); // checksum is computed with this field as spaces
    put(156, if dir { b"5" } else { b"0" });
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar archive with one directory `dir/` holding `files`.
pub fn tar(dir: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&tar_header(&format!("{dir}/"), 0, true));
    for (name, data) in files {
        out.extend_from_slice(&tar_header(&format!("{dir}/{name}"), data.len(), false));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0); // two zero blocks end the archive
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip write");
    enc.finish().expect("gzip finish")
}

/// An OCI image layout directory being filled.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Stores a blob and returns its descriptor.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    /// Writes index.json naming `desc` as tag `tag`.
    pub fn finish(&self, desc: &Value, tag: &str) {
        let mut desc = desc.clone();
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [desc]});
        let bytes = serde_json::to_vec(&index).expect("serialize index.json");
        std::fs::write(self.dir.join("index.json"), bytes).expect("write index.json");
    }

    /// Builds one image for linux/`arch` with layers of the given sizes (bytes of random
    /// file content per layer) and returns its manifest descriptor.
    pub fn image(&self, rng: &mut Rng, arch: &str, layer_sizes: &[usize]) -> Value {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for (i, &size) in layer_sizes.iter().enumerate() {
            let files = vec![
                (format!("data-{i}.bin"), rng.bytes(size)),
                (
                    "id.txt".to_string(),
                    format!("{arch} layer {i} {:x}\n", rng.next_u64()).into_bytes(),
                ),
            ];
            let raw = tar(&format!("layer{i}"), &files);
            diff_ids.push(digest_of(&raw));
            layers.push(self.put(OCI_LAYER_GZIP, &gzip(&raw)));
            history.push(
                json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("e2e layer {i}")}),
            );
        }
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/true"], "Labels": {"e2e.nonce": format!("{:x}", rng.next_u64())}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        let config = self.put(
            OCI_CONFIG,
            &serde_json::to_vec(&config).expect("config json"),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        self.put(
            OCI_MANIFEST,
            &serde_json::to_vec(&manifest).expect("manifest json"),
        )
    }
}

/// A generated image: where its layout is and where it goes upstream.
pub struct TestImage {
    /// Repository name upstream, e.g. `e2e/app`.
    pub repo: &'static str,
    pub tag: &'static str,
    pub layout: PathBuf,
    /// An index: copy with `--all`.
    pub multi: bool,
    /// Push with `--format v2s2` (Docker schema2 upstream).
    pub docker: bool,
}

/// The three test images under `dir`: `e2e/app:v1` (one multi-MiB layer, so streaming is
/// exercised), `e2e/multi:v1` (amd64 + arm64 index) and `e2e/docker:v1` (pushed as v2s2).
pub fn generate(dir: &Path) -> Vec<TestImage> {
    let mut rng = Rng::from_entropy();

    let app = Layout::new(&dir.join("layout-app"));
    let desc = app.image(&mut rng, "amd64", &[3 << 20, 40 << 10, 3000]);
    app.finish(&desc, "v1");

    let multi = Layout::new(&dir.join("layout-multi"));
    let mut manifests = Vec::new();
    for (arch, sizes) in [("amd64", [200 << 10, 5000]), ("arm64", [150 << 10, 7000])] {
        let mut desc = multi.image(&mut rng, arch, &sizes);
        desc["platform"] = json!({"architecture": arch, "os": "linux"});
        manifests.push(desc);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let desc = multi.put(OCI_INDEX, &serde_json::to_vec(&index).expect("index json"));
    multi.finish(&desc, "v1");

    let docker = Layout::new(&dir.join("layout-docker"));
    let desc = docker.image(&mut rng, "amd64", &[300 << 10, 2000]);
    docker.finish(&desc, "v1");

    let image = |repo, layout: &Layout, multi, docker| TestImage {
        repo,
        tag: "v1",
        layout: layout.dir.clone(),
        multi,
        docker,
    };
    vec![
        image("e2e/app", &app, false, false),
        image("e2e/multi", &multi, true, false),
        image("e2e/docker", &docker, false, true),
    ]
}

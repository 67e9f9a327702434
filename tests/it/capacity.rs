//! Cache capacity against the fake upstream: eviction under the watermarks by last access,
//! pinned images, blobs larger than the cache, and readers of a blob that gets evicted.
//!
//! - `eviction`: many images through a small cache, a hot image and a pinned one.
//! - `large`: a blob larger than `max_size` is served but never cached.
//! - `expiry`: `cache.max_idle` sweeps and per-upstream `max_size` quotas.

mod eviction;
mod expiry;
mod large;

use crate::support::scrape::{lines_with, sample, scrape};
use crate::support::{data, digest_of, get, Fake};
use std::net::SocketAddr;
use std::time::Duration;

/// Last access is recorded with a resolution of one second: accesses whose order matters are
/// this far apart.
pub const TICK: Duration = Duration::from_millis(1100);

/// An image put in the fake: its repository, tag, and every blob (config first).
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// Puts `repo:tag` with one layer of `layer_len` pseudo-random bytes from `seed`.
    pub fn put(fake: &Fake, repo: &str, tag: &str, layer_len: usize, seed: u64) -> Image {
        let layer = data(layer_len, seed);
        let (_, manifest) = fake.put_image(repo, tag, &[&layer]);
        let m: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest json");
        let config_digest = m["config"]["digest"].as_str().expect("config digest");
        let config = fake.blob_bytes(config_digest).expect("config in fake");
        Image {
            repo: repo.to_string(),
            tag: tag.to_string(),
            blobs: vec![
                (config_digest.to_string(), config),
                (digest_of(&layer), layer),
            ],
        }
    }

    /// Pulls the image through Wharf at `addr` like a client does (manifest by tag, then every
    /// blob), checks every byte, and returns how many upstream blob GETs it caused.
    pub async fn pull(&self, fake: &Fake, addr: SocketAddr) -> u64 {
        let before = fake.count("GET blob");
        let base = format!("http://{addr}/v2/{}", self.repo);
        let r = get(&format!("{base}/manifests/{}", self.tag)).await;
        assert_eq!(r.status, 200, "manifest of {}:{}", self.repo, self.tag);
        let m = r.json();
        let mut wanted = vec![m["config"]["digest"].as_str().expect("config").to_string()];
        for l in m["layers"].as_array().expect("layers") {
            wanted.push(l["digest"].as_str().expect("layer digest").to_string());
        }
        let ours: Vec<&str> = self.blobs.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(wanted, ours, "the manifest lists the image's blobs");
        for (d, bytes) in &self.blobs {
            let r = get(&format!("{base}/blobs/{d}")).await;
            assert_eq!(r.status, 200, "blob {d} of {}", self.repo);
            assert_eq!(
                r.bytes().len(),
                bytes.len(),
                "length of blob {d} of {}",
                self.repo
            );
            assert!(r.bytes().as_ref() == bytes.as_slice(), "bytes of blob {d}");
        }
        fake.count("GET blob") - before
    }
}

/// Polls `/metrics` until `wharf_cache_size_bytes` ≤ `limit` (eviction runs in the
/// background); panics with the observed values after `timeout`.
pub async fn settle_under(admin: SocketAddr, limit: f64, timeout: Duration, what: &str) -> f64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let t = scrape(admin).await;
        let size = sample(&t, "wharf_cache_size_bytes");
        if size <= limit {
            return size;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{what}: wharf_cache_size_bytes = {size} still above {limit} after {timeout:?}\n{}",
                lines_with(&t, "wharf_evict") + "\n" + &lines_with(&t, "wharf_cache")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

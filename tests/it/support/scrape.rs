//! Reading Wharf's `/metrics` and the on-disk layout of its data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The value of one sample line `name{labels} value` in a scrape (0 when absent).
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /metrics` on the admin listener.
pub async fn scrape(admin: SocketAddr) -> String {
    let r = super::get(&format!("http://{admin}/metrics")).await;
    assert_eq!(r.status, 200, "GET /metrics");
    String::from_utf8(r.bytes().to_vec()).expect("utf8")
}

/// `/metrics` of an in-process Wharf once its fills in flight have ended: a fill is counted,
/// and its blob added to the cache size, when its commit ends, which may be just after its
/// clients got their last (verified) byte.
pub async fn scrape_settled(w: &wharf::app::Running) -> String {
    w.registry
        .drain_fills(std::time::Duration::from_secs(10))
        .await;
    scrape(w.admin_addr).await
}

/// The lines of a scrape that start with `prefix` (for failure messages).
pub fn lines_with(text: &str, prefix: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a committed blob lives: `<data_dir>/blobs/sha256/<2 hex>/<64 hex>`.
pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    data_dir
        .join("blobs")
        .join("sha256")
        .join(&hex[..2])
        .join(hex)
}

/// The entries of `<data_dir>/<sub>` (none if it does not exist).
pub fn entries(data_dir: &Path, sub: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join(sub))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

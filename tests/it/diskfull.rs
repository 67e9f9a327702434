//! Disk full during a fill: the clients still get every byte, nothing partial is cached, the
//! temp file is gone, and a metric counts it. The fill's temp directory is a small tmpfs
//! mounted over `data_dir/tmp` (needs root, as CI has; elsewhere set WHARF_SKIP_MOUNT=1).

use crate::support::{self, data, digest_of, get, BlobBehavior, Fake};
use std::process::Command;
use std::time::Duration;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_still_serves_every_byte_and_caches_nothing() {
    if std::env::var("WHARF_SKIP_MOUNT").as_deref() == Ok("1") {
        eprintln!("skipped: WHARF_SKIP_MOUNT=1");
        return;
    }
    let fake = Fake::start().await;
    let blob = data(6 * 1024 * 1024, 77);
    let d = fake.put_blob(&blob);
    fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 256 * 1024,
            delay: Duration::from_millis(2),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let tmp = dir.path().join("tmp");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&tmp)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "mounting a 1 MiB tmpfs over {} failed (root needed; WHARF_SKIP_MOUNT=1 skips)",
        tmp.display()
    );
    let _mount = Mount(tmp.clone());

    let url = format!("http://{}/v2/app/blobs/{d}", w.addr);
    let (a, b) = tokio::join!(get(&url), get(&url));
    for r in [a, b] {
        assert_eq!(r.status, 200);
        assert_eq!(
            digest_of(r.bytes()),
            d,
            "every byte arrives despite the full disk"
        );
    }
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    assert!(
        !w.registry.store().files().exists(&digest),
        "nothing partial is cached"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).expect("tmp").count(),
        0,
        "temp file removed"
    );
    let m = get(&format!("http://{}/metrics", w.admin_addr)).await;
    let text = String::from_utf8_lossy(m.bytes()).to_string();
    assert!(text.contains("wharf_disk_write_errors_total 1"), "{text}");
    assert!(
        text.contains("wharf_fills_total{result=\"uncacheable\"} 1"),
        "{text}"
    );
    // The next request fetches again (and still works).
    assert_eq!(digest_of(get(&url).await.bytes()), d);
    assert_eq!(fake.count("GET blob"), 2);
    w.shutdown().await;
}

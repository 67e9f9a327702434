//! Shared test support: the fake upstream, an in-process Wharf, a small HTTP client that does
//! the registry token dance, and log capture.

pub mod client;
pub mod fake;
pub mod hook;
pub mod logs;
pub mod scrape;

use std::path::Path;
use std::time::Duration;
use wharf::app::Running;
use wharf::config::Config;

pub use client::{basic, client, get, raw, request, request_as, send, Resp, Session};
pub use fake::{digest_of, BlobBehavior, Fake, ALICE, BOB};

/// An in-process Wharf whose one upstream is `upstream_url`, named `name`; `extra` goes inside
/// the `[[upstream]]` table.
pub async fn wharf(data_dir: &Path, name: &str, upstream_url: &str, extra: &str) -> Running {
    wharf_with(data_dir, name, upstream_url, extra, "").await
}

/// As [`wharf`], with `top` (top-level tables such as `[auth]`) before the other tables.
pub async fn wharf_with(
    data_dir: &Path,
    name: &str,
    upstream_url: &str,
    extra: &str,
    top: &str,
) -> Running {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
{top}
[fill]
idle_timeout = "5s"
[[upstream]]
name = "{name}"
url = "{upstream_url}"
default = true
{extra}
"#,
        data_dir.display()
    );
    wharf_toml(&toml).await
}

/// An in-process Wharf from a whole config file (its `listen` is ignored: port 0).
pub async fn wharf_toml(toml: &str) -> Running {
    let cfg = Config::from_toml_str(toml)
        .unwrap_or_else(|e| panic!("test config is not valid: {e}\n{toml}"));
    // A Wharf shut down a moment ago in this process may still have a task finishing with
    // its store (RocksDB's lock is per process and file): retry that, briefly and only that.
    for _ in 0..40 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        match wharf::app::start_on(cfg.clone(), listener).await {
            Ok(r) => return r,
            Err(e) if e.contains("lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("wharf starts: {e}"),
        }
    }
    panic!("wharf starts: the store stayed locked for 2 s after the previous Wharf stopped")
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

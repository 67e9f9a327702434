//! Shared test support: the fake upstream, an in-process Wharf, a small HTTP client that does
//! the registry token dance, and log capture.

pub mod client;
pub mod fake;
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    wharf::app::start_on(cfg, listener)
        .await
        .expect("wharf starts")
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

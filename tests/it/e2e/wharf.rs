//! The `wharf` binary that cargo built, run as a child process on a free port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::proc::{free_port, wait_ready, Proc};

/// The upstream name clients use in a path prefix (`/v2/registry.test/e2e/app/...`).
pub const UPSTREAM_NAME: &str = "registry.test";

pub struct Wharf {
    pub port: u16,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin_port: u16,
    pub proc: Proc,
}

/// Status line of `GET /v2/` over a raw HTTP/1.1 connection, if one came back.
fn get_v2_status(port: u16) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.lines().next().map(str::to_string)
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
pub fn quoted(s: impl AsRef<std::ffi::OsStr>) -> String {
    serde_json::to_string(&s.as_ref().to_string_lossy()).expect("quote string")
}

/// Writes `<dir>/wharf.toml`: listening on `port`/`admin_port`, data in `<dir>/wharf-data`, one
/// default upstream [`UPSTREAM_NAME`] at `upstream_url` trusted via `ca_file`, with
/// `upstream_keys` in its table. Returns the file's path.
pub fn write_config(
    dir: &Path,
    port: u16,
    admin_port: u16,
    upstream_url: &str,
    ca_file: &Path,
    upstream_keys: &str,
) -> std::path::PathBuf {
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         admin_listen = \"127.0.0.1:{admin_port}\"\n\
         data_dir = {data}\n\
         \n\
         [[upstream]]\n\
         name = \"{UPSTREAM_NAME}\"\n\
         url = {url}\n\
         default = true\n\
         ca_file = {ca}\n\
         {upstream_keys}",
        data = quoted(dir.join("wharf-data")),
        url = quoted(upstream_url),
        ca = quoted(ca_file),
    );
    let config_file = dir.join("wharf.toml");
    std::fs::write(&config_file, config).expect("write wharf.toml");
    config_file
}

impl Wharf {
    /// Writes `<dir>/wharf.toml` for one default upstream at `upstream_url` trusted via
    /// `ca_file`, starts `wharf serve`, and waits until `GET /v2/` answers 200 (or 401: a
    /// Wharf that requires authentication).
    pub fn start(dir: &Path, upstream_url: &str, ca_file: &Path) -> Wharf {
        Wharf::start_with(dir, upstream_url, ca_file, "tag_ttl = \"1s\"\n", &[])
    }

    /// As [`Wharf::start`], with `upstream_keys` (TOML lines such as `tag_ttl = "1s"`) in the
    /// `[[upstream]]` table instead of the default `tag_ttl = "1s"`, and `args` (such as
    /// `--offline`) after `wharf serve`. The data dir is always `<dir>/wharf-data`.
    pub fn start_with(
        dir: &Path,
        upstream_url: &str,
        ca_file: &Path,
        upstream_keys: &str,
        args: &[&str],
    ) -> Wharf {
        let (port, admin_port) = (free_port(), free_port());
        Wharf::start_in(
            dir,
            port,
            admin_port,
            upstream_url,
            ca_file,
            upstream_keys,
            args,
        )
    }

    /// As [`Wharf::start_with`], listening on `port` and `admin_port` chosen by the caller
    /// (replicas of a cluster list each other's ports before any of them starts).
    pub fn start_in(
        dir: &Path,
        port: u16,
        admin_port: u16,
        upstream_url: &str,
        ca_file: &Path,
        upstream_keys: &str,
        args: &[&str],
    ) -> Wharf {
        let config_file = write_config(dir, port, admin_port, upstream_url, ca_file, upstream_keys);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .current_dir(dir);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut proc = Proc::spawn("wharf", cmd, dir, Duration::from_secs(3));
        wait_ready(&mut proc, "wharf serve", Duration::from_secs(30), || {
            let status = get_v2_status(port);
            status.is_some_and(|s| matches!(s.split(' ').nth(1), Some("200" | "401")))
        });
        Wharf {
            port,
            admin_port,
            proc,
        }
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

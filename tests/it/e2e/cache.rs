//! The cache's crash safety and its offline tools, with the `wharf` binary and the in-process
//! fake upstream (on a runtime of its own), so no external software is needed.
//!
//! - `crash`: `kill -9` in the middle of concurrent fills, then `wharf fsck` and every blob.
//! - `tools`: `wharf fsck [--repair]` on a corrupt blob and a missing one; `wharf gc`.

mod crash;
mod tools;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::proc::{free_port, wait_ready, Proc};
use crate::support::{self, Fake, Resp};

/// The upstream's name in Wharf's configuration.
pub const UPSTREAM: &str = "up.test";

/// A fake upstream on its own runtime, a temp dir, and Wharf's configuration there.
/// Fields drop in order: the fake, then its runtime, then the dir.
pub struct World {
    pub fake: Fake,
    pub rt: tokio::runtime::Runtime,
    /// Top-level TOML (such as a `[cache]` table) for every Wharf started here.
    top: String,
    starts: std::cell::Cell<u32>,
    pub dir: tempfile::TempDir,
}

/// `wharf serve` as a child process.
pub struct WharfProc {
    pub port: u16,
    pub admin_port: u16,
    pub proc: Proc,
}

/// A finished run of a `wharf` subcommand.
#[derive(Debug)]
pub struct Cli {
    pub code: Option<i32>,
    /// stdout and stderr, one after the other.
    pub output: String,
}

impl World {
    pub fn new(label: &str, top: &str) -> World {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-e2e-{label}-"))
            .tempdir()
            .expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(Fake::start());
        World {
            fake,
            rt,
            top: top.to_string(),
            starts: std::cell::Cell::new(0),
            dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("wharf-data")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("wharf.toml")
    }

    /// Writes `wharf.toml` with fresh ports and starts `wharf serve`; waits until `/v2/`
    /// answers. `grace` is the SIGTERM grace when stopped (zero: stopping is `kill -9`).
    pub fn start(&self, grace: Duration) -> WharfProc {
        let (port, admin_port) = (free_port(), free_port());
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             data_dir = {data}\n{top}\n[fill]\nidle_timeout = \"5s\"\n\n[[upstream]]\n\
             name = \"{UPSTREAM}\"\nurl = \"{url}\"\ndefault = true\n",
            data = serde_json::to_string(&self.data_dir().to_string_lossy()).expect("quote"),
            top = self.top,
            url = self.fake.url(),
        );
        std::fs::write(self.config_file(), config).expect("write wharf.toml");
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_file())
            .current_dir(self.dir.path());
        let mut proc = Proc::spawn(&format!("wharf-{n}"), cmd, self.dir.path(), grace);
        let v2 = format!("http://127.0.0.1:{port}/v2/");
        wait_ready(&mut proc, "wharf serve", Duration::from_secs(20), || {
            let r = self.rt.block_on(support::raw("GET", &v2, &[]));
            matches!(r.status.as_u16(), 200 | 401)
        });
        WharfProc {
            port,
            admin_port,
            proc,
        }
    }

    /// Runs `wharf <args> --config wharf.toml` to completion (at most 20 s).
    pub fn cli(&self, args: &[&str]) -> Cli {
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let out_path = self.dir.path().join(format!("cli-{n}.out"));
        let err_path = self.dir.path().join(format!("cli-{n}.err"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .arg("--config")
            .arg(self.config_file())
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(File::create(&out_path).expect("create"))
            .stderr(File::create(&err_path).expect("create"))
            .spawn()
            .expect("spawn wharf");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wharf {args:?} did not finish within 20 s");
            }
            sleep(Duration::from_millis(20));
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        Cli {
            code: status.code(),
            output: format!("{}{}", read(&out_path), read(&err_path)),
        }
    }

    /// `GET` with the token dance.
    pub fn get(&self, url: &str) -> Resp {
        self.rt.block_on(support::get(url))
    }
}

impl WharfProc {
    pub fn blob_url(&self, repo: &str, digest: &str) -> String {
        format!("http://127.0.0.1:{}/v2/{repo}/blobs/{digest}", self.port)
    }

    /// An anonymous token from Wharf's `/token`.
    pub fn token(&self, w: &World) -> String {
        let r = w.get(&format!(
            "http://127.0.0.1:{}/token?service=wharf",
            self.port
        ));
        assert_eq!(r.status, 200, "token");
        r.json()["token"].as_str().expect("a token").to_string()
    }
}

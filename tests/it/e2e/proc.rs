//! Child processes that are always stopped, free ports, polling, and the tool check.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A child process that is stopped (and reaped) when dropped, even while unwinding.
///
/// Its stdout and stderr go to `<dir>/<name>.stdout` and `<dir>/<name>.stderr`.
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// Time between SIGTERM and SIGKILL; zero means SIGKILL at once.
    grace: Duration,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path, grace: Duration) -> Proc {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let out = File::create(&stdout).expect("create stdout log");
        let err = File::create(&stderr).expect("create stderr log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            grace,
            stdout,
            stderr,
        }
    }

    /// `None` while running; the exit status text once it has exited or been stopped.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut() {
            None => Some("stopped".to_string()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("wait failed: {e}")),
            },
        }
    }

    /// The child's process id (0 once it was reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Both captured output files (their last 16 KiB each), for failure messages.
    pub fn logs(&self) -> String {
        let read = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let mut start = text.len().saturating_sub(16 << 10);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text[start..].to_string()
        };
        format!(
            "----- {name} stdout ({out}) -----\n{}\n----- {name} stderr ({err}) -----\n{}",
            read(&self.stdout),
            read(&self.stderr),
            name = self.name,
            out = self.stdout.display(),
            err = self.stderr.display(),
        )
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if !self.grace.is_zero() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL at once (`kill -9`, whatever the grace), and reaps. Idempotent.
    pub fn kill(&mut self) {
        self.grace = Duration::ZERO;
        self.stop();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// `count` distinct ports that were free a moment ago on 127.0.0.1.
pub fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Polls `ready` every 50 ms until it is true; panics with `what` and `proc`'s logs on
/// timeout or if `proc` exits first.
pub fn wait_ready(proc: &mut Proc, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.exited() {
            panic!("{what}: process exited early ({status})\n{}", proc.logs());
        }
        if ready() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not ready within {timeout:?}\n{}", proc.logs());
        }
        sleep(Duration::from_millis(50));
    }
}

/// True if something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Polls `value` until it returns the same thing for `quiet` in a row (at most `max`).
/// Used to let a server's access log catch up with requests that have just finished.
pub fn settled<T: PartialEq>(quiet: Duration, max: Duration, mut value: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + max;
    let mut last = value();
    let mut since = Instant::now();
    loop {
        sleep(Duration::from_millis(50));
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet || Instant::now() >= deadline {
            return last;
        }
    }
}

/// True if `tool` is an executable file in a `PATH` directory.
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        let file = dir.join(tool);
        std::fs::metadata(&file).is_ok_and(|m| m.is_file())
    })
}

/// Checks that the external tools exist. Returns false (after saying so) if some are missing
/// and `WHARF_SKIP_E2E=1`; panics if they are missing otherwise.
pub fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = ["docker-registry", "skopeo", "openssl"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("WHARF_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("e2e test {test} SKIPPED: missing {missing:?} (WHARF_SKIP_E2E=1)");
        return false;
    }
    panic!(
        "e2e test {test} needs {missing:?} on PATH (Debian: apt-get install docker-registry \
         skopeo openssl), or set WHARF_SKIP_E2E=1 to skip it"
    );
}

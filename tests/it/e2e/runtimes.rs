//! What the container-runtime tests (`containerd`, `podman`) share: the tool check, bounded
//! runs of a client command, and TOML quoting.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::proc;

/// True if `tool` is an executable file in a `PATH` directory.
fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .any(|dir| std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file()))
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// [`proc::tools_present`] plus `tools` (such as `containerd`, `ctr`) and running as root,
/// with the same rule: missing means a panic, unless `WHARF_SKIP_E2E=1`, which skips.
pub fn present(test: &str, tools: &[&str]) -> bool {
    if !proc::tools_present(test) {
        return false;
    }
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| !on_path(t))
        .map(|t| t.to_string())
        .collect();
    if !is_root() {
        missing.push("root (uid 0)".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("WHARF_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("e2e test {test} SKIPPED: missing {missing:?} (WHARF_SKIP_E2E=1)");
        return false;
    }
    panic!(
        "e2e test {test} needs {missing:?} (Debian: apt-get install containerd podman; run as \
         root), or set WHARF_SKIP_E2E=1 to skip it"
    );
}

/// Runs `cmd` to completion within `timeout` (killed after that). `Ok(stdout)` on success;
/// otherwise a message with the command, its status, stdout and stderr.
pub fn run(mut cmd: Command, timeout: Duration, dir: &Path) -> Result<String, String> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("cmd-{n}.out"));
    let err_path = dir.join(format!("cmd-{n}.err"));
    let out = std::fs::File::create(&out_path).expect("create stdout file");
    let err = std::fs::File::create(&err_path).expect("create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!(
            "{what} failed ({s})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
        None => Err(format!(
            "{what} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
pub fn quoted(s: impl AsRef<std::ffi::OsStr>) -> String {
    serde_json::to_string(&s.as_ref().to_string_lossy()).expect("quote string")
}

/// The last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

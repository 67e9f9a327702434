"""Child processes stopped by process id, ports, HTTP probes, peak RSS."""

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PROCS = []  # everything started, stopped at exit


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Proc:
    def __init__(self, name, cmd, logfile, env=None, cwd=None):
        self.name = name
        self.logfile = logfile
        self.out = open(logfile, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(
            cmd, stdout=self.out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        PROCS.append(self)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self.out.close()
        if self in PROCS:
            PROCS.remove(self)


def stop_all():
    for p in list(PROCS):
        p.stop()


def http_status(url, headers=None, timeout=2):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except Exception:
        return None, {}, b""


def wait_up(url, proc, statuses=(200, 401), deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: see {proc.logfile}")
        if http_status(url)[0] in statuses:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not come up at {url}: see {proc.logfile}")


def peak_rss_kib(pids):
    """VmHWM (peak resident set) summed over `pids` and their children."""
    all_pids = set(pids)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid in pids:
                    all_pids.add(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    total = 0
    for pid in all_pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total

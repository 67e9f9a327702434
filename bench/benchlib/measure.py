"""What is measured, per proxy and directly against the upstream."""

import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .procs import log, peak_rss_kib

MIB = 1 << 20
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def skopeo_pull(ref, dest, tls):
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run(["skopeo", "copy", "--quiet", *tls, f"docker://{ref}", f"dir:{dest}"],
                   check=True, capture_output=True, timeout=900)
    elapsed = time.monotonic() - t0
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def curl_get(url, headers, cacert=None):
    """(time to first byte, total time, bytes) of one GET to /dev/null."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download} %{http_code}"]
    if cacert:
        cmd += ["--cacert", str(cacert)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True, timeout=600)
    ttfb, total, size, code = out.stdout.split()
    if code != "200":
        raise RuntimeError(f"GET {url}: {code}")
    return float(ttfb), float(total), int(size)


def wrk(url, headers, seconds):
    cmd = ["wrk", "-t", "2", "-c", "32", "-d", f"{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99_ms = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p99_ms, int(non2xx.group(1)) if non2xx else 0


def median(xs):
    return statistics.median(xs) if xs else None


def scratch_dir(work, need_bytes):
    """/dev/shm when it has room (16 concurrent pulls write 16 copies), else the work dir."""
    try:
        if shutil.disk_usage("/dev/shm").free > need_bytes * 1.5:
            return Path(tempfile.mkdtemp(prefix="wharf-bench-", dir="/dev/shm"))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="scratch-", dir=work))


def measure(proxy, upstream, image_bytes, big_layer, repeats, wrk_secs, scratch, concurrency):
    r = {"name": proxy.name}
    tls = ["--src-tls-verify=false"]
    ref = "{host}/bench/big:v1"

    # 1 + 2: cold pull time and upstream bytes, then a warm pull's upstream bytes.
    colds, cold_bytes, warm_bytes = [], [], []
    for i in range(repeats):
        proxy.start()
        try:
            m = upstream.mark()
            colds.append(skopeo_pull(ref.format(host=proxy.host), scratch / "cold", tls))
            cold_bytes.append(upstream.blob_bytes_since(m))
            m = upstream.mark()
            skopeo_pull(ref.format(host=proxy.host), scratch / "warm", tls)
            warm_bytes.append(upstream.blob_bytes_since(m))
        finally:
            proxy.stop()
        log(f"{proxy.name}: cold pull {colds[-1]:.2f}s, upstream {cold_bytes[-1] / image_bytes:.2f}x; warm upstream {warm_bytes[-1]} B")
    r["cold_pull_s"] = median(colds)
    r["cold_upstream_x"] = median(cold_bytes) / image_bytes
    r["warm_upstream_bytes"] = median(warm_bytes)

    # 7: time to first byte of a cold blob.
    ttfbs = []
    for i in range(repeats):
        proxy.start()
        try:
            h = proxy.auth_headers("bench/big")
            ttfb, _, _ = curl_get(f"http://{proxy.host}/v2/bench/big/blobs/{big_layer['digest']}", h)
            ttfbs.append(ttfb)
        finally:
            proxy.stop()
    r["cold_ttfb_s"] = median(ttfbs)

    # 3 + 6: concurrent cold pulls; peak RSS; then (warm) 4 and 5 on the same instance.
    walls, conc_bytes, rss = [], [], []
    for i in range(repeats):
        proxy.start()
        try:
            m = upstream.mark()
            errors = []

            def one(k):
                try:
                    skopeo_pull(ref.format(host=proxy.host), scratch / f"c{k}", tls)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(str(e))

            threads = [threading.Thread(target=one, args=(k,)) for k in range(concurrency)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=1200)
            walls.append(time.monotonic() - t0)
            if errors:
                raise RuntimeError(f"{proxy.name}: {len(errors)} concurrent pulls failed: {errors[0]}")
            conc_bytes.append(upstream.blob_bytes_since(m))
            rss.append(peak_rss_kib(proxy.pids()))
            log(f"{proxy.name}: {concurrency} concurrent cold pulls {walls[-1]:.2f}s, upstream {conc_bytes[-1] / image_bytes:.2f}x, peak RSS {rss[-1] / 1024:.0f} MiB")
            if i == repeats - 1:
                h = proxy.auth_headers("bench/big")
                url = f"http://{proxy.host}/v2/bench/big/blobs/{big_layer['digest']}"
                best = 0.0
                for _ in range(3):
                    _, total, size = curl_get(url, h)
                    best = max(best, size / MIB / total)
                r["warm_blob_mib_s"] = best
                rps, p99, non2xx = wrk(f"http://{proxy.host}/v2/bench/big/manifests/v1",
                                       dict(h, Accept=ACCEPT), wrk_secs)
                r["manifest_rps"], r["manifest_p99_ms"], r["manifest_non2xx"] = rps, p99, non2xx
                r["peak_rss_run_mib"] = peak_rss_kib(proxy.pids()) / 1024
                log(f"{proxy.name}: warm blob {best:.0f} MiB/s; manifests {rps:.0f} req/s, p99 {p99:.2f} ms")
        finally:
            proxy.stop()
    r["concurrent_wall_s"] = median(walls)
    r["concurrent_upstream_x"] = median(conc_bytes) / image_bytes
    r["concurrent_peak_rss_mib"] = max(rss) / 1024
    return r


def direct(upstream, big_layer, repeats, scratch):
    tls = ["--src-cert-dir", str(upstream.cert_dir)]
    pulls = [skopeo_pull(f"{upstream.host}/bench/big:v1", scratch / "direct", tls)
             for _ in range(repeats)]
    ttfbs = [curl_get(f"{upstream.url}/v2/bench/big/blobs/{big_layer['digest']}", {},
                      cacert=upstream.ca)[0] for _ in range(repeats)]
    return {"name": "direct", "cold_pull_s": median(pulls), "cold_ttfb_s": median(ttfbs)}

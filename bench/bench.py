#!/usr/bin/env python3
"""Wharf against its peers, side by side in one run, on loopback.

Upstream: Debian's docker-registry over HTTPS (a test CA). Peers: docker-registry in proxy
mode (CNCF Distribution's pull-through cache) and nginx as a caching reverse proxy
(proxy_cache + proxy_cache_lock, sendfile). Each proxy starts with a fresh cache for every
cold measurement. Upstream bytes are read from the upstream's own request log
(`http.response.written`), so nothing sits between the proxies and the upstream.

Bounded: every loop has a fixed count, every wait a deadline; every process started is
stopped (by process id) on the way out, also on errors and Ctrl-C.
"""

import argparse
import os
import signal
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.measure import direct, measure, scratch_dir  # noqa: E402
from benchlib.procs import log, run, stop_all  # noqa: E402
from benchlib.proxies import Distribution, Nginx, Wharf  # noqa: E402
from benchlib.report import report  # noqa: E402
from benchlib.upstream import MIB, Upstream, make_image  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wharf", required=True, help="the release wharf binary")
    ap.add_argument("--big-mib", type=int, default=int(os.environ.get("BENCH_BIG_MIB", 256)))
    ap.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    ap.add_argument("--wrk-secs", type=int, default=int(os.environ.get("BENCH_WRK_SECS", 10)))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    scratch = None
    load_before = os.getloadavg()
    try:
        log(f"work dir {work}")
        upstream = Upstream(work)
        small_mib = max(1, args.big_mib // 8)
        layout, image_bytes, big_layer = make_image(work, "big", [args.big_mib, small_mib])
        small_layout, _, _ = make_image(work, "small", [1])
        for lay, repo in [(layout, "bench/big"), (small_layout, "bench/small")]:
            run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(upstream.cert_dir),
                 f"oci:{lay}:v1", f"docker://{upstream.host}/{repo}:v1"])
        log(f"pushed bench/big:v1 ({image_bytes / MIB:.1f} MiB) and bench/small:v1")
        scratch = scratch_dir(work, image_bytes * args.concurrency)
        results = {"direct": direct(upstream, big_layer, args.repeats, scratch)}
        log(f"direct: cold pull {results['direct']['cold_pull_s']:.2f}s")
        for proxy in [Wharf(work, Path(args.wharf), upstream), Distribution(work, upstream),
                      Nginx(work, upstream)]:
            results[proxy.name] = measure(proxy, upstream, image_bytes, big_layer, args.repeats,
                                          args.wrk_secs, scratch, args.concurrency)
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cores": os.cpu_count(),
            "load_before": " ".join(f"{x:.2f}" for x in load_before),
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "image_mib": image_bytes / MIB,
            "layers": f"{args.big_mib} MiB + {small_mib} MiB layers",
            "repeats": args.repeats,
            "wrk_secs": args.wrk_secs,
            "concurrency": args.concurrency,
        }
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report(results, meta, Path(args.out))
    finally:
        stop_all()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""bench/RESULTS.md and bench/results.json."""

import json

MIB = 1 << 20


def verdict(ok):
    return "met" if ok else "**missed**"


def report(results, meta, out_dir):
    d, w = results["direct"], results["wharf"]
    dist, ng = results["distribution-proxy"], results["nginx"]
    rows = [
        ("cold pull (s, median)", "cold_pull_s", "{:.2f}"),
        ("cold pull / direct pull", None, None),
        ("upstream bytes, one cold pull (x image)", "cold_upstream_x", "{:.3f}"),
        ("upstream bytes, warm pull", "warm_upstream_bytes", "{:.0f}"),
        (f"{meta['concurrency']} concurrent cold pulls (s, median)", "concurrent_wall_s", "{:.2f}"),
        (f"upstream bytes, {meta['concurrency']} concurrent (x image)", "concurrent_upstream_x", "{:.3f}"),
        ("warm 256 MiB blob GET (MiB/s, best of 3)", "warm_blob_mib_s", "{:.0f}"),
        ("warm manifest by tag (req/s, wrk -c32)", "manifest_rps", "{:.0f}"),
        ("manifest p99 (ms)", "manifest_p99_ms", "{:.2f}"),
        (f"peak RSS during {meta['concurrency']} concurrent (MiB)", "concurrent_peak_rss_mib", "{:.1f}"),
        ("peak RSS over the warm phase (MiB)", "peak_rss_run_mib", "{:.1f}"),
        ("cold blob time to first byte (s)", "cold_ttfb_s", "{:.3f}"),
    ]
    cols = [w, dist, ng, d]
    lines = [
        "# Benchmark results",
        "",
        f"Run {meta['date']} on {meta['cores']} cores (load average {meta['load_before']} before, "
        f"{meta['load_after']} after), image {meta['image_mib']:.0f} MiB "
        f"({meta['layers']}), {meta['repeats']} repeats (medians), wrk {meta['wrk_secs']} s. "
        "Made by `bench/run`; raw numbers in `bench/results.json`.",
        "",
        "| measure | Wharf | Distribution proxy | nginx proxy_cache | direct |",
        "|---|---|---|---|---|",
    ]
    for label, key, fmt in rows:
        if key is None:
            cells = [f"{c['cold_pull_s'] / d['cold_pull_s']:.2f}" if c is not d else "1.00" for c in cols]
        else:
            cells = [fmt.format(c[key]) if c.get(key) is not None else "–" for c in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    targets = [
        ("cold pull / direct pull ≤ 1.00 (within 5% noise)",
         w["cold_pull_s"] / d["cold_pull_s"], w["cold_pull_s"] / d["cold_pull_s"] <= 1.05),
        ("upstream bytes for one cold pull = 1.0x", w["cold_upstream_x"],
         abs(w["cold_upstream_x"] - 1.0) <= 0.01),
        (f"upstream bytes for {meta['concurrency']} concurrent cold pulls ≤ 1.02x",
         w["concurrent_upstream_x"], w["concurrent_upstream_x"] <= 1.02),
        (f"{meta['concurrency']} concurrent cold pulls ≤ 0.8x nginx's time",
         w["concurrent_wall_s"] / ng["concurrent_wall_s"],
         w["concurrent_wall_s"] <= 0.8 * ng["concurrent_wall_s"]),
        ("warm blob throughput ≥ 0.9x nginx", w["warm_blob_mib_s"] / ng["warm_blob_mib_s"],
         w["warm_blob_mib_s"] >= 0.9 * ng["warm_blob_mib_s"]),
        ("warm manifest-by-tag ≥ 10x Distribution's proxy", w["manifest_rps"] / dist["manifest_rps"],
         w["manifest_rps"] >= 10 * dist["manifest_rps"]),
        ("warm manifest-by-tag ≥ 1.5x nginx", w["manifest_rps"] / ng["manifest_rps"],
         w["manifest_rps"] >= 1.5 * ng["manifest_rps"]),
        (f"peak RSS ≤ 64 MiB during {meta['concurrency']} concurrent pulls",
         w["concurrent_peak_rss_mib"], w["concurrent_peak_rss_mib"] <= 64),
    ]
    lines += ["", "| target | Wharf's ratio / value | verdict |", "|---|---|---|"]
    for label, value, ok in targets:
        lines.append(f"| {label} | {value:.3f} | {verdict(ok)} |")
    lines += ["", "Notes on missed targets, if any, are in `bench/NOTES.md`.", ""]
    (out_dir / "RESULTS.md").write_text("\n".join(lines))
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "results": results,
                                                      "targets": [{"target": t, "value": v, "met": ok} for t, v, ok in targets]},
                                                     indent=2) + "\n")
    print("\n".join(lines))

"""The tables of benchmarks/report.py, built from the benchmarks' --json summaries: pure
functions (no clock, no processes), so tests/test_report_tables.py can check them on made-up
summaries. Each `*_rows` returns (header, rows); a missing peer is a row that says so."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

MIB = 1 << 20
GIB = 1 << 30


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; `|` inside a cell is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def num(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100): with few samples, p95 is the largest."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _wall_cells(m: dict[str, float], size: int, ours: dict[str, float] | None) -> list[str]:
    """wall (MB/s), CPU-s/GiB, vidupd's speed relative to this one."""
    gib = size / GIB
    ratio = "1.00x (reference)" if ours is m else (f"{m['wall'] / ours['wall']:.2f}x" if ours else "n/a")
    return [f"{m['wall']:.2f} s ({size / 1e6 / m['wall']:.0f} MB/s)", num(m["cpu"] / gib), ratio]


def spread(summary: dict[str, Any], name: str | None = None) -> str:
    """Every run's wall time, lowest to highest (the medians hide how noisy the machine was)."""
    runs = summary.get("per_run", {})
    runs = runs.get(name, []) if name is not None else runs
    walls = sorted(r["wall"] for r in runs if "wall" in r)
    return ", ".join(f"{w:.2f}" for w in walls) + " s" if walls else "n/a"


YOUKU_CLIENTS = (  # (bench_youku name, label, flow)
    ("vidupd-oss", "vidupd, OSS flow", "oss"),
    ("youku-upload", "youku-upload 0.1.2 (OSS flow, V1 signatures)", "oss"),
    ("vidupd-slices", "vidupd, slice flow", "slices"),
    ("youku-0.1.1", "youku 0.1.1 (slice flow)", "slices"),
)
OURS_OF_FLOW = {"oss": "vidupd-oss", "slices": "vidupd-slices"}


def youku_rows(summary: dict[str, Any] | None, missing: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["client", "wall (MB/s)", "CPU-s/GiB", "vidupd is faster by (same flow)", "peak RSS (max of runs)",
              "each run's wall"]
    rows = []
    med = (summary or {}).get("median", {})
    size = (summary or {}).get("size_mib", 0) * MIB
    for name, label, flow in YOUKU_CLIENTS:
        if name in missing:
            rows.append([label, missing[name], "", "", "", ""])
        elif name in med:
            m, ours = med[name], med.get(OURS_OF_FLOW[flow])
            rows.append([label, *_wall_cells(m, size, ours),
                         num(summary.get("max_rss_mib", {}).get(name, m["rss_mib"]), 0, " MiB"), spread(summary, name)])
    return header, rows


VOD_CLIENTS = (
    ("vidupd", "vidupd (V4)"),
    ("oss2", "raw oss2 resumable_upload (V4)"),
    ("ossv2", "alibabacloud-oss-v2 uploader (V4)"),
    ("sdk", "voduploadsdk 1.0.2 (V1 only: the sandbox runs `--oss-signature both`)"),
)


def vod_rows(summary: dict[str, Any] | None, missing: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["client", "wall (MB/s)", "CPU-s/GiB", "vidupd is faster by", "whole process: wall, CPU-s/GiB",
              "peak RSS (max of runs)", "each run's wall"]
    rows = []
    med = (summary or {}).get("median", {})
    size = (summary or {}).get("size_mib", 0) * MIB
    ours = med.get("vidupd")
    for name, label in VOD_CLIENTS:
        if name in missing:
            rows.append([label, missing[name], "", "", "", "", ""])
        elif name in med:
            m = med[name]
            whole = "same" if name in ("vidupd", "sdk") else \
                f"{m['process_wall']:.2f} s, {m['process_cpu'] / (size / GIB):.2f}"
            rows.append([label, *_wall_cells(m, size, ours), whole,
                         num(summary.get("max_rss_mib", {}).get(name, m["rss_mib"]), 0, " MiB"), spread(summary, name)])
    return header, rows


def curl_rows(summary: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    header = ["client", "wall (MB/s)", "CPU-s/GiB", "peak RSS", "each run's wall"]
    if not summary:
        return header, []
    m, size = summary["median"], summary["size_mib"] * MIB
    return header, [[f"`{summary['client']}` PutObject, one stream", f"{m['wall']:.2f} s ({size / 1e6 / m['wall']:.0f} MB/s)",
                     num(m["cpu"] / (size / GIB)), num(m.get("rss_mib"), 1, " MiB"), spread(summary)]]


def daemon_rows(by_platform: dict[str, dict[str, Any] | None]) -> tuple[list[str], list[list[str]]]:
    header = ["platform", "files", "first queued to last completed (MB/s)", "from the drop (settle included)",
              "daemon CPU-s/GiB", "daemon peak RSS"]
    rows = []
    for platform, s in by_platform.items():
        if not s:
            continue
        rate = s["median_rates"][platform]
        mb_s = rate * s["size"] / 1e6
        rows.append([platform, f"{s['files']} x {s['size'] // MIB} MiB", f"{s['files'] / rate:.2f} s ({mb_s:.0f} MB/s)",
                     num(s["median_from_drop_s"], 1, " s"), num(s["median_cpu_s_per_gib"]),
                     num(s["max_peak_rss_mib"], 0, " MiB")])
    return header, rows


def small_rows(summary: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    header = ["platform", "uploads/s", "daemon CPU per upload (both platforms)", "sandbox CPU per upload",
              "daemon peak RSS"]
    if not summary:
        return header, []
    rows = []
    for platform, rate in summary["median_rates"].items():
        box = summary.get("median_sandbox_cpu_s_per_upload")
        rows.append([platform, f"{rate:.1f}", num(1000 * summary["median_cpu_s_per_upload"], 1, " ms"),
                     "n/a" if box is None else f"{1000 * box:.1f} ms", num(summary["max_peak_rss_mib"], 0, " MiB")])
    return header, rows


def burst_rows(summary: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    header = ["files", "first drop to last completed", "files/s", "daemon CPU per file", "daemon peak RSS"]
    if not summary:
        return header, []
    m = summary["median"]
    return header, [[str(summary["files"]), num(m["seconds"], 1, " s"), f"{m['files_per_s']:.0f}",
                     num(m["cpu_ms_per_file"], 2, " ms"), num(summary.get("max_peak_rss_mib", m["peak_rss_mib"]), 0,
                                                               " MiB")]]


def latency_rows(summary: dict[str, Any] | None, settle: float) -> tuple[list[str], list[list[str]]]:
    header = ["measure", "samples", "p50", "p95", "p50 beyond settle_seconds", "p95 beyond settle_seconds"]
    if not summary:
        return header, []
    rows = []
    for label, key in (("last write (mtime) to `upload.started`", "write_to_start_s"),
                       ("writer's close (after its fsync) to `upload.started`", "close_to_start_s"),
                       ("last write to the sandbox's first 64 KiB", "write_to_first_byte_s")):
        v = summary.get(key) or []
        p50, p95 = percentile(v, 50), percentile(v, 95)
        rows.append([label, str(len(v)), num(p50, 3, " s"), num(p95, 3, " s"),
                     num(None if p50 is None else p50 - settle, 3, " s"),
                     num(None if p95 is None else p95 - settle, 3, " s")])
    return header, rows


def startup_rows(summary: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    header = ["finished jobs", "launch to READY=1", "launch to `daemon.started`", "daemon CPU to READY",
              "daemon peak RSS at READY", "`vidupd status`: wall, CPU, peak RSS"]
    if not summary:
        return header, []
    m = summary["median"]
    return header, [[f"{summary['jobs']:,}", num(m["ready_s"], 3, " s"), num(m.get("started_event_s"), 3, " s"),
                     num(m["daemon_cpu_to_ready_s"], 2, " s"), num(m["daemon_rss_mib"], 0, " MiB"),
                     f"{m['status_wall_s']:.3f} s, {m['status_cpu_s']:.2f} s, {m['status_rss_mib']:.0f} MiB"]]


def fleet_rows(summary: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    header = ["daemons", "MB/s (first byte to last commit)", "x one daemon", "daemons' CPU-s/GiB",
              "highest daemon peak RSS"]
    if not summary:
        return header, []
    med = {int(k): v for k, v in summary["median"].items()}
    one = med.get(1)
    return header, [[str(n), num(m["mb_s"], 1), "n/a" if not one else f"{m['mb_s'] / one['mb_s']:.2f}x",
                     num(m["cpu_s_per_gib"]), num(m.get("peak_rss_mib"), 0, " MiB")] for n, m in sorted(med.items())]

"""benchmarks/report.py's tables, built from made-up benchmark summaries: the ratios are
vidupd's speed over each peer's (same flow), a peer that is not installed is a row saying so,
and the percentiles are nearest-rank. No benchmark runs here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import _report_tables as t  # noqa: E402

GIB = 1 << 30


def run(wall: float, cpu: float, rss: float = 50.0, **extra: float) -> dict[str, float]:
    return {"wall": wall, "cpu": cpu, "rss_mib": rss, **extra}


def test_youku_ratios_compare_within_a_flow_and_name_missing_peers():
    summary = {"size_mib": 1024, "median": {"vidupd-oss": run(5.0, 4.8, 68), "youku-upload": run(80.0, 73.5, 54),
                                            "vidupd-slices": run(8.0, 6.0, 74)},
               "max_rss_mib": {"vidupd-oss": 70.0}, "per_run": {"vidupd-oss": [{"wall": 5.2}, {"wall": 4.9}]}}
    header, rows = t.youku_rows(summary, {"youku-0.1.1": "not installed (`pip install youku==0.1.1`): not measured"})
    by = {r[0]: r for r in rows}
    assert len(rows) == 4 and len(header) == len(rows[0])
    assert by["vidupd, OSS flow"][1] == "5.00 s (215 MB/s)" and by["vidupd, OSS flow"][3] == "1.00x (reference)"
    assert by["youku-upload 0.1.2 (OSS flow, V1 signatures)"][3] == "16.00x"  # against the OSS flow, not slices
    assert by["vidupd, OSS flow"][4] == "70 MiB"  # the highest of the runs when given
    assert by["vidupd, OSS flow"][5] == "4.90, 5.20 s" and by["vidupd, slice flow"][5] == "n/a"
    assert by["youku 0.1.1 (slice flow)"][1].startswith("not installed")


def test_vod_rows_show_whole_process_figures_for_the_upload_only_peers():
    m = {"vidupd": run(4.0, 2.8, process_wall=4.0, process_cpu=2.8),
         "oss2": run(10.0, 9.0, process_wall=10.5, process_cpu=9.6),
         "sdk": run(8.0, 7.0, process_wall=8.0, process_cpu=7.0)}
    _, rows = t.vod_rows({"size_mib": 2048, "median": m}, {"ossv2": "not installed"})
    by = {r[0].split(" ")[0]: r for r in rows}
    assert by["raw"][2] == "4.50" and by["raw"][3] == "2.50x" and by["raw"][4] == "10.50 s, 4.80"
    assert by["vidupd"][4] == "same" and by["alibabacloud-oss-v2"][1] == "not installed"
    assert "V1 only" in by["voduploadsdk"][0]


def test_a_failed_benchmark_gives_no_rows():
    for rows in (t.vod_rows(None, {})[1], t.curl_rows(None)[1], t.small_rows(None)[1], t.burst_rows(None)[1],
                 t.latency_rows(None, 10)[1], t.startup_rows(None)[1], t.fleet_rows(None)[1],
                 t.daemon_rows({"vod": None})[1]):
        assert rows == []


def test_percentiles_are_nearest_rank():
    assert t.percentile([], 95) is None
    assert t.percentile([3.0, 1.0, 2.0], 50) == 2.0 and t.percentile([3.0, 1.0, 2.0], 95) == 3.0
    values = [float(x) for x in range(1, 101)]
    assert t.percentile(values, 95) == 95.0 and t.percentile(values, 50) == 50.0
    _, rows = t.latency_rows({"write_to_start_s": [10.2, 10.1, 10.4], "write_to_first_byte_s": []}, 10.0)
    assert rows[0][1:] == ["3", "10.200 s", "10.400 s", "0.200 s", "0.400 s"] and rows[2][2] == "n/a"


def test_daemon_and_fleet_rows():
    s = {"files": 4, "size": 256 << 20, "median_rates": {"vod": 0.5}, "median_from_drop_s": 19.0,
         "median_cpu_s_per_gib": 1.03, "max_peak_rss_mib": 89.4}
    _, rows = t.daemon_rows({"vod": s, "youku": None})
    assert rows == [["vod", "4 x 256 MiB", "8.00 s (134 MB/s)", "19.0 s", "1.03", "89 MiB"]]
    _, rows = t.fleet_rows({"median": {"1": {"mb_s": 30.0, "cpu_s_per_gib": 3.1, "peak_rss_mib": 80.0},
                                       "3": {"mb_s": 85.2, "cpu_s_per_gib": 3.0}}})
    assert [r[2] for r in rows] == ["1.00x", "2.84x"] and rows[1][4] == "n/a"


def test_table_escapes_pipes():
    assert t.table(["a", "b"], [["x|y", "z"]]).splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | z |"]


def test_every_flag_the_report_passes_is_one_its_benchmark_takes(tmp_path: Path):
    """A benchmark's option renamed would otherwise surface only in the lead's half-hour run."""
    import report

    helps: dict[str, str] = {}
    for o in (report.Opts(3, 1024, False, tmp_path), report.Opts(1, 16, True, tmp_path)):
        for section in report.SECTIONS:
            for b in section.benches(o, {}):
                if b.script not in helps:
                    helps[b.script] = subprocess.run([sys.executable, str(report.BENCH / b.script), "--help"],
                                                     cwd=report.ROOT, capture_output=True, text=True, timeout=60,
                                                     env={**os.environ, "PYTHONPATH": str(report.ROOT)}).stdout
                for flag in (*[a for a in b.args if a.startswith("--")], "--json"):
                    assert re.search(re.escape(flag) + r"(?![\w-])", helps[b.script]), f"{b.script} takes no {flag}"

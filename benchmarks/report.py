#!/usr/bin/env python3
"""One command, one report (issue 14): every speed claim measured in the same run, on this
machine, against the sandbox in hash-only mode, and written to benchmarks/REPORT.md.

    .venv/bin/python benchmarks/report.py [--runs 3] [--size-mib 1024] [--quick] [--only SECTION[,SECTION]]
                                          [--tmp /var/tmp] [--out benchmarks/REPORT.md]

Each section runs an existing benchmark as a child process with `--json FILE` (bench_youku,
bench_vod, bench_sandbox_oss, bench_small, bench_pipeline, bench_startup, bench_fleet) and
turns its summary into a table (benchmarks/_report_tables.py): medians of --runs, the ratios
beside them, the client's or daemon's CPU seconds per GiB beside its wall time, peak RSS of
each process (its own VmHWM: see _harness.HwmWatch). Each section says how to reproduce just it.
A peer that is not installed is a row saying so; a section whose benchmark fails is reported
with the tail of its output, and the report goes on. --quick shrinks every size (to check the
script end to end in a few minutes; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import _report_tables as t

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MIB = 1 << 20
SETTLE_SECONDS = 10.0  # the daemon's default, which bench_small's daemon runs with
PEERS = {  # client name in its benchmark -> (import name, package as pip knows it)
    "youku-upload": ("youku_upload", "youku-upload==0.1.2"), "youku-0.1.1": ("youku", "youku==0.1.1"),
    "oss2": ("oss2", "oss2"), "ossv2": ("alibabacloud_oss_v2", "alibabacloud-oss-v2"),
    "sdk": ("voduploadsdk", "voduploadsdk==1.0.2 --no-deps"),
}


def peer_versions() -> str:
    """The installed version of every peer package (and of what vidupd itself builds on)."""
    out = []
    for dist in ("youku", "youku-upload", "oss2", "alibabacloud-oss-v2", "voduploadsdk", "aliyun-python-sdk-core",
                 "requests"):
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


@dataclass(frozen=True)
class Opts:
    runs: int
    size_mib: int
    quick: bool
    tmp: Path
    latency_samples: int | None = None  # default: max(5, runs); --runs with --quick


@dataclass(frozen=True)
class Bench:
    """One benchmark child: its script and arguments (without --json)."""

    key: str
    script: str
    args: tuple[str, ...]

    def command(self) -> str:
        return shlex.join([".venv/bin/python", f"benchmarks/{self.script}", *self.args])


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    what: str
    benches: Callable[[Opts, dict[str, str]], list[Bench]]
    render: Callable[[dict[str, Any], dict[str, str], Opts], tuple[list[str], list[list[str]]]]


def missing_peers(names: list[str]) -> dict[str, str]:
    """Peers among `names` whose package this interpreter cannot import: name -> what to say."""
    out = {}
    for n in names:
        module, package = PEERS[n]
        if importlib.util.find_spec(module) is None:
            out[n] = f"not installed (`pip install {package}`): not measured"
    return out


def _youku(o: Opts, missing: dict[str, str]) -> list[Bench]:
    clients = [c for c in ("vidupd-oss", "youku-upload", "vidupd-slices", "youku-0.1.1") if c not in missing]
    return [Bench("youku", "bench_youku.py", ("--size-mib", str(o.size_mib), "--runs", str(o.runs), "--clients",
                                              ",".join(clients), "--tmp", str(o.tmp)))]


def _vod(o: Opts, missing: dict[str, str]) -> list[Bench]:
    clients = [c for c in ("vidupd", "oss2", "ossv2", "sdk") if c not in missing]
    return [Bench("vod", "bench_vod.py", ("--size-mib", str(o.size_mib), "--runs", str(o.runs), "--clients",
                                          ",".join(clients), "--tmp", str(o.tmp)))]


def _curl(o: Opts, missing: dict[str, str]) -> list[Bench]:
    return [Bench("curl", "bench_sandbox_oss.py", ("--size-mib", str(o.size_mib), "--runs", str(o.runs),
                                                   "--client", "curl", "--tmp", str(o.tmp)))]


def _daemon(o: Opts, missing: dict[str, str]) -> list[Bench]:
    size = (8 if o.quick else 256) * MIB
    return [Bench(f"daemon-{p}", "bench_small.py", ("--files", "4", "--size", str(size), "--targets", p, "--workers", "4",
                                        "--concurrency", "4", "--runs", str(o.runs), "--tmp", str(o.tmp)))
            for p in ("vod", "youku")]


def _small(o: Opts, missing: dict[str, str]) -> list[Bench]:
    return [Bench("small", "bench_small.py", ("--files", "50" if o.quick else "1000", "--size", "65536", "--targets",
                                              "youku,vod", "--runs", str(o.runs), "--tmp", str(o.tmp)))]


def _burst(o: Opts, missing: dict[str, str]) -> list[Bench]:
    return [Bench("burst", "bench_pipeline.py", ("--files", "300" if o.quick else "10000", "--runs", str(o.runs),
                                                 "--workers", "4"))]


def latency_samples(o: Opts) -> int:
    return o.latency_samples or (o.runs if o.quick else max(5, o.runs))


def _latency(o: Opts, missing: dict[str, str]) -> list[Bench]:
    size = (64 if o.quick else 4096) * MIB
    return [Bench("latency", "bench_small.py", ("--files", "1", "--size", str(size), "--targets", "vod", "--workers",
                                                "4", "--concurrency", "4", "--part-size", str(64 * MIB), "--in-place",
                                                "--runs", str(latency_samples(o)), "--tmp", str(o.tmp)))]


def _startup(o: Opts, missing: dict[str, str]) -> list[Bench]:
    return [Bench("startup", "bench_startup.py", ("--jobs", "2000" if o.quick else "100000", "--runs", str(o.runs),
                                                  "--tmp", str(o.tmp)))]


def _fleet(o: Opts, missing: dict[str, str]) -> list[Bench]:
    sizes = ("--files", "9", "--size-mib", "4", "--workers", "1") if o.quick else ()
    return [Bench("fleet", "bench_fleet.py", ("--runs", str(o.runs), *sizes, "--tmp", str(o.tmp)))]


SECTIONS = (
    Section("youku", "Youku: vidupd vs youku-upload 0.1.2 (OSS flow) and youku 0.1.1 (slice flow)",
            "One file per client per run, warm in the page cache; one-shot `vidupd upload` timed from launch to exit "
            "(start-up and the whole-file MD5 that create needs included).", _youku,
            lambda s, m, o: t.youku_rows(s.get("youku"), m)),
    Section("vod", "VOD: vidupd vs raw oss2 vs alibabacloud-oss-v2 vs voduploadsdk 1.0.2",
            "vidupd and voduploadsdk timed from launch to exit; raw oss2 and alibabacloud-oss-v2 for their OSS upload "
            "only (CreateUploadVideo is done before their clock starts; whole-process figures beside). 8 MiB parts, "
            "4 in flight for every client (voduploadsdk sends one part at a time whatever it is told).", _vod,
            lambda s, m, o: t.vod_rows(s.get("vod"), m)),
    Section("curl", "The machine's ceiling: `curl -T` into the OSS sandbox",
            "One PutObject of the same size, V1-signed by the benchmark, into the hash-only OSS server in its own "
            "process: what this machine's loopback and the sandbox's hashing allow one stream.", _curl,
            lambda s, m, o: t.curl_rows(s.get("curl"))),
    Section("daemon", "The daemon: 4 x 256 MiB per platform",
            "`vidupd run` (4 workers, 4 parts or slices in flight) on a fresh outbox, the four files renamed in at "
            "once; the four are one size, so each is hashed as a possible twin before it is sent.", _daemon,
            lambda s, m, o: t.daemon_rows({"vod": s.get("daemon-vod"), "youku": s.get("daemon-youku")})),
    Section("small", "Small files: 1,000 x 64 KiB to both platforms",
            "The daemon with its default workers (2); every file goes to both platforms; uploads/s from each "
            "platform's first queued to its last completed upload.", _small,
            lambda s, m, o: t.small_rows(s.get("small"))),
    Section("burst", "A burst of 10,000 files through the daemon",
            "Files of 4 KiB dropped (write, rename) into a watched folder, `null` provider, 4 workers, "
            "settle_seconds 1; from the first drop to the last `upload.completed`.", _burst,
            lambda s, m, o: t.burst_rows(s.get("burst"))),
    Section("latency", "From a file's last write to its upload: one 4 GiB file",
            "The file is written in the watched folder while the daemon runs (it sees it grow); a lone file has no "
            "possible twin, so VOD sends it without a hashing pass first. From its mtime (and from the writer's "
            "close, after its fsync) to its `upload.started` event, and to the sandbox's first 64 KiB; "
            f"settle_seconds is the default {SETTLE_SECONDS:g} s. "
            "Nearest-rank percentiles: with few samples p95 is the largest.", _latency,
            lambda s, m, o: t.latency_rows(s.get("latency"), SETTLE_SECONDS)),
    Section("startup", "Start-up and `vidupd status` with 100,000 finished jobs in the ledger",
            "READY=1 as systemd sees it (a NOTIFY_SOCKET of the benchmark's own); the jobs are marked done in the "
            "ledger directly, their files gone (as after an after-upload move); status run after the daemon "
            "stopped.", _startup, lambda s, m, o: t.startup_rows(s.get("startup"))),
    Section("fleet", "Fleet scaling: 1, 2 and 3 daemons on one outbox",
            "One PostgreSQL ledger (a throwaway server on loopback), VOD target, each daemon capped at "
            "`max_rate = \"30M\"` (its host's uplink), 36 x 32 MiB.", _fleet,
            lambda s, m, o: t.fleet_rows(s.get("fleet"))),
)
NAMES = [s.name for s in SECTIONS]


def run_bench(b: Bench, work: Path) -> tuple[dict[str, Any] | None, str, float]:
    """(summary or None, what went wrong, seconds) of one benchmark child."""
    out, log = work / f"{b.key}.json", work / f"{b.key}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    with open(log, "wb") as f:
        rc = subprocess.run([sys.executable, str(BENCH / b.script), *b.args, "--json", str(out)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT).returncode
    took = time.monotonic() - t0
    tail = log.read_text(errors="replace")[-1500:].strip()
    print(f"  {b.key}: exit {rc} after {took:.0f} s", flush=True)
    if rc != 0 or not out.exists():
        return None, f"exit {rc}. Its output ends:\n\n```\n{tail}\n```", took
    return json.loads(out.read_text()), "", took


def machine() -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return [f"- CPU: {model}, {os.cpu_count()} cores; memory {mem / 1024:.1f} GiB",
            f"- kernel: {platform.system()} {platform.release()}; Python {platform.python_version()}",
            f"- vidupd: commit {commit}", f"- packages: {peer_versions()}"]


def render_section(s: Section, o: Opts, benches: list[Bench], results: dict[str, Any], errors: dict[str, str],
                   took: float, missing: dict[str, str]) -> str:
    lines = [f"## {s.title}", "", s.what, ""]
    header, rows = s.render(results, missing, o)
    if rows:
        lines += [t.table(header, rows), ""]
    for key, err in errors.items():
        lines += [f"**{key}: FAILED**, {err}", ""]
    default_size = 16 if o.quick else 1024
    extra = f" --size-mib {o.size_mib}" if s.name in ("youku", "vod", "curl") and o.size_mib != default_size else ""
    if s.name == "latency" and o.latency_samples:
        extra += f" --latency-samples {o.latency_samples}"
    count = f"{latency_samples(o)} sample(s)" if s.name == "latency" else f"Medians of {o.runs} run(s)"
    lines += [f"{count}; measured in {took:.0f} s. Reproduce just this section: `.venv/bin/python "
              f"benchmarks/report.py --only {s.name} --runs {o.runs}{extra}{' --quick' if o.quick else ''}`, or the "
              "benchmark itself:", ""]
    lines += [f"    {b.command()}" for b in benches]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring and benchmarks/README.md.")
    ap.add_argument("--runs", type=int, default=3, help="runs per benchmark; medians are reported (default 3)")
    ap.add_argument("--size-mib", type=int, default=None,
                    help="file size of the client comparisons and curl (default 1024; 16 with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes everywhere: checks the script end to end in a "
                    "few minutes; the figures mean nothing")
    ap.add_argument("--only", default=",".join(NAMES), help=f"comma-separated sections (default all: {','.join(NAMES)})")
    ap.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="where files and sandboxes go (a local disk; "
                    "the full report needs about 5 GiB free)")
    ap.add_argument("--latency-samples", type=int, default=None,
                    help="4 GiB files timed by the latency section (default max(5, --runs); a p95 that is not "
                         "simply the largest needs 20 or more, about 40 s each)")
    ap.add_argument("--out", type=Path, default=BENCH / "REPORT.md", help="the report (default benchmarks/REPORT.md)")
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if not only or any(x not in NAMES for x in only):
        ap.error(f"--only: comma-separated, of {', '.join(NAMES)}")
    if args.runs < 1 or (args.latency_samples is not None and args.latency_samples < 1):
        ap.error("--runs and --latency-samples must be at least 1")
    o = Opts(args.runs, args.size_mib or (16 if args.quick else 1024), args.quick, args.tmp, args.latency_samples)
    missing = missing_peers(list(PEERS))
    started, load0 = datetime.now(timezone.utc), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="vidupd-report-", dir=args.tmp))
    parts = []
    for s in (s for s in SECTIONS if s.name in only):
        print(f"{s.name}: {s.title}", flush=True)
        benches, results, errors, t0 = s.benches(o, missing), {}, {}, time.monotonic()
        for b in benches:
            summary, err, _ = run_bench(b, work)
            if summary is not None:
                results[b.key] = summary
            else:
                errors[b.key] = err
        parts.append(render_section(s, o, benches, results, errors, time.monotonic() - t0, missing))
    ended = datetime.now(timezone.utc)
    head = ["# vidupd benchmark report", "",
            f"Measured {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC ({(ended - started).total_seconds() / 60:.0f} min) "
            f"by `{shlex.join(['.venv/bin/python', 'benchmarks/report.py', *sys.argv[1:]])}`"
            + (" (**--quick: tiny sizes, the figures mean nothing**)" if o.quick else "") + ".", "",
            *machine(), f"- load average at start {load0[0]:.2f}, at the end {os.getloadavg()[0]:.2f}; "
            "other processes on the machine are counted in each benchmark's log, not here", "",
            "Every figure below comes from this one run: the sandbox (`vidupd sandbox --hash-only`: every byte "
            "hashed, nothing stored) in its own process on 127.0.0.1, a fresh one per benchmark; files warm in the "
            "page cache; medians of the runs; CPU seconds are user + system of the client or daemon process; peak "
            "RSS is each process's own VmHWM. MB/s are 10^6 bytes per second.", ""]
    if missing:
        head += ["Peers not installed: " + ", ".join(f"`{PEERS[n][1]}`" for n in missing) + ".", ""]
    args.out.write_text("\n".join(head) + "\n" + "\n".join(parts))
    print(f"wrote {args.out} ({len(parts)} section(s)); logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

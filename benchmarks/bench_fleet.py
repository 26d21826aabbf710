#!/usr/bin/env python3
"""A fleet's aggregate throughput (issue 13): 1, 2 and 3 daemons on one outbox with one
PostgreSQL ledger, each capped by its own `max_rate` standing in for its host's uplink.
Target printed, never asserted: 3 daemons reach at least 2.7x one daemon.

    .venv/bin/python benchmarks/bench_fleet.py [--files N] [--size-mib 32] [--max-rate 30M]
        [--runs 3] [--fleets 1,2,3] [--workers 4] [--part-mib 8] [--target vod]
        [--ledger pg|postgresql://...] [--timeout 600]

The sandbox runs in its own process (`python -m vidupd sandbox --dir D --hash-only`: every
byte hashed, nothing written) and its generated `--target` (VOD by default) is used, with
`wait_ready = false` so a job ends at its commit. `--files` files of `--size-mib` MiB are
written once (each with its own random head, so none is a duplicate of another) and read
once into the page cache. The default is 3 x the largest fleet x `--workers` files, so every
daemon stays busy to the end: with fewer, the first daemons to see the files take most of
them, and that claim skew, not the uplinks, would decide the figure. Each run moves the
files into a new outbox, which `--fleets` daemons (`vidupd run`, children of this process,
separate state dirs, `poll = true`) share through a new, empty ledger (a schema per run, as
bench_pipeline.py --ledger makes them).

Per run: MB/s = the files' bytes / (last `upload.completed` - first `upload.started`, over
every daemon's event log); the daemons' CPU (utime + stime from /proc, summed, from the
drop to the last commit: start-up excluded) per GiB sent; how many files each daemon took;
and how busy the whole machine was (all CPUs, /proc/stat: near 100% means the figures are
bound by this machine's CPUs, sandbox and PostgreSQL included, not by the caps). Fleet
sizes alternate order from run to run so drifting machine load falls on all of them. Then
the medians, and the ratios 2/1 and 3/1. Every wait is bounded by `--timeout`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH.parent))

from _harness import (MIB, BenchError, SandboxProcess, add_json_option, emit_summary, machine_busy_seconds,  # noqa: E402
                      proc_cpu_seconds, vm_hwm_mib, warm, write_file)
from bench_pipeline import _PgLedgers, count_completed  # noqa: E402
from fleet import host_config  # noqa: E402
from helpers import DaemonProcess, actions  # noqa: E402

GIB = 1 << 30


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()


def one_run(n: int, files: list[Path], sandbox: SandboxProcess, ledgers: _PgLedgers, args: argparse.Namespace,
            work: Path) -> dict:
    run = Path(tempfile.mkdtemp(prefix=f"fleet{n}-", dir=work))
    outbox = run / "outbox"
    outbox.mkdir()
    target = {**sandbox.target, "part_size": args.part_mib * MIB, "wait_ready": False}
    schema, table, env = ledgers.new()
    daemons: list[DaemonProcess] = []
    try:
        for i in range(n):
            config, events = host_config(run / f"h{i}", outbox, {args.target: target}, "", lease=30,
                                         workers=args.workers, max_rate=args.max_rate, ledger_table=table)
            daemons.append(DaemonProcess(config, events, env=env).start())
        cpu_at_start = sum(proc_cpu_seconds(d.proc.pid) or 0.0 for d in daemons if d.proc is not None)
        moved, busy_at_start, t_start = time.time(), machine_busy_seconds(), time.monotonic()
        for f in files:
            os.rename(f, outbox / f.name)
        counters = [{} for _ in daemons]
        deadline = time.monotonic() + args.timeout
        while sum(count_completed(d.events, c) for d, c in zip(daemons, counters)) < len(files):
            if time.monotonic() > deadline:
                raise BenchError(f"{n} daemon(s): not every upload completed within {args.timeout:g}s")
            for d in daemons:
                if d.proc is not None and d.proc.poll() is not None:
                    raise BenchError(f"a daemon exited with {d.proc.returncode}: {d.stderr()[-2000:]}")
            time.sleep(0.2)
        busy = (machine_busy_seconds() - busy_at_start) / ((time.monotonic() - t_start) * (os.cpu_count() or 1))
        cpu = sum(proc_cpu_seconds(d.proc.pid) or 0.0 for d in daemons if d.proc is not None) - cpu_at_start
        rss = max((vm_hwm_mib(d.proc.pid) or 0.0) for d in daemons if d.proc is not None)
        for d in daemons:
            if d.stop(timeout=60) != 0:
                raise BenchError(f"a daemon's stop failed: {d.stderr()[-2000:]}")
        started = [e for d in daemons for e in actions(d.events, "upload.started")]
        completed = [e for d in daemons for e in actions(d.events, "upload.completed")]
        per_daemon = [len(actions(d.events, "upload.completed")) for d in daemons]
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(timeout=10)
        for f in files:  # back for the next run
            if (outbox / f.name).exists():
                os.rename(outbox / f.name, f)
        ledgers.drop(schema)
        shutil.rmtree(run, ignore_errors=True)
    if len(completed) != len(files) or len({e["file.path"] for e in completed}) != len(files):
        raise BenchError(f"{len(completed)} completions for {len(files)} files: some file went twice")
    first, last = min(map(_stamp, started)), max(map(_stamp, completed))
    sent = sum(f.stat().st_size for f in files)
    return {"daemons": n, "mb_s": sent / (last - first) / 1e6, "seconds": last - first,
            "from_drop_s": last - moved, "cpu_s": cpu, "cpu_s_per_gib": cpu / (sent / GIB), "per_daemon": per_daemon,
            "machine_busy": busy, "peak_rss_mib": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=None,
                    help="files per run (default: 3 x the largest fleet x --workers)")
    ap.add_argument("--size-mib", type=int, default=32, help="MiB per file (default 32)")
    ap.add_argument("--max-rate", default="30M", help="each daemon's max_rate: its host's uplink (default 30M)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fleets", default="1,2,3", help="fleet sizes to measure, comma-separated")
    ap.add_argument("--workers", type=int, default=4, help="each daemon's workers")
    ap.add_argument("--part-mib", type=int, default=8, help="the target's part_size in MiB")
    ap.add_argument("--target", default="vod", help="the sandbox target to upload to (vod or youku)")
    ap.add_argument("--ledger", default="pg", help="pg (a throwaway server, tests/pg_server.py) or a postgresql:// "
                    "URL (a new schema per run, dropped after)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    ap.add_argument("--tmp", type=Path, default=None, help="where the files and runs go (default: the system's)")
    add_json_option(ap)
    args = ap.parse_args()
    fleets = [int(x) for x in args.fleets.split(",")]
    busy = 3 * max(fleets) * args.workers
    if args.files is None:
        args.files = busy
    elif args.files < busy:
        print(f"note: {args.files} files < 3 x {max(fleets)} daemons x {args.workers} workers: the first daemons to "
              "see them may take most of them (files per daemon below)", file=sys.stderr)
    ledgers = _PgLedgers(args.ledger)  # first: without a server there is nothing to clean up
    work = Path(tempfile.mkdtemp(prefix="vidupd-bench-fleet-", dir=args.tmp))
    sandbox = None
    try:
        sandbox = SandboxProcess(work / "sandbox", 60, args.target)
        stage = work / "files"
        stage.mkdir()
        files = []
        for i in range(args.files):
            path = stage / f"clip{i:03d}.mp4"
            write_file(path, args.size_mib * MIB, os.urandom(1 << 16))
            warm(path)
            files.append(path)
        results: dict[int, list[dict]] = {n: [] for n in fleets}
        for r in range(args.runs):
            order = fleets[r % len(fleets):] + fleets[:r % len(fleets)]
            for n in order:
                res = one_run(n, files, sandbox, ledgers, args, work)
                results[n].append(res)
                print(f"run {r + 1}, {n} daemon(s): {res['mb_s']:.1f} MB/s ({res['seconds']:.1f} s first byte to "
                      f"last commit, {res['from_drop_s']:.1f} s from the drop); daemons' CPU {res['cpu_s']:.1f} s = "
                      f"{res['cpu_s_per_gib']:.2f} CPU-s/GiB; completions per daemon {res['per_daemon']}; highest daemon "
                      f"peak RSS {res['peak_rss_mib']:.0f} MiB; machine "
                      f"{100 * res['machine_busy']:.0f}% busy", flush=True)
        med = {n: {k: statistics.median(x[k] for x in rs) for k in ("mb_s", "cpu_s_per_gib", "peak_rss_mib")} for n, rs in results.items()}
        summary = {"files": args.files, "size_mib": args.size_mib, "max_rate": args.max_rate, "runs": args.runs,
                   "cpus": os.cpu_count(), "median": med, "per_run": results}
        for n in fleets:
            print(f"median, {n} daemon(s): {med[n]['mb_s']:.1f} MB/s, {med[n]['cpu_s_per_gib']:.2f} CPU-s/GiB")
        if 1 in med:
            for n in (2, 3):
                if n in med:
                    ratio = med[n]["mb_s"] / med[1]["mb_s"]
                    summary[f"ratio_{n}_1"] = ratio
                    target = "" if n != 3 else f" (target >= 2.7: {'PASS' if ratio >= 2.7 else 'MISS'})"
                    print(f"{n} daemons / 1 daemon: {ratio:.2f}x{target}")
        emit_summary(summary, args.json)
    except BenchError as e:
        print(f"bench_fleet: {e}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        if sandbox is not None:
            sandbox.stop()
        ledgers.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Start-up and `vidupd status` on a ledger that holds many finished jobs (issue 14): a daemon
that has run for a year must start as fast as a new one, and status must not list the past.

    .venv/bin/python benchmarks/bench_startup.py [--jobs 100000] [--runs 3] [--tmp DIR] [--json FILE]

A fresh SQLite ledger gets --jobs jobs through `Ledger.offer_many` (as the watcher would queue
them), which are then marked done in one SQL transaction: state done, a remote id, an MD5,
committed. (Uploading 100,000 files through the daemon would take most of an hour and measure
the uploads, not the start-up.) The files themselves are gone from the outbox, as after an
after-upload move. Per run, `vidupd run -c CFG` (the `null` target, one watch on the empty
outbox) starts with NOTIFY_SOCKET pointing at a datagram socket of this process, as systemd
would: the time from the launch to READY=1 on that socket (sd_notify: the ledger recovered,
the watches up), and to the `daemon.started` event; the daemon's CPU seconds until READY and
its peak RSS (VmHWM). Then SIGTERM, and `vidupd status -c CFG` on the same ledger, timed as a
child (wall, CPU and peak RSS from _harness.run_child). Medians over --runs. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH.parent))

from _harness import (ROOT, BenchError, add_json_option, emit_summary, proc_cpu_seconds, require_success,  # noqa: E402
                      run_child, vm_hwm_mib)
from test_systemd import NotifySocket  # noqa: E402

from vidupd.core.model import FileIdentity, Metadata  # noqa: E402
from vidupd.ledger import Intent, Ledger  # noqa: E402


def fill(state: Path, outbox: Path, n: int) -> float:
    """n finished jobs for target `null` from watch `outbox`; returns the seconds it took."""
    t0 = time.monotonic()
    ledger = Ledger(state)
    batch: list[Intent] = []
    for i in range(n):
        batch.append(Intent(outbox / f"clip{i:07d}.mp4", str(outbox), (("null", "video"),),
                            FileIdentity(1, i + 1, 1_000_000 + (i * 7919) % 100_000_000, 1_700_000_000_000_000_000 + i),
                            Metadata(title=f"clip{i:07d}")))
        if len(batch) == 10_000:
            ledger.offer_many(batch)
            batch = []
    if batch:
        ledger.offer_many(batch)
    ledger.close()
    with sqlite3.connect(state / "ledger.sqlite3") as db:  # done as the pool would leave them, in one go
        db.execute("UPDATE jobs SET state = 'done', attempts = 1, remote_id = 'null-' || id, remote_kind = 'video', "
                   "md5 = lower(hex(randomblob(16))), bytes_done = size, committed_at = updated")
        got = db.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0]
    if got != n:
        raise BenchError(f"the ledger holds {got} finished jobs, not {n}")
    return time.monotonic() - t0


def one_run(cfg: Path, events: Path, work: Path, run: int, timeout: float) -> dict:
    (work / f"run{run}").mkdir()
    notify = NotifySocket(work / f"run{run}")  # a fresh socket path per run
    err = open(work / f"run{run}-daemon.err", "wb")
    try:
        pos = events.stat().st_size if events.exists() else 0
        t0, wall0 = time.monotonic(), time.time()
        proc = subprocess.Popen([sys.executable, "-m", "vidupd", "run", "-c", str(cfg)], cwd=ROOT,
                                env={**os.environ, "NOTIFY_SOCKET": str(notify.path)}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = t0 + timeout
            while not notify.with_key("READY"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"no READY=1 within {timeout:g}s (exit {proc.poll()}): "
                                     f"{(work / f'run{run}-daemon.err').read_text()[-2000:]}")
                time.sleep(0.005)
            ready = notify.with_key("READY")[0][0] - t0
            cpu, rss = proc_cpu_seconds(proc.pid), vm_hwm_mib(proc.pid)
            started = None
            for _ in range(200):  # the event is written just before READY; allow for a slow flush
                with open(events, "rb") as f:
                    f.seek(pos)
                    for line in f.read().splitlines():
                        e = json.loads(line)
                        if e.get("event.action") == "daemon.started":
                            started = datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")).timestamp() - wall0
                if started is not None:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
        if rc != 0:
            raise BenchError(f"the daemon exited with {rc} on SIGTERM")
    finally:
        err.close()
        notify.close()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "VIDUPD_CONFIG")}
    status = run_child([sys.executable, "-m", "vidupd", "status", "-c", str(cfg)], env, work, f"run{run}-status",
                       timeout, [])
    require_success(status, "vidupd status", timeout)
    return {"ready_s": ready, "started_event_s": started, "daemon_cpu_to_ready_s": cpu, "daemon_rss_mib": rss,
            "status_wall_s": status["wall"], "status_cpu_s": status["cpu"], "status_rss_mib": status["rss_mib"],
            "status_lines": len(status["stdout"].splitlines())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="finished jobs in the ledger (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="daemon starts and status calls (default 3)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the ledger goes (default: the system's temp)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed to READY and for status")
    add_json_option(ap)
    args = ap.parse_args()
    if args.jobs < 1 or args.runs < 1:
        ap.error("--jobs and --runs must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="vidupd-bench-startup-", dir=args.tmp))
    try:
        outbox, state, events = work / "outbox", work / "state", work / "events.jsonl"
        outbox.mkdir()
        cfg = work / "vidupd.toml"
        cfg.write_text(f'state_dir = "{state}"\n[log]\nevents = "{events}"\n[targets.null]\nprovider = "null"\n'
                       f'wait_ready = false\n[[watch]]\npath = "{outbox}"\ntargets = ["null"]\n')
        filled = fill(state, outbox, args.jobs)
        print(f"# {args.jobs} finished jobs written in {filled:.1f} s; ledger "
              f"{(state / 'ledger.sqlite3').stat().st_size / (1 << 20):.0f} MiB; {os.cpu_count()} CPUs; load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        results = []
        for run in range(1, args.runs + 1):
            r = one_run(cfg, events, work, run, args.timeout)
            results.append(r)
            started = "n/a" if r["started_event_s"] is None else f"{r['started_event_s']:.3f} s"
            print(f"run {run}: READY=1 after {r['ready_s']:.3f} s (daemon.started event {started}); daemon CPU "
                  f"{r['daemon_cpu_to_ready_s']:.2f} s, peak RSS {r['daemon_rss_mib']:.0f} MiB; status "
                  f"{r['status_wall_s']:.3f} s, {r['status_cpu_s']:.2f} CPU-s, peak RSS {r['status_rss_mib']:.0f} MiB, "
                  f"{r['status_lines']} lines", flush=True)
        keys = [k for k in results[0] if all(r[k] is not None for r in results)]
        med = {k: statistics.median(r[k] for r in results) for k in keys}
        print(f"median: READY {med['ready_s']:.3f} s; status {med['status_wall_s']:.3f} s")
        emit_summary({"jobs": args.jobs, "runs": args.runs, "fill_s": filled, "median": med, "per_run": results},
                     args.json)
        return 0
    except BenchError as e:
        print(f"bench_startup: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

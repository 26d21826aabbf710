#!/usr/bin/env python3
"""Small files through the real daemon to both sandbox platforms (issue 8, point 10).

    .venv/bin/python benchmarks/bench_small.py [--files 1000] [--size 65536] [--runs 3] \
        [--targets youku,vod] [--workers N] [--concurrency N] [--part-size BYTES] \
        [--code DIR] [--timeout 900] [--tmp DIR]

Per run: a fresh sandbox in its own process (`python -m vidupd sandbox --dir D --hash-only`,
benchmarks/_harness.py) and a fresh `python -m vidupd run -c CFG` as a subprocess. CFG holds
only what is not a default: state_dir, the event log, the sandbox's targets (endpoints and
credentials as the sandbox wrote them; its non-default `ready_timeout` is dropped) and one
watch on a fresh outbox sending every file to every chosen target. So the daemon runs with its
default workers (2), settle_seconds (10), wait_ready (true) and poll timings, unless told:
`--workers`, `--concurrency` (parts in flight per upload: VOD's part_concurrency and Youku's
slice_concurrency), `--part-size` (VOD's part_size). `--code DIR` runs the daemon from
another vidupd tree (cwd and PYTHONPATH there; e.g. a checkout of the old code, to measure
"before" with this same script); the sandbox always runs from this tree.

--files files of --size bytes (each starts with 4 KiB of fresh random bytes, so every one is
new content; written and fsynced in a staging folder before the clock starts) are renamed into
the outbox in one burst. The event log is followed: per target, uploads/s is counted from the
first `upload.queued` to the last `upload.completed` of that target (event timestamps, so the
settle wait before queueing is not counted). The daemon's and the sandbox's CPU seconds
(/proc/PID/stat) are sampled when the first file is queued and when the last upload completed,
and divided by the uploads completed in between. The run then waits for every `media.ready`
(the daemon polls each committed upload once), checks the sandbox's uploads.jsonl (exactly one
accepted object per file and target) and stops the daemon with SIGTERM. An `upload.failed` or
`media.failed`, a duplicate, or no result within --timeout stops the benchmark with exit 1.

Settle to first byte: from the first `upload.queued` (emitted when the file settled) to the
moment the sandbox has received 64 KiB on one connection, seen by polling `ss -tinp` (its
per-socket bytes_received) every few ms; nothing is asked of the daemon, so it measures any
version alike (with several files, the first file's first byte).

`--in-place` (the latency from a file's last write to its upload): the files are written
straight into the outbox after the daemon has started (as a camera or a copy would: the daemon
sees them grow), not renamed in; per file, from its last write (its mtime) and from the
writer's close (after its fsync: the first moment the daemon could know the file is whole) to
its `upload.started` event (settle_seconds included: that wait is what protects a file still
being written), and to the sandbox's first 64 KiB of it (the first file only).

Prints per run and medians of --runs; asserts nothing. Target (issue 8): at least 25 uploads/s
per platform on the 2-core CI machine with the default workers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from _harness import (ROOT, BenchError, SandboxProcess, add_json_option, emit_summary, machine_busy_seconds,
                      proc_cpu_seconds, write_file)

TARGET_RATE = 25.0  # uploads/s per platform (issue 8), for files up to SMALL bytes
SMALL = 1 << 20
PROVIDERS = {"youku": "youku", "vod": "aliyun-vod"}
DROPPED = {"ready_timeout"}  # sandbox-written target settings that are not the daemon's defaults
CONCURRENCY_KEY = {"youku": "slice_concurrency", "vod": "part_concurrency"}
FIRST_BYTES = 64 * 1024  # received on one connection: the body of a part or slice is flowing


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them are valid TOML this way


def daemon_config(box: SandboxProcess, root: Path, targets: list[str], workers: int | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """The daemon's config: paths, endpoints and credentials (and `workers` and the targets'
    `overrides` if given); everything else default."""
    top = [f"workers = {workers}"] if workers else []
    lines = [f"state_dir = {toml_value(str(root / 'state'))}", *top, "", "[log]",
             f"events = {toml_value(str(root / 'events.jsonl'))}", ""]
    for name in targets:
        section = box.config["targets"].get(name)
        if section is None:
            raise BenchError(f"{box.config_path} has no [targets.{name}]")
        lines.append(f"[targets.{name}]")
        section = {**{k: v for k, v in section.items() if k not in DROPPED}, **(overrides or {}).get(name, {})}
        lines += [f"{k} = {toml_value(v)}" for k, v in section.items()]
        lines.append("")
    lines += ["[[watch]]", f"path = {toml_value(str(root / 'outbox'))}", f"targets = {toml_value(targets)}", ""]
    path = root / "vidupd.toml"
    path.write_text("\n".join(lines))
    return path


class EventFollower:
    """Reads the daemon's event log as it grows (whole lines only)."""

    def __init__(self, path: Path):
        self.path = path
        self._pos = 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1
        self._pos += cut
        return [json.loads(line) for line in data[:cut].splitlines() if line.strip()]


def peak_rss(pid: int) -> float | None:
    """The process's peak resident set so far (VmHWM), in MiB; None when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class FirstByteWatch:
    """Polls `ss -tinp` until a socket of process `pid` has received FIRST_BYTES; `at` is then
    the wall-clock time (like the events' timestamps) of the poll that saw it."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid, self.interval = pid, interval
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _received(self) -> int:
        out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                             timeout=10).stdout
        best, mine = 0, False
        for line in out.splitlines():
            if not line.startswith((" ", "\t")):  # a socket's first line names its process
                mine = f"pid={self.pid}," in line
            elif mine:
                for field in line.split():
                    if field.startswith("bytes_received:"):
                        best = max(best, int(field.split(":", 1)[1]))
        return best

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._received() >= FIRST_BYTES:
                self.at = time.time()
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()


def one_run(args: argparse.Namespace, targets: list[str], run_dir: Path) -> dict[str, Any]:
    box = SandboxProcess(run_dir / "sandbox", start_timeout=30, target=targets[0])
    daemon: subprocess.Popen | None = None
    watch: FirstByteWatch | None = None
    try:
        outbox, staging = run_dir / "outbox", run_dir / "staging"
        outbox.mkdir()
        staging.mkdir()
        overrides: dict[str, dict[str, Any]] = {t: {} for t in targets}
        for t in targets:
            if args.concurrency:
                overrides[t][CONCURRENCY_KEY[t]] = args.concurrency
            if args.part_size and t == "vod":
                overrides[t]["part_size"] = args.part_size
        cfg = daemon_config(box, run_dir, targets, args.workers, overrides)
        names = [f"clip{i:05d}.mp4" for i in range(args.files)]
        pattern = os.urandom(64 * 1024 + 7)
        for name in names if not args.in_place else ():
            write_file(staging / name, args.size, pattern)
        follower = EventFollower(run_dir / "events.jsonl")
        err = open(run_dir / "daemon.err", "wb")
        code = args.code or ROOT
        env = {**os.environ, "PYTHONPATH": str(code)}
        daemon = subprocess.Popen([sys.executable, "-m", "vidupd", "run", "-c", str(cfg)], cwd=code, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        seen: list[dict[str, Any]] = []
        while not any(e.get("event.action") == "daemon.started" for e in seen):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the daemon did not start: {(run_dir / 'daemon.err').read_text()[-2000:]}")
            time.sleep(0.05)
            seen += follower.new()
        watch = FirstByteWatch(box.proc.pid)
        dropped_at = time.time()  # wall clock, like the events' timestamps
        last_write: dict[str, float] = {}
        closed: dict[str, float] = {}  # when the writer was done: after its fsync and close
        for name in names:  # one burst, the way careful writers deliver: rename into place
            if args.in_place:  # or written where the daemon sees it grow; its mtime is the last write
                write_file(outbox / name, args.size, pattern)
                closed[str(outbox / name)] = time.time()
                last_write[str(outbox / name)] = (outbox / name).stat().st_mtime
            else:
                os.rename(staging / name, outbox / name)
        started: dict[str, float] = {}
        queued: dict[str, float] = {}
        completed: dict[str, list[float]] = {t: [] for t in targets}
        ready = Counter()
        cpu_at_first = box_cpu_at_first = busy_at_first = None
        cpu_at_last = box_cpu_at_last = busy_at_last = None
        want = args.files * len(targets)
        deadline = time.monotonic() + args.timeout
        while sum(ready.values()) < want:
            if daemon.poll() is not None:
                raise BenchError(f"the daemon exited with {daemon.returncode}: "
                                 f"{(run_dir / 'daemon.err').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                done = {t: len(v) for t, v in completed.items()}
                raise BenchError(f"not finished within {args.timeout:g}s: completed {done}, ready {dict(ready)}")
            batch = follower.new()
            for e in batch:
                action, target = e.get("event.action"), e.get("vidupd.target")
                if action in ("upload.failed", "media.failed", "upload.duplicate_remote_id", "upload.skipped"):
                    raise BenchError(f"{action}: {e.get('message')}")
                if action == "upload.queued" and target not in queued:
                    queued[target] = stamp(e)
                    if cpu_at_first is None:
                        cpu_at_first, box_cpu_at_first = proc_cpu_seconds(daemon.pid), box.cpu()
                        busy_at_first = machine_busy_seconds()
                elif action == "upload.completed":
                    completed[target].append(stamp(e))
                    if sum(map(len, completed.values())) == want:
                        cpu_at_last, box_cpu_at_last = proc_cpu_seconds(daemon.pid), box.cpu()
                        busy_at_last = machine_busy_seconds()
                elif action == "media.ready":
                    ready[target] += 1
                elif action == "upload.started":
                    started.setdefault(e.get("file.path", ""), stamp(e))
            if not batch:
                time.sleep(0.02)
        peak_rss_mib = peak_rss(daemon.pid)
        watch.stop()
        first_byte = None if watch.at is None else watch.at - min(queued.values())
        entries = [e for e in box.entries() if e.get("kind") == "video"]
        for t in targets:  # exactly once: one accepted object per file, no more, no fewer
            titles = Counter(e.get("title") for e in entries if e.get("provider") == PROVIDERS[t])
            if sorted(titles) != sorted(Path(n).stem for n in names) or set(titles.values()) != {1}:
                raise BenchError(f"{t}: the sandbox accepted {sum(titles.values())} videos for "
                                 f"{len(titles)} titles; expected exactly one for each of {args.files} files")
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=90)
        daemon = None
        if rc != 0:
            raise BenchError(f"the daemon exited with {rc} on SIGTERM")
        assert cpu_at_first is not None and cpu_at_last is not None
        window = max(max(v) for v in completed.values()) - min(queued.values())
        rates = {t: args.files / (max(completed[t]) - queued[t]) for t in targets}
        box_cpu = (box_cpu_at_last - box_cpu_at_first) if box_cpu_at_first is not None and box_cpu_at_last else None
        daemon_cpu = cpu_at_last - cpu_at_first
        other = (busy_at_last - busy_at_first) - daemon_cpu - (box_cpu or 0.0)
        gib = args.files * args.size * len(targets) / (1 << 30)
        to_start = [started[p] - t for p, t in last_write.items() if p in started]
        close_to_start = [started[p] - t for p, t in closed.items() if p in started]
        to_first_byte = None if watch.at is None or not last_write else watch.at - min(last_write.values())
        return {"write_to_start": to_start, "close_to_start": close_to_start, "write_to_first_byte": to_first_byte, "rates": rates, "window": window, "cpu_per_upload": daemon_cpu / want,
                "cpu_per_gib": daemon_cpu / gib, "peak_rss_mib": peak_rss_mib,
                "from_drop": max(max(v) for v in completed.values()) - dropped_at, "first_byte": first_byte,
                "box_cpu_per_upload": None if box_cpu is None else box_cpu / want,
                "other_cpu_share": max(0.0, other) / window / (os.cpu_count() or 1)}
    finally:
        if watch is not None:
            watch.stop()
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=15)
        box.stop()


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="files per run (each goes to every target)")
    ap.add_argument("--size", type=int, default=64 * 1024, help="bytes per file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="the daemon's workers (default: its default)")
    ap.add_argument("--targets", default="youku,vod", help="comma-separated sandbox targets")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="parts/slices in flight per upload (part_concurrency, slice_concurrency)")
    ap.add_argument("--part-size", type=int, default=None, help="VOD part_size in bytes")
    ap.add_argument("--code", type=Path, default=None, help="the vidupd tree the daemon runs (default: this one)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a run may take after the drop")
    ap.add_argument("--tmp", type=Path, default=None, help="where run folders go (default: the system's)")
    ap.add_argument("--in-place", action="store_true",
                    help="write the files in the outbox while the daemon watches (not renamed in); report the time "
                         "from each file's last write to its upload.started")
    add_json_option(ap)
    args = ap.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not 1 <= args.files <= 100_000 or not 4096 <= args.size <= 8 << 30 or not 1 <= args.runs <= 20:
        ap.error("--files 1..100000, --size 4096..8 GiB, --runs 1..20")
    unknown = [t for t in targets if t not in PROVIDERS]
    if unknown or not targets:
        ap.error(f"--targets: choose from {', '.join(PROVIDERS)}")
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"{os.cpu_count()} CPUs; {args.files} files x {args.size} B to {', '.join(targets)}", flush=True)
    results = []
    try:
        for n in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="vidupd-small-", dir=args.tmp) as tmp:
                r = one_run(args, targets, Path(tmp))
            results.append(r)
            rates = ", ".join(f"{t} {v:.1f}/s" for t, v in r["rates"].items())
            box = f"{1000 * r['box_cpu_per_upload']:.1f}" if r["box_cpu_per_upload"] is not None else "n/a"
            print(f"run {n + 1}: {rates}; all {len(targets) * args.files} uploads in {r['window']:.1f} s; "
                  f"daemon CPU {1000 * r['cpu_per_upload']:.1f} ms/upload; sandbox CPU {box} ms/upload; "
                  f"other processes {100 * r['other_cpu_share']:.0f}% of the machine; "
                  f"{r['from_drop']:.1f} s from drop to last completed; daemon CPU {r['cpu_per_gib']:.2f} s/GiB; "
                  f"daemon peak RSS {_mib(r['peak_rss_mib'])}; settle to first byte {_secs(r['first_byte'])}"
                  + (f"; last write to upload.started {', '.join(f'{x:.3f} s' for x in r['write_to_start'])} (from "
                     f"the writer's close {', '.join(f'{x:.3f} s' for x in r['close_to_start'])}), to "
                     f"first byte {_secs(r['write_to_first_byte'])}" if args.in_place else ""), flush=True)
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    med = {t: statistics.median(r["rates"][t] for r in results) for t in targets}
    cpu = statistics.median(r["cpu_per_upload"] for r in results)
    boxes = [r["box_cpu_per_upload"] for r in results if r["box_cpu_per_upload"] is not None]
    rss = [r["peak_rss_mib"] for r in results if r["peak_rss_mib"] is not None]
    fb = [r["first_byte"] for r in results if r["first_byte"] is not None]
    summary = {"files": args.files, "size": args.size, "runs": args.runs, "targets": targets, "median_rates": med,
               "median_from_drop_s": statistics.median(r["from_drop"] for r in results),
               "median_cpu_s_per_gib": statistics.median(r["cpu_per_gib"] for r in results),
               "max_peak_rss_mib": max(rss) if rss else None,
               "median_peak_rss_mib": statistics.median(rss) if rss else None,
               "median_first_byte_s": statistics.median(fb) if fb else None,
               "median_cpu_s_per_upload": cpu,
               "median_sandbox_cpu_s_per_upload": statistics.median(boxes) if boxes else None,
               "median_window_s": statistics.median(r["window"] for r in results),
               "load_after": os.getloadavg()}
    if args.in_place:
        summary["write_to_start_s"] = [x for r in results for x in r["write_to_start"]]
        summary["close_to_start_s"] = [x for r in results for x in r["close_to_start"]]
        summary["write_to_first_byte_s"] = [r["write_to_first_byte"] for r in results
                                            if r["write_to_first_byte"] is not None]
    emit_summary(summary, args.json)
    for t in targets:
        verdict = "PASS" if med[t] >= TARGET_RATE else "MISS"
        small = f" (target {TARGET_RATE:g}: {verdict})" if args.size <= SMALL else ""  # issue 8's target is for small files
        print(f"median {t}: {med[t]:.1f} uploads/s{small}")
    print(f"median daemon CPU: {1000 * cpu:.1f} ms per upload")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""vidupd's Youku upload vs the public `youku` 0.1.1 client, on one sandbox, in one run.

    .venv/bin/python benchmarks/bench_youku.py [--size-mib 1024] [--runs 3]

The sandbox runs in its own process (`python -m vidupd sandbox --dir D --hash-only`), shared
by both clients; its generated D/vidupd.toml is used unchanged (state_dir, youku target).
Per run, two fresh files of --size-mib MiB are written under --tmp (a random prefix each,
so neither can be an instant upload), fsynced, and read once each before any clock starts
(both warm in the page cache). Then, in alternating order:

- vidupd:  `python -m vidupd upload -c D/vidupd.toml --target youku FILE --no-progress`
  (the one-shot returns once the upload is committed: Youku's media processing is not
  counted; the whole-file MD5 pass is).
- public:  a tiny driver that points youku_upload's host constants at the sandbox (the
  same redirect the interop tests use; the client's logic is unchanged) and calls
  YoukuUpload(client_id, access_token, FILE).upload(...).

Each child is timed with time.monotonic (interpreter start-up included) and reaped with
os.wait4: CPU seconds (user + sys) and peak RSS (ru_maxrss) are the child's own. The
sandbox's CPU seconds during each upload come from /proc/PID/stat, and "other processes +
kernel threads" (everything else the machine ran meanwhile) from /proc/stat, so a busy
machine shows up in the output. For vidupd, its event log splits the wall time into
start-up + whole-file MD5 pass, and slices + commit. After every upload the sandbox's
D/uploads.jsonl must hold one new entry with the file's MD5, size and the video_id the
client reported; anything else aborts the benchmark.

Targets (issue 3): vidupd >= 2x faster in wall time than the public client, <= 4 CPU-s/GiB,
peak RSS < 120 MiB. They are printed as PASS/MISS, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _harness import (MIB, BenchError, SandboxProcess, machine_busy_seconds, require_success, run_child,  # noqa: E402
                      vidupd_video_id, warm, write_file)


class Sandbox(SandboxProcess):
    """The sandbox process and its `youku` target."""

    def __init__(self, directory: Path, start_timeout: float):
        super().__init__(directory, start_timeout, "youku")
        self.youku = self.target

GIB = 1 << 30
PATTERN_BYTES = 16 * MIB + 4093  # random filler, repeated; its length is not a multiple of a slice

# The public client, pointed at the sandbox exactly as tests/test_sandbox_youku.py does it:
# youku_upload calls through its module attributes `requests` and `socket`, so those are
# replaced by thin redirects; `sleep` is wrapped only to count the client's own waits.
PUBLIC_DRIVER = r"""
import json, os, socket, sys, time
import requests
from youku import youku_upload

api_base = os.environ["BENCH_YOUKU_API"]

class _Requests:
    def __getattr__(self, name):
        call = getattr(requests, name)
        def redirected(url, *args, **kwargs):
            return call(url.replace("https://api.youku.com", api_base), *args, **kwargs)
        return redirected

class _Socket:
    def gethostbyname(self, host_port):
        host, _, port = host_port.partition(":")
        ip = socket.gethostbyname(host)
        return f"{ip}:{port}" if port else ip

slept = [0.0, 0]
def _sleep(seconds):
    slept[0] += seconds
    slept[1] += 1
    time.sleep(seconds)

youku_upload.requests = _Requests()
youku_upload.socket = _Socket()
youku_upload.sleep = _sleep
client = youku_upload.YoukuUpload(os.environ["BENCH_YOUKU_CLIENT_ID"], os.environ["BENCH_YOUKU_ACCESS_TOKEN"],
                                  sys.argv[1])
video_id = client.upload({"title": os.path.basename(sys.argv[1]), "tags": "bench,vidupd"})
print(json.dumps({"video_id": video_id, "slept_seconds": slept[0], "sleeps": slept[1]}), flush=True)
"""



def count_events(events: Path, start: int) -> tuple[dict[str, int], dict[str, float], int]:
    """Counts and last times (epoch s) of each event.action in the vidupd event log since byte `start`."""
    counts: dict[str, int] = {}
    times: dict[str, float] = {}
    try:
        with open(events, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return counts, times, start
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        action = event.get("event.action", "?")
        counts[action] = counts.get(action, 0) + 1
        try:
            stamp = datetime.strptime(event["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
            times[action] = stamp.replace(tzinfo=timezone.utc).timestamp()
        except (KeyError, TypeError, ValueError):
            pass
    return counts, times, start + len(data)


def verify(box: Sandbox, before: int, client: str, path: Path, md5: str, size: int, video_id: str) -> None:
    """The sandbox must have recorded exactly this upload: one new entry, right MD5, size and id."""
    new = box.entries()[before:]
    if len(new) != 1:
        raise BenchError(f"{client}: expected 1 new entry in {box.journal}, found {len(new)}: {new}")
    e = new[0]
    if (e.get("md5"), e.get("size"), e.get("remote_id")) != (md5, size, video_id):
        raise BenchError(f"{client}: {path.name}: uploads.jsonl says md5={e.get('md5')} size={e.get('size')} "
                         f"id={e.get('remote_id')}, expected md5={md5} size={size} id={video_id}")
    if e.get("duplicate_id"):
        raise BenchError(f"{client}: the sandbox handed out a duplicate id: {e}")


def one_upload(client: str, box: Sandbox, path: Path, md5: str, size: int, work: Path, run: int, limit: float,
               children: list[subprocess.Popen], events_pos: list[int]) -> dict[str, Any]:
    before = len(box.entries())
    env = dict(os.environ)
    env.pop("VIDUPD_CONFIG", None)
    if client == "vidupd":
        argv = [sys.executable, "-m", "vidupd", "upload", "-c", str(box.config_path), "--target", "youku",
                str(path), "--no-progress"]
    else:
        argv = [sys.executable, "-c", PUBLIC_DRIVER, str(path)]
        env.update(BENCH_YOUKU_API=box.youku["api_base"], BENCH_YOUKU_CLIENT_ID=box.youku["client_id"],
                   BENCH_YOUKU_ACCESS_TOKEN=box.youku["access_token"])
    sb0, busy0, launched = box.cpu(), machine_busy_seconds(), time.time()
    r = run_child(argv, env, work, f"run{run}-{client}", limit, children)
    require_success(r, f"run{run}-{client}", limit)
    sb1, busy1 = box.cpu(), machine_busy_seconds()
    r["sandbox_cpu"] = None if sb0 is None or sb1 is None else sb1 - sb0
    # whatever else ran on the machine meanwhile (other users' jobs, kernel threads), in CPU seconds
    r["other_cpu"] = max(0.0, busy1 - busy0 - r["cpu"] - (r["sandbox_cpu"] or 0.0))
    r["extra"] = ""
    if client == "vidupd":
        video_id = vidupd_video_id(r["stdout"], path)
        counts, times, events_pos[0] = count_events(Path(box.config["log"]["events"]), events_pos[0])
        notable = {k: v for k, v in counts.items() if k in ("upload.waiting", "upload.retrying", "upload.restarted",
                                                            "upload.instant", "auth.refreshed")}
        if counts.get("upload.instant"):
            raise BenchError("vidupd: the sandbox treated the file as an instant upload; the figures are void")
        r["extra"] = " ".join(f"{k}={v}" for k, v in sorted(notable.items()))
        if "upload.started" in times and "upload.completed" in times:  # the event clock has ms resolution
            r["extra"] = (f"phases: start-up + whole-file MD5 {times['upload.started'] - launched:.2f} s, "
                          f"slices + commit {times['upload.completed'] - times['upload.started']:.2f} s "
                          + r["extra"]).strip()
    else:
        try:
            result = json.loads(r["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"public: unreadable driver output: {r['stdout']!r} {r['stderr'][-2000:]}") from None
        video_id = result["video_id"]
        if result["sleeps"]:
            r["extra"] = f"client slept {result['slept_seconds']:g}s in {result['sleeps']} wait(s) for check status 1"
    verify(box, before, client, path, md5, size, video_id)
    r["video_id"] = video_id
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring for what is measured and how.")
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each uploaded file (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="runs; each uploads one file with each client (default 3)")
    ap.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="where files and the sandbox live (local disk)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per upload (default 900)")
    args = ap.parse_args()
    if args.size_mib < 1 or args.runs < 1:
        ap.error("--size-mib and --runs must be at least 1")
    size = args.size_mib * MIB
    gib = size / GIB
    free = shutil.disk_usage(args.tmp).free
    if free < 2 * size + GIB:
        raise SystemExit(f"{args.tmp}: {free / GIB:.1f} GiB free; need {(2 * size + GIB) / GIB:.1f} GiB")

    work = Path(tempfile.mkdtemp(prefix="bench-youku-", dir=args.tmp))
    children: list[subprocess.Popen] = []
    box: Sandbox | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    try:
        (work / "sandbox").mkdir()
        box = Sandbox(work / "sandbox", start_timeout=60)
        print(f"# sandbox pid {box.proc.pid} (hash-only) at {box.youku['api_base']}; config {box.config_path} "
              f"(targets {', '.join(box.config['targets'])}; only youku is used)")
        print(f"# {args.runs} run(s) x 2 uploads of {args.size_mib} MiB; files under {work}; "
              f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}", flush=True)
        pattern = os.urandom(PATTERN_BYTES)
        events_pos = [0]
        _, _, events_pos[0] = count_events(Path(box.config["log"]["events"]), 0)
        results: dict[str, list[dict[str, Any]]] = {"vidupd": [], "public": []}
        for run in range(1, args.runs + 1):
            files = {c: work / f"run{run}-{c}.mp4" for c in ("vidupd", "public")}
            md5s = {c: write_file(p, size, pattern)[0] for c, p in files.items()}
            warmed = {c: warm(p) for c, p in files.items()}
            order = ["vidupd", "public"] if run % 2 else ["public", "vidupd"]
            load = os.getloadavg()[0]
            for client in order:
                r = one_upload(client, box, files[client], md5s[client], size, work, run, args.timeout, children,
                               events_pos)
                results[client].append(r)
                sb = "n/a" if r["sandbox_cpu"] is None else f"{r['sandbox_cpu']:.1f} s"
                print(f"run {run} {client:<6}: wall {r['wall']:6.2f} s = {size / 1e6 / r['wall']:6.1f} MB/s; "
                      f"CPU {r['cpu']:6.2f} s (user {r['user']:.2f} + sys {r['sys']:.2f}) = "
                      f"{r['cpu'] / gib:5.2f} CPU-s/GiB; peak RSS {r['rss_mib']:6.1f} MiB; "
                      f"sandbox CPU {sb}; other processes + kernel threads {r['other_cpu']:.1f} CPU-s; "
                      f"id {r['video_id']} md5 ok"
                      + (f"; {r['extra']}" if r["extra"] else ""), flush=True)
            print(f"run {run}: order {' then '.join(order)}; warm-up reads {warmed['vidupd']:.2f} s / "
                  f"{warmed['public']:.2f} s; load average before the run {load:.2f}", flush=True)
            for p in files.values():
                p.unlink()
                Path(f"{p}.upload").unlink(missing_ok=True)  # the public client's state file, if any

        med = {c: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mib")}
               for c, rs in results.items()}
        for c, rs in results.items():
            m = med[c]
            sbs = [r["sandbox_cpu"] for r in rs if r["sandbox_cpu"] is not None]
            sb = f"; sandbox CPU {statistics.median(sbs):.1f} s ({statistics.median(sbs) / m['wall'] * 100:.0f}% " \
                 f"of one core)" if sbs else ""
            other = statistics.median(r["other_cpu"] for r in rs)
            print(f"median {c:<6}: wall {m['wall']:6.2f} s = {size / 1e6 / m['wall']:6.1f} MB/s; "
                  f"{m['cpu'] / gib:5.2f} CPU-s/GiB; peak RSS {m['rss_mib']:.1f} MiB "
                  f"(max {max(r['rss_mib'] for r in rs):.1f}){sb}; other processes {other:.1f} CPU-s "
                  f"({other / m['wall'] / (os.cpu_count() or 1) * 100:.0f}% of the machine)")
        speedup = med["public"]["wall"] / med["vidupd"]["wall"]
        cpu_ratio = med["vidupd"]["cpu"] / med["public"]["cpu"]
        print(f"ratios: wall-time speedup public/vidupd {speedup:.2f}x; CPU vidupd/public {cpu_ratio:.2f}")
        v_cpu = med["vidupd"]["cpu"] / gib
        v_rss = max(r["rss_mib"] for r in results["vidupd"])
        for ok, text in ((speedup >= 2.0, f"vidupd >= 2x faster in wall time: {speedup:.2f}x"),
                         (v_cpu <= 4.0, f"vidupd <= 4 CPU-s/GiB: {v_cpu:.2f}"),
                         (v_rss < 120.0, f"vidupd peak RSS < 120 MiB (max of runs): {v_rss:.1f} MiB")):
            print(f"target {'PASS' if ok else 'MISS'}: {text}")
        print(json.dumps({"size_mib": args.size_mib, "runs": args.runs, "median": med, "speedup": speedup,
                          "cpu_ratio": cpu_ratio,
                          "per_run": {c: [{k: round(r[k], 3) for k in ("wall", "cpu", "user", "sys", "rss_mib")}
                                          | {"sandbox_cpu": r["sandbox_cpu"], "other_cpu": round(r["other_cpu"], 2)}
                                          for r in rs]
                                      for c, rs in results.items()}}))
        return 0
    except BenchError as e:
        print(f"bench_youku: FAILED: {e}", file=sys.stderr)
        if box is not None:
            print(f"sandbox log tail: {box.log_text()}", file=sys.stderr)
        return 1
    finally:
        for proc in list(children):
            proc.kill()
            try:
                os.waitpid(proc.pid, 0)
            except ChildProcessError:
                pass
        if box is not None:
            box.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""vidupd's Youku upload (OSS flow and six-step slice flow) vs the public clients, on one
sandbox, in one run.

    .venv/bin/python benchmarks/bench_youku.py [--size-mib 1024] [--runs 3]
        [--clients vidupd-oss,youku-upload,vidupd-slices[,youku-0.1.1]]

The sandbox runs in its own process (`python -m vidupd sandbox --dir D --hash-only
--oss-signature both`: youku-upload 0.1.2 signs its OSS requests V1, vidupd V4), shared by
every client; its generated D/vidupd.toml is used with only `upload_protocol` set per
vidupd client. Per run, one fresh file of --size-mib MiB per client is written under --tmp
(a random prefix each, so none can be an instant upload), fsynced, and read once before any
clock starts (all warm in the page cache). Then, in an order rotated every run:

- vidupd-oss:    `python -m vidupd upload -c CONFIG --target youku FILE --no-progress` with
  upload_protocol = "oss" (create isnew=1, OSS multipart, commit; the whole-file MD5 pass
  counted, Youku's media processing not: the one-shot returns once committed).
- youku-upload:  a tiny driver that points youku_upload 0.1.2's host constant at the sandbox
  (the same redirect the interop tests use; the client's logic is unchanged) and calls
  YoukuUpload(client_id, access_token, FILE).upload(...): oss2.resumable_upload, 100 KB parts.
- vidupd-slices: the same one-shot with upload_protocol = "slices" (the seed's six steps).
- youku-0.1.1:   (only if asked for) the public six-step client, redirected the same way.

Each child is timed with time.monotonic (interpreter start-up included) and reaped with
os.wait4: CPU seconds (user + sys) are the child's own, and so is its peak RSS (VmHWM sampled
by _harness.run_child; wait4's ru_maxrss would carry this parent's peak). The
sandbox's CPU seconds during each upload come from /proc/PID/stat, and "other processes +
kernel threads" (everything else the machine ran meanwhile) from /proc/stat, so a busy
machine shows up in the output. For vidupd, its event log splits the wall time into
start-up + whole-file MD5 pass, and transfer + commit. After every upload the sandbox's
D/uploads.jsonl must hold one new entry with the file's MD5, size and the video_id the
client reported; anything else aborts the benchmark.

Targets (issue 10): the OSS flow >= 2x faster in wall time than youku-upload 0.1.2 and
<= 3 CPU-s/GiB; (issue 3) the slice flow >= 2x faster than youku 0.1.1 and <= 4 CPU-s/GiB,
when both ran; peak RSS < 120 MiB. Printed as PASS/MISS, not asserted.
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

from _harness import (MIB, BenchError, SandboxProcess, add_json_option, emit_summary, machine_busy_seconds,  # noqa: E402
                      require_success, run_child, vidupd_video_id, warm, write_file)


class Sandbox(SandboxProcess):
    """The sandbox process and its `youku` target."""

    def __init__(self, directory: Path, start_timeout: float):
        super().__init__(directory, start_timeout, "youku", extra_args=sandbox_args())
        self.youku = self.target
        self.configs = {c: protocol_config(self, p) for c, p in PROTOCOL_OF.items()}

GIB = 1 << 30
PATTERN_BYTES = 16 * MIB + 4093  # random filler, repeated; its length is not a multiple of a slice

# The public six-step client, pointed at the sandbox exactly as the interop tests do it:
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

# youku-upload 0.1.2 (the OSS flow): its module's `requests` redirected to the sandbox; oss2
# talks to the endpoint create answers (the sandbox's Youku bucket) by the client's own code.
OSS_DRIVER = r"""
import json, os, sys
import requests
from youku_upload import youku_upload

api_base = os.environ["BENCH_YOUKU_API"]

class _Requests:
    def __getattr__(self, name):
        call = getattr(requests, name)
        def redirected(url, *args, **kwargs):
            return call(url.replace("https://api.youku.com", api_base, 1), *args, **kwargs)
        return redirected

youku_upload.requests = _Requests()
client = youku_upload.YoukuUpload(os.environ["BENCH_YOUKU_CLIENT_ID"], os.environ["BENCH_YOUKU_ACCESS_TOKEN"],
                                  sys.argv[1])
video_id = client.upload(title=os.path.basename(sys.argv[1]), tags="bench,vidupd")
print(json.dumps({"video_id": video_id, "slept_seconds": 0, "sleeps": 0}), flush=True)
"""

CLIENTS = ("vidupd-oss", "youku-upload", "vidupd-slices", "youku-0.1.1")
DEFAULT_CLIENTS = "vidupd-oss,youku-upload,vidupd-slices"
PROTOCOL_OF = {"vidupd-oss": "oss", "vidupd-slices": "slices"}
FLOW_OF = {"vidupd-oss": "oss", "youku-upload": "oss", "vidupd-slices": "slices", "youku-0.1.1": "slices"}


def protocol_config(box: "Sandbox", protocol: str) -> Path:
    """The sandbox's generated config with upload_protocol set on its youku target."""
    path = box.config_path.with_name(f"vidupd-{protocol}.toml")
    text = box.config_text.replace("[targets.youku]\n", f'[targets.youku]\nupload_protocol = "{protocol}"\n', 1)
    if text == box.config_text:
        raise BenchError(f"{box.config_path}: no [targets.youku] table to set upload_protocol in")
    path.write_text(text)
    return path


def sandbox_args() -> tuple[str, ...]:
    """--oss-signature both (V1 for youku-upload, V4 for vidupd) where the sandbox has it."""
    r = subprocess.run([sys.executable, "-m", "vidupd", "sandbox", "--help"], capture_output=True, text=True,
                       timeout=60)
    return ("--oss-signature", "both") if "--oss-signature" in r.stdout else ()



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
    flow = FLOW_OF[client]
    if e.get("flow", flow) != flow:
        raise BenchError(f"{client}: uploaded through the {e.get('flow')} flow, not the {flow} flow")


def one_upload(client: str, box: Sandbox, path: Path, md5: str, size: int, work: Path, run: int, limit: float,
               children: list[subprocess.Popen], events_pos: list[int]) -> dict[str, Any]:
    before = len(box.entries())
    env = dict(os.environ)
    env.pop("VIDUPD_CONFIG", None)
    ours = client in PROTOCOL_OF
    if ours:
        argv = [sys.executable, "-m", "vidupd", "upload", "-c", str(box.configs[client]), "--target", "youku",
                str(path), "--no-progress"]
    else:
        argv = [sys.executable, "-c", OSS_DRIVER if client == "youku-upload" else PUBLIC_DRIVER, str(path)]
        env.update(BENCH_YOUKU_API=box.youku["api_base"], BENCH_YOUKU_CLIENT_ID=box.youku["client_id"],
                   BENCH_YOUKU_ACCESS_TOKEN=box.youku["access_token"],
                   HOME=str(work))  # oss2.resumable_upload keeps its checkpoints under ~/.py-oss-upload
    sb0, busy0, launched = box.cpu(), machine_busy_seconds(), time.time()
    r = run_child(argv, env, work, f"run{run}-{client}", limit, children)
    require_success(r, f"run{run}-{client}", limit)
    sb1, busy1 = box.cpu(), machine_busy_seconds()
    r["sandbox_cpu"] = None if sb0 is None or sb1 is None else sb1 - sb0
    # whatever else ran on the machine meanwhile (other users' jobs, kernel threads), in CPU seconds
    r["other_cpu"] = max(0.0, busy1 - busy0 - r["cpu"] - (r["sandbox_cpu"] or 0.0))
    r["extra"] = ""
    if ours:
        video_id = vidupd_video_id(r["stdout"], path)
        counts, times, events_pos[0] = count_events(Path(box.config["log"]["events"]), events_pos[0])
        notable = {k: v for k, v in counts.items() if k in ("upload.waiting", "upload.retrying", "upload.restarted",
                                                            "upload.instant", "auth.refreshed", "upload.resumed")}
        if counts.get("upload.instant"):
            raise BenchError("vidupd: the sandbox treated the file as an instant upload; the figures are void")
        r["extra"] = " ".join(f"{k}={v}" for k, v in sorted(notable.items()))
        if "upload.started" in times and "upload.completed" in times:  # the event clock has ms resolution
            r["extra"] = (f"phases: start-up + whole-file MD5 {times['upload.started'] - launched:.2f} s, "
                          f"transfer + commit {times['upload.completed'] - times['upload.started']:.2f} s "
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
    ap.add_argument("--clients", default=DEFAULT_CLIENTS, help=f"comma-separated, of {', '.join(CLIENTS)} "
                    f"(default {DEFAULT_CLIENTS})")
    ap.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="where files and the sandbox live (local disk)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per upload (default 900)")
    add_json_option(ap)
    args = ap.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if args.size_mib < 1 or args.runs < 1:
        ap.error("--size-mib and --runs must be at least 1")
    if not clients or any(c not in CLIENTS for c in clients) or len(set(clients)) != len(clients):
        ap.error(f"--clients: a comma-separated list of distinct names out of {', '.join(CLIENTS)}")
    size = args.size_mib * MIB
    gib = size / GIB
    free = shutil.disk_usage(args.tmp).free
    if free < len(clients) * size + GIB:
        raise SystemExit(f"{args.tmp}: {free / GIB:.1f} GiB free; need {(len(clients) * size + GIB) / GIB:.1f} GiB")

    work = Path(tempfile.mkdtemp(prefix="bench-youku-", dir=args.tmp))
    children: list[subprocess.Popen] = []
    box: Sandbox | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    try:
        (work / "sandbox").mkdir()
        box = Sandbox(work / "sandbox", start_timeout=60)
        print(f"# sandbox pid {box.proc.pid} (hash-only) at {box.youku['api_base']}; config {box.config_path} "
              f"(targets {', '.join(box.config['targets'])}; only youku is used)")
        print(f"# {args.runs} run(s) x {len(clients)} uploads of {args.size_mib} MiB ({', '.join(clients)}); files "
              f"under {work}; {os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}", flush=True)
        pattern = os.urandom(PATTERN_BYTES)
        events_pos = [0]
        _, _, events_pos[0] = count_events(Path(box.config["log"]["events"]), 0)
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        for run in range(1, args.runs + 1):
            files = {c: work / f"run{run}-{c}.mp4" for c in clients}
            md5s = {c: write_file(p, size, pattern)[0] for c, p in files.items()}
            warmed = {c: warm(p) for c, p in files.items()}
            shift = (run - 1) % len(clients)
            order = clients[shift:] + clients[:shift]
            load = os.getloadavg()[0]
            for client in order:
                r = one_upload(client, box, files[client], md5s[client], size, work, run, args.timeout, children,
                               events_pos)
                results[client].append(r)
                sb = "n/a" if r["sandbox_cpu"] is None else f"{r['sandbox_cpu']:.1f} s"
                print(f"run {run} {client:<13}: wall {r['wall']:6.2f} s = {size / 1e6 / r['wall']:6.1f} MB/s; "
                      f"CPU {r['cpu']:6.2f} s (user {r['user']:.2f} + sys {r['sys']:.2f}) = "
                      f"{r['cpu'] / gib:5.2f} CPU-s/GiB; peak RSS {r['rss_mib']:6.1f} MiB; "
                      f"sandbox CPU {sb}; other processes + kernel threads {r['other_cpu']:.1f} CPU-s; "
                      f"id {r['video_id']} md5 ok"
                      + (f"; {r['extra']}" if r["extra"] else ""), flush=True)
            print(f"run {run}: order {' then '.join(order)}; warm-up reads "
                  f"{' / '.join(f'{warmed[c]:.2f} s' for c in clients)}; load average before the run {load:.2f}",
                  flush=True)
            for p in files.values():
                p.unlink()
                Path(f"{p}.upload").unlink(missing_ok=True)  # the public clients' state file, if any

        med = {c: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mib")}
               for c, rs in results.items()}
        for c, rs in results.items():
            m = med[c]
            sbs = [r["sandbox_cpu"] for r in rs if r["sandbox_cpu"] is not None]
            sb = f"; sandbox CPU {statistics.median(sbs):.1f} s ({statistics.median(sbs) / m['wall'] * 100:.0f}% " \
                 f"of one core)" if sbs else ""
            other = statistics.median(r["other_cpu"] for r in rs)
            print(f"median {c:<13}: wall {m['wall']:6.2f} s = {size / 1e6 / m['wall']:6.1f} MB/s; "
                  f"{m['cpu'] / gib:5.2f} CPU-s/GiB; peak RSS {m['rss_mib']:.1f} MiB "
                  f"(max {max(r['rss_mib'] for r in rs):.1f}){sb}; other processes {other:.1f} CPU-s "
                  f"({other / m['wall'] / (os.cpu_count() or 1) * 100:.0f}% of the machine)")
        ratios: dict[str, float] = {}
        targets: list[tuple[bool, str]] = []
        for ours, theirs, cpu_max in (("vidupd-oss", "youku-upload", 3.0), ("vidupd-slices", "youku-0.1.1", 4.0)):
            if ours in med:
                cpu = med[ours]["cpu"] / gib
                targets.append((cpu <= cpu_max, f"{ours} <= {cpu_max:g} CPU-s/GiB: {cpu:.2f}"))
                rss = max(r["rss_mib"] for r in results[ours])
                targets.append((rss < 120.0, f"{ours} peak RSS < 120 MiB (max of runs): {rss:.1f} MiB"))
            if ours in med and theirs in med:
                speedup = ratios[f"{theirs}/{ours}"] = med[theirs]["wall"] / med[ours]["wall"]
                print(f"ratios: wall-time speedup {theirs}/{ours} {speedup:.2f}x; CPU {ours}/{theirs} "
                      f"{med[ours]['cpu'] / med[theirs]['cpu']:.2f}")
                targets.append((speedup >= 2.0, f"{ours} >= 2x faster in wall time than {theirs}: {speedup:.2f}x"))
        if "vidupd-oss" in med and "vidupd-slices" in med:
            print(f"ratios: wall time vidupd-slices/vidupd-oss "
                  f"{med['vidupd-slices']['wall'] / med['vidupd-oss']['wall']:.2f}x")
        for ok, text in targets:
            print(f"target {'PASS' if ok else 'MISS'}: {text}")
        emit_summary({"size_mib": args.size_mib, "runs": args.runs, "median": med, "speedups": ratios,
                      "max_rss_mib": {c: max(r["rss_mib"] for r in rs) for c, rs in results.items()},
                      "per_run": {c: [{k: round(r[k], 3) for k in ("wall", "cpu", "user", "sys", "rss_mib")}
                                      | {"sandbox_cpu": r["sandbox_cpu"], "other_cpu": round(r["other_cpu"], 2)}
                                      for r in rs]
                                  for c, rs in results.items()}}, args.json)
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

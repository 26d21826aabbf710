#!/usr/bin/env python3
"""vidupd's VOD upload vs raw `oss2.resumable_upload` vs the stock `voduploadsdk` 1.0.2,
on one sandbox, in one run (issue 4).

    .venv/bin/python benchmarks/bench_vod.py [--size-mib 1024] [--runs 3] [--part-mib 8] [--threads 4]
                                             [--signature v4|v1|both]

The sandbox runs in its own process (`python -m vidupd sandbox --dir D --hash-only
--oss-signature both`: MD5 and CRC-64 of every byte, nothing written), shared by the three clients. Per run, three
fresh files of --size-mib MiB are written under --tmp (local disk; 4 KiB of fresh random
bytes first, then a random pattern, so every upload is a distinct video), fsynced, and
read once each before any clock starts, so all three start from a warm page cache. Then,
in an order rotated per run, each client runs as a child process:

- vidupd:  `python -m vidupd upload -c CFG --target vod FILE --no-progress`, where CFG is
  a copy of D/vidupd.toml with `part_size` / `part_concurrency` added to [targets.vod]
  (from --part-mib / --threads) and its own state_dir and event log per run. Timed from
  the launch (interpreter start-up, the whole-file MD5 pass the pool does before every
  upload, CreateUploadVideo, OSS multipart, Complete) until it exits.
- oss2:    a small driver that does CreateUploadVideo with aliyunsdkcore (endpoint set
  with AcsClient.add_endpoint), decodes UploadAddress/UploadAuth, builds
  `oss2.Bucket(StsAuth(...), enable_crc=True)` and then, timed, calls
  `oss2.resumable_upload(bucket, key, path, store=ResumableStore(root=tmp),
  multipart_threshold=part, part_size=part, num_threads=threads)`. Its wall time and
  CPU cover **only the OSS upload** (measured inside the driver with time.monotonic and
  getrusage); its whole-process figures are printed too. (oss2 2.19's resumable_upload
  takes no `enable_crc` argument: CRC-64 checking is the Bucket's `enable_crc`, crcmod.)
- ossv2:   (only if asked for) alibabacloud-oss-v2 (V4 only) the same way as oss2: CreateUploadVideo
  first, then, timed, its `Client.uploader(part_size, parallel_num=threads).upload_file(...)`
  (CRC-64 checked, its default); wall and CPU cover only that OSS upload.
- sdk:     a small driver that points voduploadsdk at the sandbox as
  tests/test_interop_oss.py does (region_provider.add_endpoint for its AcsClient;
  HTTP_PROXY=the VOD sandbox for its hard-coded progress-report POST, NO_PROXY for
  loopback OSS) and calls `AliyunVodUploader(ak, secret).uploadLocalVideo(
  UploadVideoRequest(FILE, title))` after `setMultipartUpload(part, part, threads)`. It
  sends parts one at a time whatever the thread setting. Timed from the launch like
  vidupd; capped by --sdk-timeout (a hit is reported and the run's figure is a lower bound).

Every child is reaped with os.wait4: CPU seconds (user + sys) are its own, and so is its peak RSS
(VmHWM sampled by _harness.run_child: wait4's ru_maxrss carries this parent's peak). The sandbox's CPU seconds during each upload come from /proc/PID/stat (also
sampled every 0.1 s, to give its share during vidupd's upload phase); "other processes"
(everything else the machine ran meanwhile, e.g. another benchmark) from /proc/stat.
After each upload the sandbox's D/uploads.jsonl must hold exactly one new entry for the
reported VideoId with the file's size (hash-only multipart objects have no MD5, so an MD5
is compared only when there is one), and a HeadObject (credentials from
RefreshUploadVideo) must show the object with the file's size and CRC-64/XZ; anything
else aborts the benchmark.

OSS signatures (issue 10): `--signature v4` (the default) has vidupd (`oss_signature`) and
raw oss2 (`StsAuth(..., auth_version="v4")`, `Bucket(..., region=UploadAuth's Region)`)
sign V4, `v1` has both sign V1; `both` runs vidupd and oss2 once with each in every run, V4
and V1 alternately (the order rotated with the rest), and prints each one's wall and
CPU-s/GiB and the V4/V1 ratios (the issue's target: V4 no slower than V1 within noise).
voduploadsdk signs V1 whatever is asked (it cannot sign V4). The sandbox runs with
`--oss-signature both` so that every client is accepted.

Targets (issue 4): vidupd at least 0.9x raw oss2's speed (wall_vidupd <= wall_oss2 / 0.9,
oss2 counted for its OSS upload only) and 2x voduploadsdk's; at most 2 CPU-s/GiB; peak
RSS under 150 MiB. Printed as PASS/MISS, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _harness import (MIB, BenchError, SandboxProcess, add_json_option, emit_summary, machine_busy_seconds,  # noqa: E402
                      require_success, run_child, vidupd_video_id, warm, write_file)

GIB = 1 << 30
PATTERN_BYTES = 16 * MIB + 4093  # random filler, repeated; its length is not a multiple of a part
CLIENTS = ("vidupd", "oss2", "ossv2", "sdk")
DEFAULT_CLIENTS = "vidupd,oss2,sdk"
SIGNS = ("vidupd", "oss2")  # the clients that can sign either version (voduploadsdk: V1 only)
RESULT_MARK = "BENCH-RESULT "

# What the raw-OSS drivers do before their clock starts: one CreateUploadVideo for the file
# (its address and STS credentials), with the SDK as a user would call it.
CREATE_ONE_VIDEO = r"""
cfg = json.loads(os.environ["BENCH_VOD"])
path = sys.argv[1]
client = AcsClient(cfg["access_key_id"], cfg["access_key_secret"], cfg["region"], auto_retry=False)
client.add_endpoint(cfg["region"], "vod", cfg["endpoint"])
req = CreateUploadVideoRequest.CreateUploadVideoRequest()
req.set_Title(os.path.basename(path))
req.set_FileName(os.path.basename(path))
req.set_FileSize(str(os.path.getsize(path)))
answer = json.loads(client.do_action_with_exception(req))
address = json.loads(base64.b64decode(answer["UploadAddress"]))
auth = json.loads(base64.b64decode(answer["UploadAuth"]))
"""

# Raw oss2 with the credentials of one CreateUploadVideo (done before the clock starts).
OSS2_DRIVER = r"""
import base64, json, os, resource, sys, time
import oss2
from aliyunsdkcore.client import AcsClient
from aliyunsdkvod.request.v20170321 import CreateUploadVideoRequest
""" + CREATE_ONE_VIDEO + r"""if cfg["signature"] == "v4":  # V4 needs the bucket's region: UploadAuth's Region
    bucket = oss2.Bucket(oss2.StsAuth(auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"],
                                      auth_version="v4"), address["Endpoint"], address["Bucket"], enable_crc=True,
                         region=auth["Region"])
else:
    bucket = oss2.Bucket(oss2.StsAuth(auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"]),
                         address["Endpoint"], address["Bucket"], enable_crc=True)
part = int(cfg["part_size"])
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
result = oss2.resumable_upload(bucket, address["FileName"], path, store=oss2.ResumableStore(root=cfg["store"]),
                               multipart_threshold=part, part_size=part, num_threads=int(cfg["threads"]))
t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
print("BENCH-RESULT " + json.dumps({
    "video_id": answer["VideoId"], "key": address["FileName"], "crc": result.crc,
    "upload_wall": t1 - t0,
    "upload_cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}), flush=True)
"""

# alibabacloud-oss-v2 (signs V4 only): its uploader with the credentials of one
# CreateUploadVideo, done before the clock starts, as for raw oss2; CRC-64 checked (its default).
OSSV2_DRIVER = r"""
import base64, json, os, resource, sys, time
import alibabacloud_oss_v2 as ossv2
from aliyunsdkcore.client import AcsClient
from aliyunsdkvod.request.v20170321 import CreateUploadVideoRequest
""" + CREATE_ONE_VIDEO + r"""conf = ossv2.config.load_default()
conf.credentials_provider = ossv2.credentials.StaticCredentialsProvider(
    auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"])
conf.region, conf.endpoint, conf.use_path_style = auth["Region"], address["Endpoint"], True  # an IP endpoint
conf.retry_max_attempts = 1
uploader = ossv2.Client(conf).uploader(part_size=int(cfg["part_size"]), parallel_num=int(cfg["threads"]))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
result = uploader.upload_file(ossv2.PutObjectRequest(bucket=address["Bucket"], key=address["FileName"]),
                              filepath=path)
t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
print("BENCH-RESULT " + json.dumps({
    "video_id": answer["VideoId"], "key": address["FileName"], "crc": result.hash_crc64,
    "upload_wall": t1 - t0,
    "upload_cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}), flush=True)
"""

# The stock SDK, redirected through its own mechanisms only (see tests/test_interop_oss.py).
SDK_DRIVER = r"""
import json, os, resource, sys, time
from aliyunsdkcore.profile import region_provider

cfg = json.loads(os.environ["BENCH_VOD"])
region_provider.add_endpoint("vod", cfg["region"], cfg["endpoint"])
from voduploadsdk.AliyunVodUploader import AliyunVodUploader
from voduploadsdk.UploadVideoRequest import UploadVideoRequest

path = sys.argv[1]
part = int(cfg["part_size"])
uploader = AliyunVodUploader(cfg["access_key_id"], cfg["access_key_secret"])
uploader.setMultipartUpload(multipartThreshold=part, multipartPartSize=part, multipartThreadsNum=int(cfg["threads"]))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
info = uploader.uploadLocalVideo(UploadVideoRequest(path, os.path.basename(path)))
t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
print("BENCH-RESULT " + json.dumps({
    "video_id": info["VideoId"], "key": info["UploadAddress"]["FileName"],
    "upload_wall": t1 - t0,
    "upload_cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}), flush=True)
"""



class Sandbox(SandboxProcess):
    """The sandbox process, its `vod` target, and a look at stored objects."""

    def __init__(self, directory: Path, start_timeout: float):
        super().__init__(directory, start_timeout, "vod", env=client_env(), extra_args=("--oss-signature", "both"))
        self.vod = self.target
        self._client: Any = None

    def head(self, video_id: str) -> tuple[str, int, int | None]:
        """(object key, size, CRC-64) of a video's object: RefreshUploadVideo, then HeadObject."""
        import oss2
        from aliyunsdkcore.client import AcsClient
        from aliyunsdkvod.request.v20170321 import RefreshUploadVideoRequest

        if self._client is None:
            self._client = AcsClient(self.vod["access_key_id"], self.vod["access_key_secret"], self.vod["region"],
                                     auto_retry=False, timeout=30)
            self._client.add_endpoint(self.vod["region"], "vod", self.vod["endpoint"])
        req = RefreshUploadVideoRequest.RefreshUploadVideoRequest()
        req.set_VideoId(video_id)
        answer = json.loads(self._client.do_action_with_exception(req))
        address = json.loads(base64.b64decode(answer["UploadAddress"]))
        auth = json.loads(base64.b64decode(answer["UploadAuth"]))
        bucket = oss2.Bucket(oss2.StsAuth(auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"],
                                          auth_version="v4"), address["Endpoint"], address["Bucket"],
                             connect_timeout=30, region=auth["Region"])
        head = bucket.head_object(address["FileName"])
        crc = head.headers.get("x-oss-hash-crc64ecma")
        return address["FileName"], int(head.content_length), int(crc) if crc is not None else None


def client_env(**extra: str) -> dict[str, str]:
    """The bench's environment without proxies or a vidupd config; loopback never proxied."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "VIDUPD_CONFIG"}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def vidupd_config(box: Sandbox, work: Path, run: int, part: int, threads: int, signature: str,
                  label: str = "vidupd") -> tuple[Path, Path]:
    """A copy of the sandbox's vidupd.toml: own state_dir and event log, part size, concurrency
    and OSS signature set."""
    state, events = work / f"run{run}-{label}-state", work / f"run{run}-{label}-events.jsonl"
    out, in_vod, done = [], False, set()
    for line in box.config_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("state_dir ="):
            line = f'state_dir = "{state}"'
            done.add("state_dir")
        elif stripped.startswith("events =") and not in_vod:
            line = f'events = "{events}"'
            done.add("events")
        elif stripped.startswith("["):
            in_vod = stripped == "[targets.vod]"
        elif in_vod and stripped.split("=", 1)[0].strip() in ("part_size", "part_concurrency", "multipart_threshold",
                                                               "oss_signature"):
            continue  # replaced below
        out.append(line)
        if stripped == "[targets.vod]":
            out += [f"part_size = {part}", f"part_concurrency = {threads}", f'oss_signature = "{signature}"']
            done.add("vod")
    if done != {"state_dir", "events", "vod"}:
        raise BenchError(f"{box.config_path}: unexpected layout (found {sorted(done)})")
    path = work / f"run{run}-{label}.toml"
    path.write_text("\n".join(out) + "\n")
    return path, events


class CpuSampler:
    """(epoch time, sandbox CPU seconds) every 0.1 s while a client runs, to split it by phase."""

    def __init__(self, box: "Sandbox"):
        self.box = box
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = self.box.cpu()
            if cpu is not None:
                self.samples.append((time.time(), cpu))
            self._stop.wait(0.1)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def at(self, t: float) -> float | None:
        """Sandbox CPU seconds at time t (linear between the samples around it)."""
        before = [s for s in self.samples if s[0] <= t]
        after = [s for s in self.samples if s[0] >= t]
        if not before or not after:
            return None
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)



def driver_result(client: str, r: dict[str, Any]) -> dict[str, Any]:
    for line in reversed(r["stdout"].splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise BenchError(f"{client}: no result line (exit {r['exit']}); stdout tail {r['stdout'][-1000:]!r}; "
                     f"stderr tail {r['stderr'][-2000:]!r}")


def vidupd_events(events: Path) -> dict[str, Any]:
    """Counts of each event.action and the time (epoch s) of the last one, from a run's event log."""
    counts: dict[str, int] = {}
    times: dict[str, float] = {}
    try:
        lines = events.read_bytes().splitlines()
    except FileNotFoundError:
        return {"counts": counts, "times": times}
    for line in lines:
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
    return {"counts": counts, "times": times}


def verify(box: Sandbox, before: int, client: str, path: Path, size: int, md5: str, crc: int, video_id: str,
           key: str | None) -> None:
    """One new journal entry for this video with the file's size (and MD5 if known); HeadObject agrees."""
    new = box.entries()[before:]
    if len(new) != 1:
        raise BenchError(f"{client}: expected 1 new entry in {box.journal}, found {len(new)}: {new}")
    e = new[0]
    if (e.get("remote_id"), e.get("size"), e.get("kind")) != (video_id, size, "video"):
        raise BenchError(f"{client}: {path.name}: uploads.jsonl says id={e.get('remote_id')} size={e.get('size')} "
                         f"kind={e.get('kind')}, expected id={video_id} size={size} kind=video")
    if e.get("md5") is not None and e["md5"] != md5:  # hash-only multipart objects have none
        raise BenchError(f"{client}: {path.name}: uploads.jsonl md5 {e['md5']} != file md5 {md5}")
    if e.get("duplicate_id"):
        raise BenchError(f"{client}: the sandbox handed out a duplicate id: {e}")
    head_key, head_size, head_crc = box.head(video_id)
    if key is not None and head_key != key:
        raise BenchError(f"{client}: the video's object is {head_key}, the client uploaded {key}")
    if e.get("object_key") not in (None, head_key):
        raise BenchError(f"{client}: journal object_key {e.get('object_key')} != {head_key}")
    if head_size != size or head_crc != crc:
        raise BenchError(f"{client}: HeadObject {head_key}: size {head_size} CRC-64 {head_crc}, "
                         f"expected size {size} CRC-64 {crc}")


def one_upload(label: str, box: Sandbox, path: Path, size: int, md5: str, crc: int, work: Path, run: int,
               args: argparse.Namespace, children: list[subprocess.Popen]) -> dict[str, Any]:
    """One upload by `label`: a client ("vidupd", "oss2", "sdk"), with "-v4"/"-v1" under --signature both."""
    client, _, signature = label.partition("-")
    signature = signature or (args.signature if client in SIGNS else "v4" if client == "ossv2" else "v1")
    before = len(box.entries())
    part, threads = args.part_mib * MIB, args.threads
    cfg = {"endpoint": box.vod["endpoint"], "region": box.vod["region"],
           "access_key_id": box.vod["access_key_id"], "access_key_secret": box.vod["access_key_secret"],
           "part_size": part, "threads": threads, "store": str(work / f"run{run}-{label}-store"),
           "signature": signature}
    events = None
    limit = args.timeout
    if client == "vidupd":
        cfg_path, events = vidupd_config(box, work, run, part, threads, signature, label)
        argv = [sys.executable, "-m", "vidupd", "upload", "-c", str(cfg_path), "--target", "vod", str(path),
                "--no-progress"]
        env = client_env()
    elif client in ("oss2", "ossv2"):
        argv = [sys.executable, "-c", OSS2_DRIVER if client == "oss2" else OSSV2_DRIVER, str(path)]
        env = client_env(BENCH_VOD=json.dumps(cfg))
    else:
        argv = [sys.executable, "-c", SDK_DRIVER, str(path)]
        # requests (the SDK's progress report) honours HTTP_PROXY and NO_PROXY; aliyunsdkcore
        # passes HTTP_PROXY explicitly, and the VOD sandbox answers proxied requests too.
        env = client_env(BENCH_VOD=json.dumps(cfg), HTTP_PROXY=f"http://{box.vod['endpoint']}",
                         http_proxy=f"http://{box.vod['endpoint']}")
        limit = args.sdk_timeout
    sb0, busy0, launched = box.cpu(), machine_busy_seconds(), time.time()
    with CpuSampler(box) as sampler:
        r = run_child(argv, env, work, f"run{run}-{label}", limit, children)
    sb1, busy1 = box.cpu(), machine_busy_seconds()
    r["sandbox_cpu"] = None if sb0 is None or sb1 is None else sb1 - sb0
    r["other_cpu"] = max(0.0, busy1 - busy0 - r["cpu"] - (r["sandbox_cpu"] or 0.0))
    r["extra"] = ""
    r["process_wall"], r["process_cpu"] = r["wall"], r["cpu"]
    if r["timed_out"]:
        if client != "sdk":
            raise BenchError(f"{client}: no result within {limit:g}s; killed. stderr: {r['stderr'][-2000:]}")
        r["extra"] = f"TIMEOUT: killed after {limit:g} s; its figures are lower bounds"
        r["video_id"] = None
        return r
    require_success(r, client, limit)
    key = None
    if client == "vidupd":
        video_id = vidupd_video_id(r["stdout"], path)
        ev = vidupd_events(events) if events else {"counts": {}, "times": {}}
        counts, times = ev["counts"], ev["times"]
        notable = {k: v for k, v in counts.items()
                   if k in ("upload.retrying", "upload.restarted", "upload.resumed", "auth.refreshed", "upload.failed")}
        r["extra"] = " ".join(f"{k}={v}" for k, v in sorted(notable.items()))
        if "upload.started" in times and "upload.completed" in times:  # the event clock has ms resolution
            t_start, t_done = times["upload.started"], times["upload.completed"]
            phase = max(t_done - t_start, 1e-3)
            c_start, c_done = sampler.at(t_start), sampler.at(t_done)
            sb_phase = "" if c_start is None or c_done is None else \
                f", sandbox {(c_done - c_start) / phase * 100:.0f}% of a core meanwhile"
            r["phase_rate"] = size / 1e6 / phase
            r["extra"] = (f"phases: start-up + whole-file MD5 {t_start - launched:.2f} s, "
                          f"Create + OSS + Complete {phase:.2f} s ({r['phase_rate']:.0f} MB/s{sb_phase}) "
                          + r["extra"]).strip()
    else:
        res = driver_result(client, r)
        video_id, key = res["video_id"], res["key"]
        r["upload_wall"], r["upload_cpu"] = res["upload_wall"], res["upload_cpu"]
        if client in ("oss2", "ossv2"):  # the figures compared are the OSS upload's only
            r["wall"], r["cpu"] = res["upload_wall"], res["upload_cpu"]
            r["extra"] = (f"OSS upload only; whole process {r['process_wall']:.2f} s wall, "
                          f"{r['process_cpu']:.2f} CPU-s")
        else:
            r["extra"] = f"uploadLocalVideo {res['upload_wall']:.2f} s, {res['upload_cpu']:.2f} CPU-s"
    verify(box, before, client, path, size, md5, crc, video_id, key)
    r["video_id"] = video_id
    return r


def fmt_run(run: int, client: str, r: dict[str, Any], size: int) -> str:
    gib = size / GIB
    sb = "n/a" if r["sandbox_cpu"] is None else f"{r['sandbox_cpu']:.1f} s"
    sb_share = "" if r["sandbox_cpu"] is None else f" ({r['sandbox_cpu'] / r['process_wall'] * 100:.0f}% of a core)"
    verified = f"id {r['video_id']} verified" if r.get("video_id") else "NOT verified"
    ge, le, part = (">= ", "<= ", " until killed") if r["timed_out"] else ("", "", "")
    return (f"run {run} {client:<9}: wall {ge}{r['wall']:7.2f} s = {le}{size / 1e6 / r['wall']:6.1f} MB/s; "
            f"CPU{part} {r['cpu']:6.2f} s = {r['cpu'] / gib:5.2f} CPU-s/GiB (process: user {r['user']:.2f} + "
            f"sys {r['sys']:.2f}); peak RSS {r['rss_mib']:6.1f} MiB; sandbox CPU {sb}{sb_share}; "
            f"other processes {r['other_cpu']:.1f} CPU-s; {verified}" + (f"; {r['extra']}" if r["extra"] else ""))


def signature_ratios(med: dict[str, dict[str, float]], gib: float) -> dict[str, dict[str, float]]:
    """Print and return, per signing client, V4's and V1's median wall and CPU-s/GiB and their ratios."""
    out: dict[str, dict[str, float]] = {}
    for c in SIGNS:
        v4, v1 = med.get(f"{c}-v4"), med.get(f"{c}-v1")
        if v4 is None or v1 is None:
            continue
        out[c] = {"wall_v4": v4["wall"], "wall_v1": v1["wall"], "wall_ratio": v4["wall"] / v1["wall"],
                  "cpu_per_gib_v4": v4["cpu"] / gib, "cpu_per_gib_v1": v1["cpu"] / gib,
                  "cpu_ratio": v4["cpu"] / v1["cpu"] if v1["cpu"] else float("nan")}
        o = out[c]
        print(f"signature {c:<6}: V4 wall {o['wall_v4']:.2f} s, {o['cpu_per_gib_v4']:.2f} CPU-s/GiB; V1 wall "
              f"{o['wall_v1']:.2f} s, {o['cpu_per_gib_v1']:.2f} CPU-s/GiB; V4/V1 wall {o['wall_ratio']:.3f}, "
              f"CPU {o['cpu_ratio']:.3f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring for what is measured and how.")
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each uploaded file (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="runs; each uploads one file with each client (default 3)")
    ap.add_argument("--part-mib", type=int, default=8, help="part size in MiB for all three clients (default 8)")
    ap.add_argument("--threads", type=int, default=4, help="parallel parts for all three clients (default 4)")
    ap.add_argument("--clients", default=DEFAULT_CLIENTS,
                    help=f"comma-separated subset of {','.join(CLIENTS)} (default {DEFAULT_CLIENTS}; ossv2 is "
                         "alibabacloud-oss-v2, which signs V4 only, whatever --signature says)")
    ap.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="where files and the sandbox live (local disk)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per vidupd / oss2 upload")
    ap.add_argument("--sdk-timeout", type=float, default=1800.0, help="seconds allowed per voduploadsdk upload")
    ap.add_argument("--signature", choices=("v4", "v1", "both"), default="v4",
                    help="OSS signature of vidupd and raw oss2: v4 (default), v1, or both alternately in one run")
    add_json_option(ap)
    args = ap.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if args.size_mib < 1 or args.runs < 1 or args.part_mib < 1 or args.threads < 1:
        ap.error("--size-mib, --runs, --part-mib and --threads must be at least 1")
    if not clients or any(c not in CLIENTS for c in clients):
        ap.error(f"--clients: choose from {','.join(CLIENTS)}")
    if args.signature == "both":  # each signing client twice per run, V4 and V1 alternately
        clients = [v for c in clients for v in ((f"{c}-v4", f"{c}-v1") if c in SIGNS else (c,))]
    size = args.size_mib * MIB
    gib = size / GIB
    free = shutil.disk_usage(args.tmp).free
    if free < len(clients) * size + GIB:
        raise SystemExit(f"{args.tmp}: {free / GIB:.1f} GiB free; need {(len(clients) * size + GIB) / GIB:.1f} GiB")

    work = Path(tempfile.mkdtemp(prefix="bench-vod-", dir=args.tmp))
    children: list[subprocess.Popen] = []
    box: Sandbox | None = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    try:
        (work / "sandbox").mkdir()
        box = Sandbox(work / "sandbox", start_timeout=60)
        print(f"# sandbox pid {box.proc.pid} (hash-only): vod {box.vod['endpoint']}; config {box.config_path}")
        print(f"# {args.runs} run(s) x {len(clients)} uploads of {args.size_mib} MiB, part {args.part_mib} MiB, "
              f"{args.threads} threads, OSS signature {args.signature} (voduploadsdk: v1); files under {work} (fsynced, then read once each before the run's "
              f"clocks start: page cache warm for every client); {os.cpu_count()} CPUs; load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        pattern = os.urandom(PATTERN_BYTES)
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        for run in range(1, args.runs + 1):
            files = {c: work / f"run{run}-{c}-{os.urandom(4).hex()}.mp4" for c in clients}
            digests = {c: write_file(p, size, pattern) for c, p in files.items()}
            warmed = {c: warm(p) for c, p in files.items()}
            k = (run - 1) % len(clients)
            order = clients[k:] + clients[:k]
            load = os.getloadavg()
            for client in order:
                md5, crc = digests[client]
                r = one_upload(client, box, files[client], size, md5, crc, work, run, args, children)
                results[client].append(r)
                print(fmt_run(run, client, r, size), flush=True)
            print(f"run {run}: order {' then '.join(order)}; warm-up reads "
                  + " / ".join(f"{c} {warmed[c]:.2f} s" for c in clients)
                  + f"; load average before the run {' '.join(f'{x:.2f}' for x in load)}", flush=True)
            for p in files.values():
                p.unlink()
            for p in work.glob(f"run{run}-*"):  # state dirs, checkpoint stores, child outputs stay small
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)

        keys = ("wall", "cpu", "rss_mib", "process_wall", "process_cpu")
        med = {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in results.items()}
        for c, rs in results.items():
            m = med[c]
            sbs = [r["sandbox_cpu"] for r in rs if r["sandbox_cpu"] is not None]
            sb = (f"; sandbox CPU {statistics.median(sbs):.1f} s per upload "
                  f"({statistics.median(sbs) / m['process_wall'] * 100:.0f}% of one core)") if sbs else ""
            other = statistics.median(r["other_cpu"] for r in rs)
            timeouts = sum(1 for r in rs if r["timed_out"])
            lower = ">= " if timeouts else ""
            print(f"median {c:<9}: wall {lower}{m['wall']:7.2f} s = {'<= ' if timeouts else ''}"
                  f"{size / 1e6 / m['wall']:6.1f} MB/s; "
                  f"{m['cpu'] / gib:5.2f} CPU-s/GiB; peak RSS {m['rss_mib']:.1f} MiB "
                  f"(max {max(r['rss_mib'] for r in rs):.1f}){sb}; other processes {other:.1f} CPU-s "
                  f"({other / m['process_wall'] / (os.cpu_count() or 1) * 100:.0f}% of the machine)"
                  + (f"; {timeouts} run(s) hit the {args.sdk_timeout:g} s timeout" if timeouts else "")
                  + (f"; Create + OSS + Complete phase alone {statistics.median(rates):.0f} MB/s"
                     if (rates := [r["phase_rate"] for r in rs if "phase_rate" in r]) else ""))
        summary: dict[str, Any] = {"size_mib": args.size_mib, "runs": args.runs, "part_mib": args.part_mib,
                                   "threads": args.threads, "signature": args.signature, "median": med}
        if args.signature == "both":
            summary["v4_vs_v1"] = signature_ratios(med, gib)
            for c in SIGNS:  # the issue-4 targets below compare the V4 runs
                if f"{c}-v4" in med:
                    med[c], results[c] = med[f"{c}-v4"], results[f"{c}-v4"]
        if "vidupd" in med:
            v = med["vidupd"]
            checks = []
            if "oss2" in med:
                speed = med["oss2"]["wall"] / v["wall"]
                whole = med["oss2"]["process_wall"] / v["wall"]
                summary["speed_vs_oss2"] = speed
                print(f"ratio: vidupd speed / raw oss2 speed = {speed:.2f}x (oss2 OSS upload only; "
                      f"{whole:.2f}x against oss2's whole process); CPU vidupd/oss2 "
                      f"{v['cpu'] / med['oss2']['cpu']:.2f} (oss2 upload only) / "
                      f"{v['cpu'] / med['oss2']['process_cpu']:.2f} (oss2 whole process)")
                checks.append((speed >= 0.9, f"vidupd >= 0.9x raw oss2's speed: {speed:.2f}x "
                                             f"(wall {v['wall']:.2f} s vs {med['oss2']['wall']:.2f} s)"))
            if "ossv2" in med:
                speed = summary["speed_vs_ossv2"] = med["ossv2"]["wall"] / v["wall"]
                print(f"ratio: vidupd speed / alibabacloud-oss-v2 speed = {speed:.2f}x (its OSS upload only); CPU "
                      f"vidupd/ossv2 {v['cpu'] / med['ossv2']['cpu']:.2f}")
            if "sdk" in med:
                speed = med["sdk"]["wall"] / v["wall"]
                summary["speed_vs_sdk"] = speed
                bound = " (at least: the SDK hit its timeout)" if any(r["timed_out"] for r in results["sdk"]) else ""
                print(f"ratio: vidupd speed / voduploadsdk speed = {speed:.2f}x{bound}; CPU vidupd/sdk "
                      f"{v['cpu'] / med['sdk']['cpu']:.2f}")
                checks.append((speed >= 2.0, f"vidupd >= 2x voduploadsdk's speed: {speed:.2f}x{bound}"))
            v_cpu = v["cpu"] / gib
            v_rss = max(r["rss_mib"] for r in results["vidupd"])
            checks.append((v_cpu <= 2.0, f"vidupd <= 2 CPU-s/GiB: {v_cpu:.2f}"))
            checks.append((v_rss < 150.0, f"vidupd peak RSS < 150 MiB (max of runs): {v_rss:.1f} MiB"))
            for ok, text in checks:
                print(f"target {'PASS' if ok else 'MISS'}: {text}")
        summary["per_run"] = {c: [{k: (round(r[k], 3) if isinstance(r[k], float) else r[k])
                                   for k in ("wall", "cpu", "user", "sys", "rss_mib", "process_wall", "process_cpu",
                                             "sandbox_cpu", "other_cpu", "timed_out")} for r in rs]
                              for c, rs in results.items() if not (args.signature == "both" and c in SIGNS)}
        summary["load_average_end"] = os.getloadavg()
        summary["max_rss_mib"] = {c: max(r["rss_mib"] for r in rs) for c, rs in results.items()}
        emit_summary(summary, args.json)
        return 0
    except BenchError as e:
        print(f"bench_vod: FAILED: {e}", file=sys.stderr)
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

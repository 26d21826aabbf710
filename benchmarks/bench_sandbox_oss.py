#!/usr/bin/env python3
"""Throughput of the OSS sandbox for one large PutObject.

The sandbox runs in a child process in hash_only mode (MD5 and CRC-64 of every byte, no
disk writes), so client and server do not share a GIL; the client is curl (or `requests`
streaming from the same file when curl is missing). Each run checks the returned ETag
against the file's MD5, then prints MB/s (10^6 bytes per second); the median comes last.

    python benchmarks/bench_sandbox_oss.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import HwmWatch, add_json_option, emit_summary

ROOT = Path(__file__).resolve().parent.parent


def serve(data_dir: Path) -> None:
    """Child process: run the sandbox until stdin closes; print its address and credentials."""
    sys.path.insert(0, str(ROOT))
    from vidupd.sandbox.common import SandboxOptions, UploadsJournal
    from vidupd.sandbox.oss import OssSandbox

    # The bench signs its PUT with V1 (computed below, no SDK): a sandbox taking both versions.
    sandbox = OssSandbox(data_dir, SandboxOptions(hash_only=True, oss_signature="both"),
                         UploadsJournal(data_dir / "uploads.jsonl"))
    sandbox.start()
    print(json.dumps({"endpoint": sandbox.endpoint, "bucket": sandbox.bucket, "sts": sandbox.issue_sts(7200)}),
          flush=True)
    sys.stdin.read()
    sandbox.shutdown()


def make_file(path: Path, size: int) -> str:
    """Write `size` pseudo-random bytes (a 4 MiB random block repeated); return their MD5."""
    block = os.urandom(4 << 20)
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = block[: min(len(block), left)]
            f.write(piece)
            md5.update(piece)
            left -= len(piece)
    return md5.hexdigest()


def signed_headers(sts: dict[str, str], bucket: str, key: str) -> dict[str, str]:
    """V1 signature for a PUT with the STS token, computed here so the bench needs no SDK."""
    date = email.utils.formatdate(usegmt=True)
    ctype = "application/octet-stream"
    text = f"PUT\n\n{ctype}\n{date}\nx-oss-security-token:{sts['SecurityToken']}\n/{bucket}/{key}"
    sig = base64.b64encode(hmac.new(sts["AccessKeySecret"].encode(), text.encode(), hashlib.sha1).digest()).decode()
    return {
        "Date": date,
        "Content-Type": ctype,
        "x-oss-security-token": sts["SecurityToken"],
        "Authorization": f"OSS {sts['AccessKeyId']}:{sig}",
    }


def put_with_curl(url: str, headers: dict[str, str], path: Path) -> tuple[float, str, dict[str, float]]:
    """curl -T; returns (seconds, ETag, curl's CPU seconds and peak RSS in MiB)."""
    cmd = ["curl", "-sS", "-X", "PUT", "-T", str(path), "-o", "/dev/null", "-D", "-", "-H", "Expect:", url]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    with tempfile.TemporaryFile() as answer:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=answer, stdin=subprocess.DEVNULL)
        hwm = HwmWatch(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = hwm.stop()
        if proc.returncode:
            raise RuntimeError(f"curl exited with {proc.returncode}")
        answer.seek(0)
        out = answer.read().decode(errors="replace")
    client = {"cpu": usage.ru_utime + usage.ru_stime, "rss_mib": peak if peak is not None else usage.ru_maxrss / 1024}
    etag = next((line.split(":", 1)[1].strip().strip('"') for line in out.splitlines()
                 if line.lower().startswith("etag:")), "")
    if not out.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"PutObject failed: {out.splitlines()[0] if out else 'no answer'}")
    return elapsed, etag, client


def put_with_requests(url: str, headers: dict[str, str], path: Path) -> tuple[float, str, dict[str, float]]:
    import requests

    size = path.stat().st_size
    with open(path, "rb") as f:
        r0, start = os.times(), time.perf_counter()
        resp = requests.put(url, data=f, headers={**headers, "Content-Length": str(size)}, timeout=600)
        elapsed, r1 = time.perf_counter() - start, os.times()
    resp.raise_for_status()
    return elapsed, resp.headers.get("ETag", "").strip('"'), {"cpu": r1.user - r0.user + r1.system - r0.system}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=("curl", "requests"),
                        default="curl" if shutil.which("curl") else "requests")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, default=None, help="where the payload goes (default: the system's temp)")
    add_json_option(parser)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-oss-", dir=args.tmp) as tmp:
        tmpdir = Path(tmp)
        size = args.size_mib << 20
        path = tmpdir / "payload.bin"
        md5 = make_file(path, size)
        (tmpdir / "sandbox").mkdir()
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(tmpdir / "sandbox")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            info = json.loads(child.stdout.readline())
            put = put_with_curl if args.client == "curl" else put_with_requests
            rates, runs = [], []
            for run in range(1, args.runs + 1):
                key = f"bench/run-{run}.bin"
                url = f"{info['endpoint']}/{info['bucket']}/{key}"
                elapsed, etag, client = put(url, signed_headers(info["sts"], info["bucket"], key), path)
                if etag.lower() != md5:
                    raise RuntimeError(f"ETag {etag} does not match the payload MD5 {md5}")
                rate = size / elapsed / 1e6
                rates.append(rate)
                runs.append({"wall": elapsed, **client})
                rss = f", peak RSS {client['rss_mib']:.1f} MiB" if "rss_mib" in client else ""
                print(f"run {run}: {args.size_mib} MiB in {elapsed:.2f} s = {rate:.0f} MB/s ({args.client}); client "
                      f"CPU {client['cpu']:.2f} s = {client['cpu'] / (size / (1 << 30)):.2f} CPU-s/GiB{rss}",
                      flush=True)
            print(f"median: {statistics.median(rates):.0f} MB/s")
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            emit_summary({"size_mib": args.size_mib, "runs": args.runs, "client": args.client, "median": med,
                          "median_mb_s": statistics.median(rates), "per_run": runs}, args.json)
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

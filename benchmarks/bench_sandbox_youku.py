"""How fast the Youku sandbox's upload server absorbs a slice stream.

    python benchmarks/bench_sandbox_youku.py [--size-mib 1024] [--runs 3] [--connections 2]

The sandbox runs in hash-only mode in a child process (its own GIL); this process plays a
cheap client: create, create_file, then parallel upload_slice calls over keep-alive
connections, sending slices cut from one pre-generated buffer whose MD5s are computed before
the clock starts. Each run ends with a real commit, so the sandbox's whole-file MD5 check is
part of what is measured. Prints MB/s (10^6 bytes) per run and the median.

Every byte is hashed twice by the server (the slice MD5 checked against `hash`, and the
whole-file MD5 checked at commit), so on a 2-core machine MD5 speed sets the ceiling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

SLICE_KB = 2048


def serve(data_dir: Path) -> None:
    """Child process: run the sandbox until stdin closes; each stdin line asks for its CPU time."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vidupd.sandbox.common import SandboxOptions, UploadsJournal
    from vidupd.sandbox.youku import YoukuSandbox

    # Slices of exactly SLICE_KB (the server would grant 12,345 bytes less by default): the
    # driver cuts every slice from one pre-hashed buffer.
    options = SandboxOptions(hash_only=True, youku_slice_length=SLICE_KB * 1024)
    sb = YoukuSandbox(data_dir, options, UploadsJournal(data_dir / "uploads.jsonl"))
    sb.start()
    print(json.dumps({"api": sb.api_base, "upload": sb.upload_server, "creds": sb.credentials}), flush=True)
    for _ in sys.stdin:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(usage.ru_utime + usage.ru_stime, flush=True)
    sb.shutdown()


class _Conn:
    """One keep-alive HTTP/1.1 connection speaking JSON, written on a bare socket: the
    client shares the machine's two cores with the server, so it must cost little."""

    def __init__(self, host_port: str):
        host, port = host_port.rsplit(":", 1)
        self._host = host_port
        self._sock = socket.create_connection((host, int(port)), timeout=60)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._sock.makefile("rb")

    def call(
        self, method: str, path: str, params: dict[str, Any], body: Any = None, form: bool = False
    ) -> dict[str, Any]:
        content_type = ""
        if form:
            body, content_type = urlencode(params).encode(), "Content-Type: application/x-www-form-urlencoded\r\n"
        else:
            path = f"{path}?{urlencode(params)}"
        length = 0 if body is None else len(body)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n{content_type}Content-Length: {length}\r\n\r\n"
        self._sock.sendall(head.encode())
        if length:
            self._sock.sendall(body)
        status = int(self._reader.readline().split()[1])
        answer_length = 0
        while (line := self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                answer_length = int(value)
        data = json.loads(self._reader.read(answer_length) or b"{}")
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data}")
        return data

    def close(self) -> None:
        self._reader.close()
        self._sock.close()


def one_run(info: dict[str, Any], size: int, buf: bytes, connections: int) -> float:
    """Upload `size` bytes made of buf's prefixes; returns seconds from first slice to commit."""
    slice_len = SLICE_KB * 1024
    full, rest = divmod(size, slice_len)
    whole = hashlib.md5()
    for _ in range(full):
        whole.update(buf)
    whole.update(buf[:rest])
    hashes = {slice_len: hashlib.md5(buf).hexdigest(), rest: hashlib.md5(buf[:rest]).hexdigest()}
    creds = info["creds"]
    auth = {"client_id": creds["client_id"], "access_token": creds["access_token"]}
    api = _Conn(info["api"][len("http://") :])
    created = api.call(
        "GET",
        "/uploads/create.json",
        {
            **auth,
            "title": "bench",
            "tags": "bench,vidupd",
            "file_name": "bench.mp4",
            "file_size": size,
            "file_md5": whole.hexdigest(),
        },
    )
    token, server = created["upload_token"], created["upload_server_uri"]
    assert created["instant_upload_ok"] == "no"
    conns = [_Conn(server) for _ in range(connections)]
    conns[0].call(
        "POST",
        "/gupload/create_file",
        {"upload_token": token, "file_size": size, "ext": "mp4", "slice_length": SLICE_KB},
        form=True,
    )
    view = memoryview(buf)
    errors: list[BaseException] = []

    def worker(conn: _Conn) -> None:
        try:
            task = conn.call("GET", "/gupload/new_slice", {"upload_token": token})
            while task["slice_task_id"]:
                n = task["length"]
                params = {
                    "upload_token": token,
                    "slice_task_id": task["slice_task_id"],
                    "offset": task["offset"],
                    "length": n,
                    "hash": hashes[n],
                }
                task = conn.call("POST", "/gupload/upload_slice", params, body=view[:n])
        except Exception as e:  # reported by the main thread
            errors.append(e)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    server_ip = conns[0].call("GET", "/gupload/check", {"upload_token": token})["upload_server_ip"]
    commit = {**auth, "upload_token": token, "upload_server_ip": server_ip}
    video = api.call("POST", "/uploads/commit.json", commit, form=True)["video_id"]
    elapsed = time.perf_counter() - start
    for c in [api, *conns]:
        c.close()
    assert video.startswith("X")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--connections", type=int, default=2, help="parallel keep-alive connections (2 = one per core here)"
    )
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory(prefix="bench-youku-") as tmp:
        child = subprocess.Popen(  # the server gets its own process, so its own GIL
            [sys.executable, __file__, "--serve", tmp], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdin is not None and child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        def server_cpu() -> float:  # wall-clock figures depend on what else runs; CPU per GB less so
            stdin.write("cpu\n")
            stdin.flush()
            return float(stdout.readline())

        try:
            info = json.loads(stdout.readline())
            size = args.size_mib << 20
            rates = []
            for run in range(args.runs):
                buf = bytes([run % 256]) + os.urandom(SLICE_KB * 1024 - 1)  # new content: no instant upload
                cpu = server_cpu()
                seconds = one_run(info, size, buf, args.connections)
                cpu = server_cpu() - cpu
                rates.append(size / seconds / 1e6)
                print(
                    f"run {run + 1}: {size / 1e6:.0f} MB in {seconds:.2f} s = {rates[-1]:.0f} MB/s"
                    f" (server CPU {cpu / (size / 1e9):.2f} s per GB)",
                    flush=True,
                )
            setup = f"{args.connections} connections, {SLICE_KB} KB slices, hash-only"
            print(f"median: {statistics.median(rates):.0f} MB/s ({setup})")
        finally:
            stdin.close()
            child.wait(timeout=30)


if __name__ == "__main__":
    main()

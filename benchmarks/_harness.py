"""Pieces the client benchmarks share: the sandbox in its own process, test files, timing a
child process (wall, CPU and peak RSS from wait4), and the machine's other load."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fastcrc  # the same values as crcmod's crc-64-xz (OSS x-oss-hash-crc64ecma)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


class BenchError(RuntimeError):
    """Something that makes the figures meaningless: printed, exit 1."""


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), or None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (user, nice, system, irq, softirq, steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields)) / os.sysconf("SC_CLK_TCK")


def write_file(path: Path, size: int, pattern: bytes) -> tuple[str, int]:
    """A file that starts with fresh random bytes (a new video every time), then the pattern;
    returns (MD5, CRC-64/XZ)."""
    md5, crc = hashlib.md5(), 0
    prefix = os.urandom(4096)
    with open(path, "wb") as f:
        left = size
        for block in (prefix, *([pattern] * (size // len(pattern) + 1))):
            if left <= 0:
                break
            piece = block[:left]
            f.write(piece)
            md5.update(piece)
            crc = fastcrc.crc64.xz(piece, crc)
            left -= len(piece)
        f.flush()
        os.fsync(f.fileno())  # no writeback of this file while a client is being timed
    return md5.hexdigest(), crc


def warm(path: Path) -> float:
    """Read the file once so every client starts from the page cache; returns seconds."""
    t0 = time.monotonic()
    buf = bytearray(8 * MIB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.monotonic() - t0


class SandboxProcess:
    """`python -m vidupd sandbox --dir D [--hash-only] [ARGS]` in its own process; `target` names
    the generated vidupd.toml target the benchmark uses."""

    def __init__(self, directory: Path, start_timeout: float, target: str, env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), hash_only: bool = True):
        self.dir = directory
        self.config_path = directory / "vidupd.toml"
        self.log_path = directory.parent / "sandbox.log"
        self.log = open(self.log_path, "wb")
        # hash_only=False: the bytes are kept, so a multipart object gets its whole MD5 (the fault suites)
        argv = [sys.executable, "-m", "vidupd", "sandbox", "--dir", str(directory),
                *(("--hash-only",) if hash_only else ()), *extra_args]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + start_timeout
        while not self.config_path.exists():  # written (atomically) once all servers listen
            if self.proc.poll() is not None:
                raise BenchError(f"sandbox exited with {self.proc.returncode}: {self.log_text()}")
            if time.monotonic() > deadline:
                raise BenchError(f"sandbox wrote no {self.config_path} within {start_timeout:g}s")
            time.sleep(0.05)
        self.config_text = self.config_path.read_text()
        self.config = tomllib.loads(self.config_text)
        if target not in self.config.get("targets", {}):
            raise BenchError(f"{self.config_path} has no [targets.{target}]")
        self.target = self.config["targets"][target]
        address = self.target.get("api_base") or self.target.get("endpoint", "")
        if not address.removeprefix("http://").startswith("127.0.0.1:"):
            raise BenchError(f"the generated {target} target does not point at loopback: {address}")
        self.journal = directory / "uploads.jsonl"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def cpu(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid)

    def entries(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.log.close()


def vm_hwm_mib(pid: int) -> float | None:
    """The peak resident set of the process's own memory (VmHWM), MiB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class HwmWatch:
    """Samples a child's VmHWM until it exits. Needed because wait4's ru_maxrss is not the
    child's own: exec records the old address space's peak, and subprocess starts children
    with vfork, so every child's ru_maxrss is at least its parent's peak RSS (a benchmark that
    imported oss2 made all its clients look 77-84 MiB)."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid, self.interval, self.peak = pid, interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hwm-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            hwm = vm_hwm_mib(self.pid)
            if hwm is not None:
                self.peak = hwm if self.peak is None else max(self.peak, hwm)
            self._stop.wait(self.interval)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def run_child(argv: list[str], env: dict[str, str], out_dir: Path, name: str, limit: float,
              children: list[subprocess.Popen]) -> dict[str, Any]:
    """Run one client to completion (killed after `limit` s); wall time and CPU are the child's
    own (wait4), and so is its peak RSS (VmHWM sampled every 10 ms, see HwmWatch; wait4's
    inflated figure is kept as rss_mib_wait4). The caller decides what a timeout or a failed
    exit means."""
    stdout_path, stderr_path = out_dir / f"{name}.out", out_dir / f"{name}.err"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        children.append(proc)
        hwm = HwmWatch(proc.pid)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(limit, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            peak = hwm.stop()
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        children.remove(proc)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime, "sys": usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024 if peak is None else peak, "rss_mib_wait4": usage.ru_maxrss / 1024,
            "exit": proc.returncode, "timed_out": timed_out.is_set(),
            "stdout": stdout_path.read_text(errors="replace"), "stderr": stderr_path.read_text(errors="replace")}


def require_success(r: dict[str, Any], name: str, limit: float) -> None:
    """A timeout or a failed exit makes the run's figures meaningless."""
    if r["timed_out"]:
        raise BenchError(f"{name}: no result within {limit:g}s; killed. stderr: {r['stderr'][-2000:]}")
    if r["exit"] != 0:
        raise BenchError(f"{name}: exit {r['exit']}\nstdout: {r['stdout'][-2000:]}\nstderr: {r['stderr'][-2000:]}")


def vidupd_video_id(stdout: str, path: Path) -> str:
    """`vidupd upload` prints: path, target, state, remote id, error (tab-separated)."""
    for line in stdout.splitlines():
        cols = line.split("\t")
        if len(cols) >= 4 and Path(cols[0]).resolve() == path.resolve():
            if cols[2] not in ("committed", "done"):
                raise BenchError(f"vidupd: job ended in state {cols[2]!r}: {line}")
            return cols[3]
    raise BenchError(f"vidupd printed no result line for {path}: {stdout[-2000:]!r}")


def add_json_option(ap: Any) -> None:
    """`--json FILE`: the run's summary also written there (benchmarks/report.py reads it)."""
    ap.add_argument("--json", type=Path, default=None, metavar="FILE",
                    help="also write the summary (the last line printed) to FILE as JSON, for benchmarks/report.py")


def emit_summary(summary: dict[str, Any], path: Path | None) -> None:
    """Print the machine-readable summary as one line; with --json, write it to `path` too."""
    text = json.dumps(summary, default=str)
    print(text, flush=True)
    if path is not None:
        path.write_text(text + "\n")

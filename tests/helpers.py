"""Shared test helpers: config writing, a real daemon subprocess, event log reading."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from vidupd.sandbox.common import UploadsJournal

ROOT = Path(__file__).resolve().parent.parent


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def write_config(path: Path, top: dict, targets: dict[str, dict], watches: list[dict], log: dict | None = None) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    lines.append("[log]")
    lines += [f"{k} = {toml_value(v)}" for k, v in (log or {}).items()]
    for name, body in targets.items():
        lines.append(f"[targets.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
    for w in watches:
        lines.append("[[watch]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in w.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def actions(path: Path, action: str) -> list[dict]:
    return [e for e in read_events(path) if e.get("event.action") == action]


def vidupd(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidupd", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=ROOT)


RUNNING: list["DaemonProcess"] = []  # conftest kills what a failed test left running


class DaemonProcess:
    """`vidupd run` as a real subprocess, with real signals."""

    def __init__(self, config: Path, events: Path, env: dict | None = None, stderr: Path | None = None,
                 command: list[str] | None = None):
        self.config = config
        self.command = command or [sys.executable, "-m", "vidupd"]  # a wrapper may go first (tests/fleet.py)
        self.events = events
        self.stderr_path = stderr or events.with_suffix(".stderr")
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    def start(self, wait_started: bool = True) -> "DaemonProcess":
        n_started = len(actions(self.events, "daemon.started"))
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([*self.command, "run", "-c", str(self.config)],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._stderr)
        RUNNING.append(self)
        if wait_started:
            wait_for(lambda: len(actions(self.events, "daemon.started")) > n_started or self.proc.poll() is not None,
                     30, what="daemon.started")
            assert self.proc.poll() is None, self.stderr()
        return self

    def stderr(self) -> str:
        p = self.stderr_path
        return p.read_text(errors="replace") if p.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        if self._stderr:
            self._stderr.close()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self._stderr:
            self._stderr.close()

    def __enter__(self) -> "DaemonProcess":
        if self.proc is not None and self.proc.poll() is None:
            return self  # `with d.start():` must not start a second daemon
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


FAST_RETRY = "[retry]\nattempts = 10\ninitial_backoff = 0.2\nmax_backoff = 2.0\n"


def append_fast_retry(config: Path) -> Path:
    """Append a [retry] table with short backoffs (for sandboxes that inject faults)."""
    with open(config, "a") as f:
        f.write(FAST_RETRY)
    return config


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def drop_random(path: Path, size: int) -> Path:
    """`size` random bytes written beside `path` under a name the watcher ignores, then renamed."""
    tmp = path.with_name("." + path.name + ".part")
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)
    return path


class SandboxSite:
    """The real daemon's folders under `root` (a watched outbox, state dir, event log) and the
    uploads journal of the sandboxes a subclass starts; the subclass writes the config with
    `write_config` and stops its sandboxes in `close`."""

    def __init__(self, root: Path):
        self.root = root
        self.outbox = root / "outbox"
        self.outbox.mkdir(exist_ok=True)
        self.state = root / "state"
        self.events = root / "events.jsonl"
        self.journal = UploadsJournal(root / "uploads.jsonl")
        self.config = root / "vidupd.toml"

    def write_config(self, workers: int, targets: dict[str, dict]) -> Path:
        """One watch of the outbox to every target, settling after 0.5 s, fast retries."""
        write_config(self.config, {"state_dir": str(self.state), "workers": workers}, targets,
                     [{"path": str(self.outbox), "targets": list(targets), "settle_seconds": 0.5}],
                     {"events": str(self.events)})
        return append_fast_retry(self.config)

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.config, self.events)

    def completed(self) -> list[dict]:
        return actions(self.events, "upload.completed")

    def close(self) -> None:
        raise NotImplementedError


class FakeClock:
    """Wall-clock seconds that move only when a test says so: timeouts without sleeping
    (the sandbox's Youku side takes a clock; OSS credentials keep real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def mount_tmpfs(path: Path, size: str) -> None:
    """A real tmpfs of `size` (e.g. "4m") at `path` (root); the test is skipped where it cannot be."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.decode().strip()}")


def fill(folder: Path) -> Path:
    """Write until ENOSPC; returns the filler file (the ballast: delete it to free the space)."""
    filler = folder / ".filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler

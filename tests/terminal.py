"""A real terminal for tests: a command run on a pseudo-terminal (the `pty` module), its
output collected as a person's terminal would show it."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import termios
import struct
import fcntl
import threading
import time
from pathlib import Path

from helpers import ROOT, RUNNING

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]")


def plain(text: str) -> str:
    """Terminal output without colour and cursor sequences, with \\r\\n as \\n."""
    return ANSI.sub("", text).replace("\r\n", "\n")


class PtyProcess:
    """`python -m vidupd ARGS` with its stdout and/or stderr on a pty of `columns` x `rows`.

    `on_tty` says which streams are the terminal ("stdout", "stderr" or both); the other one
    goes to a pipe, readable as `.piped` after `wait()`."""

    def __init__(self, *args: str, on_tty: tuple[str, ...] = ("stdout", "stderr"), columns: int = 120,
                 rows: int = 40, env: dict | None = None):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._master = master
        self._chunks: list[bytes] = []
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows), **(env or {})}
        for var in ("NO_COLOR", "FORCE_COLOR", "JOURNAL_STREAM", "NOTIFY_SOCKET"):
            env.pop(var, None)
        out = slave if "stdout" in on_tty else subprocess.PIPE
        err = slave if "stderr" in on_tty else subprocess.PIPE
        self.proc = subprocess.Popen([sys.executable, "-m", "vidupd", *args], stdin=slave, stdout=out, stderr=err,
                                     env=env, cwd=ROOT, start_new_session=True)
        RUNNING.append(self)  # conftest kills what a failed test left running
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.piped = b""

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every holder of the slave side closed it
                return
            if not data:
                return
            self._chunks.append(data)

    @property
    def screen(self) -> str:
        """Everything written to the terminal so far, raw (with escape sequences)."""
        return b"".join(self._chunks).decode("utf-8", errors="replace")

    def wait_for_text(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in plain(self.screen):
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"exited ({self.proc.returncode}) without showing {text!r}:\n{self.screen}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown within {timeout}s:\n{self.screen}")
            time.sleep(0.1)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        piped = self.proc.stdout or self.proc.stderr
        if piped is not None:
            self.piped = piped.read()
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        os.close(self._master)
        return rc

    # conftest's clean-up calls these on what a failed test left running
    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> "PtyProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill9()


def config_in(site_root: Path) -> Path:
    return site_root / "vidupd.toml"

"""Where the JSON event lines go: a file that survives logrotate, or stdout."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO

from . import secrets


def _stderr_note(text: str) -> None:
    try:
        sys.stderr.write(secrets.redact(text) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class EventSink:
    """Line-buffered output that survives logrotate: a file is reopened when it was moved
    away (checked at most once a second) or when `reopen()` is called (SIGHUP)."""

    def __init__(self, destination: str, current: "Callable[[], EventSink | None]" = lambda: None):
        self.destination = destination
        self._current = current  # the sink in use now (a reload may have replaced this one)
        self.lost = 0  # lines that could not be written since the last success
        self.lost_total = 0  # ... since this sink was opened (vidupd_event_log_lines_lost_total)
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self._ino: int | None = None
        self._checked = 0.0
        self._open()

    def _open(self) -> None:
        if self.destination == "-":
            self._stream = sys.stdout
            return
        os.makedirs(os.path.dirname(self.destination) or ".", exist_ok=True)
        fd = os.open(self.destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        self._ino = os.fstat(fd).st_ino

    def reopen(self) -> None:
        with self._lock:
            if self.destination != "-" and self._stream is not None:
                self._stream.close()
                self._open()

    def _rotated(self) -> bool:
        now = time.monotonic()
        if self.destination == "-" or now - self._checked < 1.0:
            return False
        self._checked = now
        try:
            return os.stat(self.destination).st_ino != self._ino
        except FileNotFoundError:
            return True

    def write(self, line: str) -> None:
        """Never raises: a full or broken log disk must not stop uploads (the ledger keeps
        the facts); lost lines are counted and reported on stderr (the journal)."""
        with self._lock:
            if self._stream is not None:
                try:
                    if self._rotated():
                        self._stream.close()
                        self._open()
                    assert self._stream is not None
                    self._stream.write(line + "\n")
                    self._stream.flush()
                    if self.lost:
                        _stderr_note(f"vidupd: event log writable again after losing {self.lost} line(s)")
                        self.lost = 0
                except (OSError, ValueError) as e:
                    self.lost += 1
                    self.lost_total += 1
                    if self.lost == 1:
                        _stderr_note(f"vidupd: cannot write the event log {self.destination}: {e}")
                return
        current = self._current()  # closed by a reload while this line was on its way: the new sink takes it
        if current is not None and current is not self:
            current.write(line)

    def close(self) -> None:
        with self._lock:
            if self._stream is not None and self._stream is not sys.stdout:
                self._stream.close()
            self._stream = None

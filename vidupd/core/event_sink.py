"""Where the JSON event lines go: a file that survives logrotate, or stdout."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO

from . import secrets
from .event_backlog import Backlog, Dropped


def _stderr_note(text: str) -> None:
    try:
        sys.stderr.write(secrets.redact(text) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class EventSink:
    """Line output that survives logrotate: a file is reopened when it was moved away
    (checked at most once a second) or when `reopen()` is called (SIGHUP).

    A line that cannot be written (a full log disk) is held back in a bounded backlog
    (vidupd.core.event_backlog) and written, in order, once the disk takes lines again:
    at the next event or the daemon's next `flush()`. `on_resumed(written, dropped)` is
    then called (outside the lock: it may emit) to say how many were late or lost."""

    def __init__(self, destination: str, current: "Callable[[], EventSink | None]" = lambda: None,
                 on_resumed: "Callable[[int, Dropped | None], None] | None" = None,
                 backlog: Backlog | None = None):
        self.destination = destination
        self._current = current  # the sink in use now (a reload may have replaced this one)
        self.on_resumed = on_resumed
        self.lost = 0  # lines that could not be written (at once) since the last success
        self.lost_total = 0  # ... dropped for good since this sink was opened (vidupd_event_log_lines_lost_total)
        self.backlog = backlog or Backlog()
        self._late = 0  # lines held back and written late, in this outage
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self._fd: int | None = None
        self._ino: int | None = None
        self._checked = 0.0
        self._open()

    def _open(self) -> None:
        if self.destination == "-":
            self._stream = sys.stdout
            return
        os.makedirs(os.path.dirname(self.destination) or ".", exist_ok=True)
        self._fd = os.open(self.destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._ino = os.fstat(self._fd).st_ino

    @property
    def _is_open(self) -> bool:
        return self._stream is not None or self._fd is not None

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def reopen(self) -> None:
        with self._lock:
            if self.destination != "-" and self._fd is not None:
                self._close_file()
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

    def _put(self, line: str) -> None:
        """Write one whole line or raise: a line cut short by ENOSPC is cut off again, so a
        reader (Filebeat) never sees half a line, and it is written whole by the next try."""
        if self._stream is not None:
            self._stream.write(line + "\n")
            self._stream.flush()
            return
        fd = self._fd
        assert fd is not None
        data = (line + "\n").encode("utf-8", "surrogateescape")
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError:
            if written:  # O_APPEND, one writer: the line's start is the end less what went
                os.ftruncate(fd, os.fstat(fd).st_size - written)
            raise

    def _drain(self) -> None:
        """Write what is held back, oldest first (raises at the first line refused)."""
        while (line := self.backlog.head()) is not None:
            self._put(line)
            self.backlog.pop()
            self._late += 1

    def write(self, line: str | None) -> None:
        """Never raises: a full or broken log disk must not stop uploads (the ledger keeps
        the facts); lines are held back and reported on stderr (the journal). None: only
        try to write what is held back (`flush`)."""
        report: tuple[int, Dropped | None] | None = None
        with self._lock:
            if self._is_open:
                if line is not None:
                    self.backlog.add(line)  # written at once below unless the disk refuses it
                if not len(self.backlog):
                    return
                try:
                    if self._rotated():
                        self._close_file()
                        self._open()
                    self._drain()
                except (OSError, ValueError) as e:
                    self.lost += 1 if line is not None else 0
                    if self.lost == 1 and line is not None:
                        _stderr_note(f"vidupd: cannot write the event log {self.destination}: {e}; "
                                     f"holding lines back (at most {self.backlog.max_lines})")
                else:
                    dropped = self.backlog.take_dropped()
                    late = self._late - (1 if line is not None else 0)
                    if late or dropped:
                        gone = dropped.total if dropped else 0
                        self.lost_total += gone
                        _stderr_note(f"vidupd: event log writable again; {late} line(s) written late, {gone} dropped")
                        report = (late, dropped)
                    self.lost = 0
                    self._late = 0
                if report is None:
                    return
        if report is not None:
            if self.on_resumed is not None:
                try:
                    self.on_resumed(*report)
                except Exception:  # the report must not break the line that brought it
                    pass
            return
        current = self._current()  # closed by a reload while this line was on its way: the new sink takes it
        if current is not None and current is not self and line is not None:
            current.write(line)

    def flush(self) -> None:
        """Try again to write what is held back (the daemon calls it once a tick)."""
        if len(self.backlog):
            self.write(None)

    def close(self) -> None:
        with self._lock:
            self._close_file()
            self._stream = None

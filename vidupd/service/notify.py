"""systemd notify protocol (sd_notify(3)) via systemd-python: READY, STATUS, WATCHDOG,
RELOADING, STOPPING.

Silent when NOTIFY_SOCKET is not set (not under systemd) or systemd-python is missing.

- READY=1 once start-up is complete, and again when a reload is complete.
- RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, microseconds) when a reload begins,
  as systemd.service(5) asks of Type=notify-reload services; systemd older than 253
  ignores MONOTONIC_USEC=. Every RELOADING=1 is followed by READY=1, failed reload or not.
- WATCHDOG=1 every WATCHDOG_USEC/2 (sd_watchdog_enabled(3) advice), only when
  WATCHDOG_PID is unset or names this process.
- STATUS= is one line; newlines would start a new assignment, so they are flattened.
"""

from __future__ import annotations

import os
import threading
import time

try:
    from systemd import daemon as _sd
except ImportError:  # pragma: no cover - systemd-python is a Linux dependency
    _sd = None


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (our parent, a wrapper)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 / 2 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET")) and _sd is not None
        self.watchdog_interval: float | None = _watchdog_interval() if self.enabled else None
        self._lock = threading.Lock()
        self._last_status: str | None = None

    def _send(self, text: str) -> None:
        if self.enabled:
            with self._lock:
                try:
                    _sd.notify(text)
                except OSError:  # a vanished socket must not take the daemon down
                    pass

    def ready(self, status: str) -> None:
        status = _one_line(status)
        self._last_status = status
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str, force: bool = False) -> None:
        """STATUS=; sent only when the line changed (unless `force`)."""
        status = _one_line(status)
        if status == self._last_status and not force:
            return
        self._last_status = status
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self, status: str = "reloading configuration") -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        status = _one_line(status)
        self._last_status = status
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        status = _one_line(status)
        self._last_status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

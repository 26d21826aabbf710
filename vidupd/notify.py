"""systemd notify protocol (READY, STATUS, WATCHDOG, RELOADING, STOPPING) via systemd-python.

Silent when NOTIFY_SOCKET is not set (not under systemd) or systemd-python is missing.
"""

from __future__ import annotations

import os
import time

try:
    from systemd import daemon as _sd
except ImportError:  # pragma: no cover - systemd-python is a Linux dependency
    _sd = None


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET")) and _sd is not None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if self.enabled and usec and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping at half the timeout, as sd_watchdog_enabled advises

    def _send(self, text: str) -> None:
        if self.enabled:
            _sd.notify(text)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        self._send(f"RELOADING=1\nMONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")

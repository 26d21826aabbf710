"""One bandwidth cap (`max_rate`) shared by every worker and every provider."""

from __future__ import annotations

import threading
import time


class Throttle:
    """Token bucket: `take(n)` blocks until n more bytes fit under the rate.

    A burst of up to one second's worth is allowed so small reads do not sleep each time.
    With rate None or 0 it never blocks. `take` wakes early when `cancel` is set.
    """

    def __init__(self, rate: int | None):
        self.rate = rate or 0
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int, cancel: threading.Event | None = None) -> None:
        if self.rate <= 0 or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - 1.0)  # allow one second of burst credit
            self._next = start + n / self.rate
            delay = self._next - now - 1.0
        if delay > 0:
            if cancel is not None:
                cancel.wait(delay)
            else:
                time.sleep(delay)

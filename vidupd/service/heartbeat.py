"""The daemon's heartbeat in the ledger (vidupd.ledger.hosts): every BEAT_EVERY seconds,
from the main loop's tick (no thread of its own), this process says it is alive and how
many uploads it runs; a clean stop says it stopped. `vidupd hosts` and `vidupd status`
read these rows, so an operator sees the whole fleet of a shared ledger.

A beat that fails (the ledger unreachable, busy, or refusing writes) is dropped: nothing is
logged here (the ledger's own failures are reported where the work needs the ledger), the
daemon never stops for it, and the next try is RETRY_AFTER seconds later rather than at the
next beat (a call to an unreachable server blocks the main loop until it times out; the
loop's other ledger reads already wait that long). A host whose beats keep failing is
shown as silent by the others, which is what it is to them.
"""

from __future__ import annotations

import time
from typing import Callable

from .. import __version__
from ..ledger import Ledger
from ..ledger.hosts import BEAT_EVERY, SILENT_AFTER

RETRY_AFTER = SILENT_AFTER / 2  # seconds after a failed beat: back in time not to be shown silent for it


class Heartbeat:
    """Beats `owner`'s row at most every `every` seconds, when ticked."""

    def __init__(self, ledger: Ledger, owner: str, running: Callable[[], int], every: float = BEAT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self._ledger, self._owner, self._running = ledger, owner, running
        self._every, self._clock = every, clock
        self._next = 0.0  # the first tick beats at once
        self.failures = 0  # beats dropped in a row (for tests and a debugger; never logged)

    def tick(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            self._ledger.beat(self._owner, running=self._running(), version=__version__)
        except Exception:  # the ledger failing (LedgerUnavailable, a locked SQLite): try again later
            self.failures += 1
            self._next = self._clock() + max(self._every, RETRY_AFTER)
        else:
            self.failures = 0

    def stopped(self) -> None:
        """A clean stop (leases given back): the row says `stopped`; best effort."""
        try:
            self._ledger.host_stopped(self._owner)
        except Exception:
            pass

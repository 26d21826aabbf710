"""Whose turn the periodic full rescan is, when several hosts watch one shared outbox.

Every host polls its watches (`poll = true`: NFS gives no inotify events), which is the
intake; the full rescan every `rescan_interval` is only the safety net for what a poll or
inotify missed, and on a shared folder one host's rescan finds a missed file for the whole
fleet (the ledger is shared). So each round the first host to ask does it and the others
skip it: under the ledger's non-blocking `try_exclusive("rescan")` a host reads when the
fleet's last full rescan was (a shared value, on the ledger's clock) and takes the round if
it is at least 90% of an interval ago. A SQLite ledger has one daemon: its turn always.
A ledger that does not answer does not hold the safety net back: the host rescans.
"""

from __future__ import annotations

from typing import Callable

from ..ledger import Ledger, LedgerError

KEY = "rescan.last"  # the shared value: {"at": ledger clock, "host": lease owner id}
SLACK = 0.9  # a host whose timer runs a little early still takes the round it is due


class RescanTurns:
    """Called: whether this host does this round's full rescan (see the module)."""

    def __init__(self, ledger: Ledger, interval: Callable[[], float], host: str):
        self._ledger = ledger
        self._interval = interval
        self._host = host

    def __call__(self) -> bool:
        try:
            with self._ledger.try_exclusive("rescan") as mine:
                return mine and self._take()
        except Exception:  # the ledger does not answer: the safety net must not depend on it
            return True

    def _take(self) -> bool:
        now = self._ledger.store.now()
        last = self._ledger.shared_get(KEY)
        if last is not None and now - float(last.data.get("at", 0)) < SLACK * self._interval():
            return False
        try:
            self._ledger.shared_put(KEY, last.generation if last else 0, {"at": now, "host": self._host})
        except LedgerError:  # another host took this round meanwhile
            return False
        return True

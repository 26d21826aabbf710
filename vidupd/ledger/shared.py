"""The ledger as the providers' `SharedStore`: values every process of one ledger sees,
changed under one lock that excludes the other processes too.

The lock is a flock on `state_dir/shared.lock`, not the SQLite write lock: a change may
wait on the network (a token refresh, bounded by its request timeout), and holding the
database's write lock that long would stall every other ledger write of the daemon. The
write itself is a compare-and-set on the row's generation, so even a writer that bypassed
the lock could not silently overwrite a newer value.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..core.model import SharedValue
from ..core.state_lock import FileLock
from .sqlite import Ledger

LOCK_FILE = "shared.lock"


class LedgerShared:
    """`SharedStore` (vidupd.providers.base) backed by the ledger's `shared` table."""

    def __init__(self, ledger: Ledger):
        self._ledger = ledger
        self._lock = FileLock(ledger.path.with_name(LOCK_FILE))

    def load(self, key: str) -> SharedValue | None:
        return self._ledger.shared_get(key)

    def update(self, key: str,
               change: Callable[[SharedValue | None], Mapping[str, Any] | None]) -> SharedValue | None:
        with self._lock:
            current = self._ledger.shared_get(key)
            new = change(current)
            if new is None:
                return current
            return self._ledger.shared_put(key, current.generation if current else 0, new)

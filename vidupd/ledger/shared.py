"""The ledger as the providers' `SharedStore`: values every process of one ledger sees
(every host of a shared one), changed under one lock that excludes the other processes too.

The lock is the store's `exclusive` section, not a write transaction: a change may wait on
the network (a token refresh, bounded by its request timeout), and holding the database's
write lock that long would stall every other ledger write of the daemon. On SQLite it is a
flock on `state_dir/shared.lock`; on PostgreSQL an advisory lock, so Youku's rotating
refresh token is refreshed once across hosts. The write itself is a compare-and-set on the
row's generation, so even a writer that bypassed the lock could not silently overwrite a
newer value.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..core.model import SharedValue
from .sqlite import Ledger

LOCK_NAME = "shared"  # SQLite: state_dir/shared.lock


class LedgerShared:
    """`SharedStore` (vidupd.providers.base) backed by the ledger's `shared` table."""

    def __init__(self, ledger: Ledger):
        self._ledger = ledger

    def load(self, key: str) -> SharedValue | None:
        return self._ledger.shared_get(key)

    def update(self, key: str,
               change: Callable[[SharedValue | None], Mapping[str, Any] | None]) -> SharedValue | None:
        with self._ledger.exclusive(LOCK_NAME):
            current = self._ledger.shared_get(key)
            new = change(current)
            if new is None:
                return current
            return self._ledger.shared_put(key, current.generation if current else 0, new)

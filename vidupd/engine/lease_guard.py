"""Keeping the leases of the jobs a pool runs, and stopping its uploads in time when it cannot.

Every claimed job is this host's for `[ledger] lease` seconds; renewals every quarter of it
keep it so. A host cut off from the ledger (a server down, a network partition) cannot
renew, and once its leases have run out another host claims the jobs and resumes the same
platform uploads from their shared checkpoints. So the cut-off host must have stopped
sending by then: when half a lease has passed since the last renewal that succeeded
(counted from when it was sent, which is earlier than the ledger wrote it), every running
upload is asked to stop (`expiring`: the pool's LEASE stop, no cancel, no abandon, the
platform upload left resumable for the next holder).

The renewals run on a thread of their own and the half-lease check on another that only
reads the clock: a ledger call stuck on a dead connection (up to the PostgreSQL store's
timeouts) delays neither. `ledger.unreachable` is said once per outage, whoever noticed it
(a renewal, a claim, a progress write: `failed`), `ledger.reachable` when a renewal (or,
with nothing to renew, a probe) works again; while the leases are in doubt the pool claims
nothing (`claims_ok`).
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Callable

from ..core import events
from .poll import describe

def disk_full(e: BaseException) -> bool:
    """Whether `e` says the ledger's disk is full (SQLite's SQLITE_FULL, ENOSPC, PostgreSQL's 53100)."""
    text = str(e).lower()
    return (getattr(e, "errno", None) == errno.ENOSPC or "disk is full" in text or "no space left" in text
            or getattr(e, "sqlstate", None) == "53100")


Renew = Callable[[list[int]], list[int]]  # running job ids -> those taken over (a probe when empty)


class LeaseGuard:
    """Renews a pool's leases and stops its uploads when renewals have failed too long."""

    def __init__(self, lease: float, renew: Renew, held: Callable[[], list[int]], lost: Callable[[int], None],
                 expiring: Callable[[float], None], *, clock: Callable[[], float] = time.monotonic,
                 where: str = "the ledger", is_failure: Callable[[BaseException], bool] = lambda e: True):
        """`renew(ids)` renews (a cheap probe of the ledger when `ids` is empty), `held()` the
        running job ids, `lost(id)` a job taken over, `expiring(seconds since the last good
        renewal)` stops every running upload (called on each check while overdue: idempotent);
        `is_failure(e)`: whether `e` is the ledger itself failing (Ledger.failure)."""
        self.lease = lease
        self._is_failure = is_failure
        self._renew, self._held, self._lost, self._expiring = renew, held, lost, expiring
        self._clock = clock
        self._where = where
        self._lock = threading.Lock()
        self._last_good = clock()  # when the last renewal that worked was sent
        self._last_try = self._last_good
        self._down_since: float | None = None  # the outage in progress (ledger.unreachable said)
        self._overdue = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- state ---------------------------------------------------------------------------------
    @property
    def reachable(self) -> bool:
        with self._lock:
            return self._down_since is None

    def claims_ok(self) -> bool:
        """Whether new work may be claimed: the ledger answers and the leases held are fresh."""
        with self._lock:
            return self._down_since is None and not self._overdue

    def failed(self, e: BaseException) -> None:
        """A ledger call failed (the database, not one job's values): once per outage, say so."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = self._clock()
        full = disk_full(e)
        what = "takes no writes: its disk is full" if full else "does not answer"
        events.emit("ledger.unreachable", f"{self._where} {what} ({describe(e)}); running uploads stop "
                    f"{self.lease / 2:g} s after the last lease renewal unless it answers again, and nothing new "
                    "is claimed or queued meanwhile", level="warning", error=describe(e), error_type=type(e).__name__,
                    lease_seconds=self.lease, reason="disk_full" if full else None)

    def noticed(self, e: BaseException) -> bool:
        """Whether `e`, from any ledger call of the pool, is the ledger failing; if so it
        counts towards the outage (`failed`) and the caller carries on without raising."""
        if not self._is_failure(e):
            return False
        self.failed(e)
        return True

    def _reached(self, sent: float) -> None:
        with self._lock:
            self._last_good = max(self._last_good, sent)
            self._overdue = False
            down, self._down_since = self._down_since, None
        if down is not None:
            events.emit("ledger.reachable", f"{self._where} answers again; claiming work again",
                        down_seconds=round(max(0.0, self._clock() - down), 3))

    # -- the two steps (the threads call them; tests call them with a fake clock) -------------------
    def renew_due(self) -> bool:
        """A renewal every quarter lease; while the ledger is down, a try at least every 5 s."""
        every = self.lease / 4 if self.reachable else min(self.lease / 4, 5.0)
        return self._clock() - self._last_try >= every

    def renew_once(self) -> None:
        """Renew the running jobs' leases; report what was taken over, or the failure."""
        ids = self._held()
        sent = self._last_try = self._clock()
        if not ids and self.reachable:
            self._reached(sent)  # nothing held, nothing at risk: no need to ask the ledger
            return
        try:
            taken = self._renew(ids)
        except Exception as e:  # LedgerUnavailable, or any other database error: the leases are in doubt
            self.failed(e)
            return
        self._reached(sent)
        for job_id in taken:
            self._lost(job_id)

    def check(self) -> bool:
        """Half a lease without a good renewal: stop the uploads (again and again while
        overdue, for one that started meanwhile). Returns whether it was overdue."""
        with self._lock:
            waited = self._clock() - self._last_good
            if waited < self.lease / 2:
                return False
            self._overdue = True
        self._expiring(waited)
        return True

    # -- threads -------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._last_good = self._last_try = self._clock()  # the pool's claims start now
        self._stop.clear()
        self._threads = [threading.Thread(target=self._loop, args=(step,), name=name, daemon=True)
                         for step, name in ((self._renewing, "vidupd-lease-renew"), (self.check, "vidupd-lease-watch"))]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)

    def _renewing(self) -> None:
        if self.renew_due():
            self.renew_once()

    def _loop(self, step: Callable[[], object]) -> None:
        while not self._stop.wait(min(1.0, self.lease / 20)):
            try:
                step()
            except Exception as e:  # a bug in a callback: say so, keep guarding
                events.emit("daemon.error", f"lease guard: {describe(e)}", level="error", error=describe(e),
                            error_type=type(e).__name__)

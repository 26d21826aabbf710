"""Ledger housekeeping: finished jobs older than `retain_days` are pruned in the background,
so the ledger (and `vidupd status --all`) does not grow forever; the same pass drops the
heartbeat rows of daemons not heard from for a week (vidupd.ledger.hosts).

A finished job (done, skipped) is forgotten only once its file version has left its path
(moved or deleted by `after_upload`, or by someone): while the file sits in a watched folder
(`after_upload = "keep"`), its job is what tells a rescan that it was uploaded, so it stays.
Forgotten jobs keep their record in the event log (`upload.completed` with the remote id);
the duplicate-content check (`skip_duplicates`) knows only the content of jobs still in the
ledger, i.e. uploaded within the last `retain_days`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from ..core import events
from ..core.model import FileIdentity
from ..ledger import Job, Ledger

PRUNE_EVERY = 3600.0  # seconds between passes (the first runs at start-up)
BATCH = 500  # jobs looked at per ledger transaction


def _still_there(job: Job) -> bool:
    """Whether the job's file version is still at its path (a rescan would offer it again)."""
    try:
        return FileIdentity.of(os.stat(job.path)) == job.identity
    except OSError:
        return False


class Housekeeper:
    """A daemon thread pruning the ledger every `every` seconds; `retain_days()` is read at
    each pass (a reload may change it; 0 keeps everything)."""

    def __init__(self, ledger: Ledger, retain_days: Callable[[], float], every: float = PRUNE_EVERY,
                 clock: Callable[[], float] = time.time):
        self._ledger = ledger
        self._retain_days = retain_days
        self._every = every
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidupd-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune()
                self._ledger.prune_hosts()  # heartbeat rows of daemons gone for a week (vidupd.ledger.hosts)
            except Exception as e:  # housekeeping must never take the daemon down; next pass tries again
                events.emit("daemon.error", f"ledger housekeeping: {type(e).__name__}: {e}", level="error",
                            outcome="failure", error=str(e), error_type=type(e).__name__)
            self._stop.wait(self._every)

    def prune(self) -> int:
        """One pass: forget what is finished, older than retain_days and gone from its path."""
        days = self._retain_days()
        if days <= 0:
            return 0
        cutoff = self._clock() - days * 86400
        forgotten = kept = after = 0
        while not self._stop.is_set():
            batch = self._ledger.finished_before(cutoff, BATCH, after=after)
            if not batch:
                break
            gone = [j.id for j in batch if not _still_there(j)]
            kept += len(batch) - len(gone)
            after = batch[-1].id
            forgotten += self._ledger.forget(gone, cutoff)
            if len(batch) < BATCH:
                break
            self._stop.wait(0.05)  # let the workers' transactions in between batches
        if forgotten:
            events.emit("ledger.pruned", f"ledger: forgot {forgotten} finished job(s) older than {days:g} day(s); "
                        "their uploads stay in the event log", pruned=forgotten, kept_in_place=kept or None,
                        retain_days=days)
        return forgotten

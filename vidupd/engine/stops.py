"""Why the pool asked a running upload to stop, and what a pause covers.

A running upload is stopped through its cancel signal for one of three reasons: the pool
is stopping (SIGTERM), its target or watch was paused (`vidupd pause`), or an operator
cancelled the job (`vidupd cancel`, seen in the ledger). The provider ends the same way
each time (UploadCancelled); the reason decides the outcome: Interrupted (queued again
from its checkpoint, no attempt counted) for the first two, Cancelled for the last.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Collection

from ..ledger import Job

PAUSED, CANCEL = "paused", "cancel"


@dataclass(frozen=True)
class PauseScope:
    """What is paused: everything, or uploads to these targets / from these watches."""

    everything: bool = False
    targets: frozenset[str] = field(default_factory=frozenset)
    watches: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, everything: bool, targets: Collection[str], watches: Collection[str]) -> "PauseScope":
        return cls(everything, frozenset(targets), frozenset(watches))

    def covers(self, job: Job) -> bool:
        return self.everything or job.target in self.targets or (job.watch is not None and job.watch in self.watches)


class StopReasons:
    """The pause scope in force and, per running job, why it was asked to stop (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scope = PauseScope()
        self._why: dict[int, str] = {}

    def mark(self, job_id: int, reason: str) -> None:
        """Cancelling wins over pausing; the first pause reason stays."""
        with self._lock:
            if reason == CANCEL or job_id not in self._why:
                self._why[job_id] = reason

    def reason(self, job_id: int) -> str | None:
        with self._lock:
            return self._why.get(job_id)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._why.pop(job_id, None)

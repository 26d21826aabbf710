"""Why the pool asked a running upload to stop, and what a pause covers.

A running upload is stopped through its cancel signal for one of these reasons: the pool
is stopping (SIGTERM), its target or watch was paused (`vidupd pause`), an operator
cancelled the job (`vidupd cancel`, seen in the ledger), the host's leases are about to run
out because the ledger does not answer (LEASE, vidupd.engine.lease_guard), or the job was
taken over by another host (LOST). The provider ends the same way each time
(UploadCancelled); the reason decides the outcome: Interrupted (queued again from its
checkpoint, no attempt counted) for the first two and LEASE (which must not fail when the
ledger cannot take it), Cancelled for CANCEL, no write at all for LOST. Neither LEASE nor
LOST may abandon the platform upload: the host taking the job over resumes it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Collection

from ..ledger import Job

PAUSED, CANCEL, LEASE, LOST = "paused", "cancel", "lease", "lost"
_RANK = {LOST: 3, LEASE: 2, CANCEL: 1}  # a higher reason replaces a lower one; among pauses the first stays


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
        """A lost lease wins over an expiring one, which wins over cancelling, which wins over
        pausing (an upload whose lease is in doubt must not abandon what another host resumes)."""
        with self._lock:
            now = self._why.get(job_id)
            if now is None or _RANK.get(reason, 0) > _RANK.get(now, 0):
                self._why[job_id] = reason

    def reason(self, job_id: int) -> str | None:
        with self._lock:
            return self._why.get(job_id)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._why.pop(job_id, None)

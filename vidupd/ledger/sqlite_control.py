"""The ledger's operator controls (every store): `vidupd cancel` (fenced through leases) and
`vidupd forget` (the pruning delete, see LedgerQueries.forget).

Cancelling is a request recorded on the job's row (`cancel_requested`), never a write over
another process's lease: the lease holder (the daemon's pool, perhaps on another host) sees
the request at its next check (`cancels_wanted`, every dispatcher tick), stops the transfer,
abandons what the platform holds and applies `Cancelled` under its own lease. A job nobody
holds is taken by the cancel command itself (`take_for_cancel`, a lease like a claim's) and
cancelled there. A holder that died leaves its lease to expire; whoever claims the job next
finds the request and cancels it instead of uploading.
"""

from __future__ import annotations

from typing import Iterable

from .model import CANCELLABLE, Job
from .sqlite_claim import SqliteClaims

_CANCELLABLE_SQL = ",".join(f"'{s}'" for s in CANCELLABLE)


class SqliteControl(SqliteClaims):
    """Cancel requests and their fenced take-over."""

    def request_cancel(self, job_ids: Iterable[int]) -> dict[int, Job | None]:
        """Mark each job that can still be cancelled (queued, uploading, failed, attention) as
        cancel-requested (operator write, unfenced, idempotent: the first request's time is
        kept). Returns every id with its job as now stored (None: no such job), so the caller
        can tell why one was not marked (done, committed, skipped, cancelled)."""
        ids = sorted(set(job_ids))
        out: dict[int, Job | None] = {}
        now = self._now()
        with self._tx() as db:
            for job_id in ids:
                db.execute(f"UPDATE jobs SET cancel_requested=coalesce(cancel_requested, ?) WHERE id=? "
                           f"AND state IN ({_CANCELLABLE_SQL})", (now, job_id))
                row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
                out[job_id] = Job.from_row(row) if row is not None else None
        return out

    def take_for_cancel(self, owner: str, job_id: int, lease_seconds: float) -> Job | None:
        """Lease a cancel-requested job that nobody holds (no lease, or an expired one), as a
        claim does (the generation is bumped; a queued job becomes uploading, so no pool
        claims it meanwhile); None when someone holds it or it is no longer cancellable.
        The caller abandons the upload and applies Cancelled with this lease."""
        now = self._now()
        with self._tx() as db:
            row = db.execute(
                f"UPDATE jobs SET lease_owner=?, lease_until=?, lease_gen=lease_gen+1, updated=?, "
                f"state=CASE WHEN state='queued' THEN 'uploading' ELSE state END "
                f"WHERE id=? AND cancel_requested IS NOT NULL AND state IN ({_CANCELLABLE_SQL}) "
                f"AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until<?) RETURNING *",
                (owner, now + lease_seconds, now, job_id, now)).fetchone()
        return Job.from_row(row) if row is not None else None

    def cancels_wanted(self, owner: str, job_ids: Iterable[int]) -> list[int]:
        """Of the jobs `owner` holds among `job_ids`, those an operator asked to cancel (read
        only; by primary key, so a pool can ask every tick)."""
        ids = sorted(set(job_ids))
        if not ids:
            return []
        rows = self._all(f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(ids))}) AND lease_owner=? "
                         "AND cancel_requested IS NOT NULL", (*ids, owner))
        return [int(r[0]) for r in rows]

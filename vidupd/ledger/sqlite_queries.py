"""The ledger's read queries (`status`, the dispatcher's wake-ups) and its housekeeping
(pruning finished jobs), for every store: no transitions here, see vidupd.ledger.sqlite."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection, Iterable

from .base import LedgerBase
from .model import CLOSED, HELD, Job


class LedgerQueries(LedgerBase):
    """Queries without side effects, and the one housekeeping write (`forget`)."""

    def uploads_of_path(self, path: Path) -> int:
        """How many jobs of this path were (or are to be) uploaded, i.e. not skipped."""
        return int(self._one("SELECT count(*) FROM jobs WHERE path=? AND state<>'skipped'", (self._p(path),))[0])

    def jobs(self, states: Iterable[str] | None = None, limit: int | None = None,
             updated_since: float | None = None) -> list[Job]:
        """Jobs by id, only those in `states` and/or changed at or after `updated_since` (epoch s)."""
        sql = "SELECT * FROM jobs"
        where: list[str] = []
        args: list[Any] = []
        if states:
            st = list(states)
            where.append(f"state IN ({','.join('?' * len(st))})")
            args += st
        if updated_since is not None:
            where.append("updated>=?")
            args.append(updated_since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [Job.from_row(r) for r in self._all(sql, args)]

    def related(self, target: str, path: Path, size: int) -> list[Job]:
        """Jobs of `target` for `path`, or of `size` (the same version renamed, a possible
        twin), by id: what a dry run compares a file with. Read-only; two indexed lookups."""
        rows = self._all("SELECT * FROM jobs WHERE path=? AND target=? UNION SELECT * FROM jobs WHERE target=? "
                         "AND size=? ORDER BY id", (self._p(path), target, target, size))
        return [Job.from_row(r) for r in rows]

    # -- housekeeping ------------------------------------------------------------------------
    def finished_before(self, cutoff: float, limit: int = 500, after: int = 0) -> list[Job]:
        """Closed jobs (done, skipped, cancelled) last changed before `cutoff` (epoch s), by id
        from `after` on (paging): the candidates for pruning. Read-only; the caller decides."""
        rows = self._all(f"SELECT * FROM jobs WHERE state IN ({_marks(CLOSED)}) AND updated<? AND id>? "
                         "ORDER BY id LIMIT ?", (*CLOSED, cutoff, after, limit))
        return [Job.from_row(r) for r in rows]

    def forget(self, job_ids: Iterable[int], cutoff: float | None, states: Collection[str] = CLOSED) -> int:
        """Delete these jobs (and their checkpoints) if they are still in `states` and
        unchanged since before `cutoff` (None: whenever; `vidupd forget`); returns how many
        went. A job that moved on meanwhile (`vidupd retry`) stays."""
        ids = sorted(set(job_ids))
        if not ids or not states:
            return 0
        marks = ",".join("?" * len(ids))
        with self._tx() as db:
            gone = [r[0] for r in db.execute(f"SELECT id FROM jobs WHERE id IN ({marks}) AND state IN "
                                             f"({_marks(states)}) AND updated<?{self._dialect.lock_row}",
                                             (*ids, *states, 1e300 if cutoff is None else cutoff))]
            if not gone:
                return 0
            keep = ",".join("?" * len(gone))
            db.execute(f"DELETE FROM checkpoints WHERE job_id IN ({keep})", gone)
            db.execute(f"DELETE FROM jobs WHERE id IN ({keep})", gone)
        return len(gone)

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._all("SELECT state, count(*) FROM jobs GROUP BY state")}

    def next_wakeup(self) -> float | None:
        """The earliest future time a waiting job (retry or status poll) becomes runnable."""
        now = self._now()
        ahead = now - time.time()  # the ledger's clock may be another machine's: answer in ours
        # one statement (the dispatcher asks every idle tick), each state's minimum one index seek
        each = "SELECT min(not_before) AS t FROM jobs WHERE state=? AND not_before>? AND not_before<?"
        row = self._one(f"SELECT min(t) FROM ({each} UNION ALL {each}) AS due", ("queued", now, HELD,
                                                                                "committed", now, HELD))
        return row[0] - ahead if row and row[0] is not None else None


def _marks(values: Collection[str]) -> str:
    return ",".join("?" * len(values))

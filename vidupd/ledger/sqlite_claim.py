"""Claiming jobs from the ledger (every store), and changing the order of waiting ones
(`prioritize`). The order itself is vidupd.ledger.claim_order. On a shared store each
candidate query locks what it picks and skips rows another host is claiming (the dialect's
FOR UPDATE SKIP LOCKED), so two hosts never claim one job."""

from __future__ import annotations

from typing import Collection, Iterable

from .claim_order import DEFAULT_ORDER, index_name, order_by, sort_key
from .model import Job
from .sqlite_queries import LedgerQueries
from .store import Conn

_GROUPS = "jobs_queue_oldest"  # any jobs_queue_* index: its (state, target, watch) prefix lists the groups


class SqliteClaims(LedgerQueries):
    """Claims (atomic leases over a bounded window) and priorities."""

    def claim(self, owner: str, limit: int, lease_seconds: float, ids: Iterable[int] | None = None,
              poll_limit: int | None = None, *, order: str = DEFAULT_ORDER, skip_targets: Collection[str] = (),
              skip_watches: Collection[str] = ()) -> list[Job]:
        """Atomically lease up to `limit` runnable jobs: first uploads whose lease expired
        (their process died; oldest first), then queued jobs whose `not_before` has passed,
        by priority (higher first), then `order` (claim_order.ORDERS), then id. Committed
        jobs awaiting a status poll come oldest first; with `poll_limit`, `limit` counts
        uploads only and up to `poll_limit` polls are claimed besides, in the same
        transaction (the pool runs polls on their own threads). `ids` restricts the choice
        (one-shot uploads). Uploads to `skip_targets` or from `skip_watches` are not
        claimed (a target running its `workers`, paused work); their polls still are.

        Cost O(limit), not O(queue length): expired leases and polls walk (state, id);
        queued jobs are read per (target, watch) group from the head of the order's index
        and merged, so 100,000 waiting jobs, or a skipped group's, do not slow a claim."""
        now = self._now()
        only = sorted(set(ids)) if ids is not None else None
        if only is not None and not only:
            return []
        skip_t, skip_w = sorted(set(skip_targets)), sorted(set(skip_watches))
        with self._tx() as db:
            chosen = self._expired(db, now, limit, only, skip_t, skip_w)
            polls: list[int] = []
            if poll_limit is None:  # polls share `limit`, ahead of queued uploads (as always)
                chosen += self._polls(db, now, limit - len(chosen), only)
            elif poll_limit > 0:
                polls = self._polls(db, now, poll_limit, only)
            if limit - len(chosen) > 0:
                chosen += self._queued(db, now, limit - len(chosen), order, only, skip_t, skip_w)
            chosen += polls
            if not chosen:
                return []
            rows = db.execute(
                f"UPDATE jobs SET lease_owner=?, lease_until=?, updated=?, lease_gen=lease_gen+1, "
                f"state=CASE WHEN state='queued' THEN 'uploading' ELSE state END "
                f"WHERE id IN ({','.join('?' * len(chosen))}) RETURNING *",
                (owner, now + lease_seconds, now, *chosen)).fetchall()
        return sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)

    @staticmethod
    def _restrict(only: list[int] | None, skip_t: list[str], skip_w: list[str]) -> tuple[str, tuple]:
        sql, args = "", ()
        if only:
            sql += f" AND id IN ({','.join('?' * len(only))})"
            args += tuple(only)
        if skip_t:
            sql += f" AND target NOT IN ({','.join('?' * len(skip_t))})"
            args += tuple(skip_t)
        if skip_w:
            sql += f" AND (watch IS NULL OR watch NOT IN ({','.join('?' * len(skip_w))}))"
            args += tuple(skip_w)
        return sql, args

    def _expired(self, db: Conn, now: float, room: int, only: list[int] | None, skip_t: list[str],
                 skip_w: list[str]) -> list[int]:
        if room <= 0:
            return []
        # INDEXED BY: walk (state, id) in order and stop at `room` (few rows are uploading)
        extra, args = self._restrict(only, skip_t, skip_w)
        return [r[0] for r in db.execute(
            f"SELECT id FROM jobs {self._dialect.indexed('jobs_claim')} WHERE state='uploading' AND (lease_until "
            f"IS NULL OR lease_until<?){extra} ORDER BY id LIMIT ?{self._dialect.skip_locked}", (now, *args, room))]

    def _polls(self, db: Conn, now: float, room: int, only: list[int] | None) -> list[int]:
        if room <= 0:
            return []
        extra = f" AND id IN ({','.join('?' * len(only))})" if only else ""
        return [r[0] for r in db.execute(
            f"SELECT id FROM jobs {self._dialect.indexed('jobs_claim')} WHERE state='committed' AND not_before<=? "
            f"AND lease_owner IS NULL{extra} ORDER BY id LIMIT ?{self._dialect.skip_locked}",
            (now, *(only or ()), room))]

    def _queued(self, db: Conn, now: float, room: int, order: str, only: list[int] | None,
                skip_t: list[str], skip_w: list[str]) -> list[int]:
        cols = "id, priority, size, path"
        if only:  # a one-shot's few ids: looked up by primary key and sorted, whatever the queue holds
            extra, args = self._restrict(only, skip_t, skip_w)
            rows = db.execute(f"SELECT {cols} FROM jobs WHERE state='queued' AND not_before<=?{extra}"
                              f"{self._dialect.skip_locked}", (now, *args)).fetchall()
        else:
            rows = []
            for target, watch in self._groups(db):
                if target in skip_t or (watch is not None and watch in skip_w):
                    continue
                same_watch = "watch IS NULL" if watch is None else "watch=?"  # `IS ?` is SQLite's only
                rows += db.execute(
                    f"SELECT {cols} FROM jobs {self._dialect.indexed(index_name(order))} WHERE state='queued' "
                    f"AND target=? AND {same_watch} AND not_before<=? ORDER BY {order_by(order)} LIMIT ?"
                    f"{self._dialect.skip_locked}", (target, *(() if watch is None else (watch,)), now, room)).fetchall()
        return [r["id"] for r in sorted(rows, key=sort_key(order))[:room]]

    def _groups(self, db: Conn) -> list[tuple[str, str | None]]:
        """The (target, watch) pairs that have queued jobs, by seeking the index from one
        pair to the next (a skip scan): O(pairs * log n), whatever the queue length."""
        found: list[tuple[str, str | None]] = []
        head = f"SELECT target, watch FROM jobs {self._dialect.indexed(_GROUPS)} WHERE state='queued'"
        nulls = self._dialect.nulls_first  # a NULL watch (one-shot uploads) is the first group of its target
        row = db.execute(f"{head} ORDER BY target, watch{nulls} LIMIT 1").fetchone()
        while row is not None:
            target, watch = row[0], row[1]
            found.append((target, watch))
            after = "watch IS NOT NULL" if watch is None else "watch>?"
            # the next watch of this target and the first of the next target: two seeks, one statement
            rows = db.execute(f"SELECT * FROM ({head} AND target=? AND {after} ORDER BY watch{nulls} LIMIT 1) AS w "
                              f"UNION ALL SELECT * FROM ({head} AND target>? ORDER BY target, watch{nulls} LIMIT 1) "
                              "AS t", (target, *(() if watch is None else (watch,)), target)).fetchall()
            row = next((r for r in rows if r[0] == target), rows[0] if rows else None)
        return found

    # -- order of waiting jobs -----------------------------------------------------------------
    def prioritize(self, job_ids: Iterable[int], priority: int | None = None) -> tuple[int, list[int]]:
        """Give waiting (queued) jobs `priority`; None: one above the highest priority any
        job in the ledger has, so they are claimed next. Returns (the priority given, the
        ids that were not changed: unknown, or not waiting). One transaction."""
        ids = sorted(set(job_ids))
        with self._tx() as db:
            if priority is None:
                top = db.execute("SELECT max(priority) FROM jobs").fetchone()[0]
                priority = int(top or 0) + 1
            refused = []
            for job_id in ids:
                n = db.execute("UPDATE jobs SET priority=?, updated=? WHERE id=? AND state='queued'",
                               (priority, self._now(), job_id)).rowcount
                if not n:
                    refused.append(job_id)
        return priority, refused

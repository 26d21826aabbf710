"""The ledger: jobs, claims, leases and transitions, written once for every store
(vidupd.ledger.store: SQLite under state_dir by default, PostgreSQL for a fleet). Workers
claim jobs with one transaction that picks candidates (skipping rows another host is
claiming) and sets a lease (owner, expiry, generation) with UPDATE ... RETURNING; every
worker transition is `apply`, fenced by `_hold` (see the package docstring). The file keeps
its historical name: SQLite was its only store."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable

from ..core.fsnames import path_from_db, safe_text
from ..core.model import FileIdentity, Metadata
from .hosts import LedgerHosts, owner_parts
from .model import FINISHED, HELD, UNHASHED, Intent, Job, LedgerError, Offer, metadata_json
from .outcomes import Event, Outcome
from .sqlite_control import SqliteControl
from .store import Conn


def lease_owner_id() -> str:
    """host:pid:start: unique per process, and tells whether a lease holder is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


def _version(identity: FileIdentity) -> tuple[int, int, int]:
    """The columns (inode, size, mtime_ns) that, with the path, match a file version: the
    same on every host (core.model.FileIdentity says why the device number is not one)."""
    return identity.inode, identity.size, identity.mtime_ns


def _owner_alive(owner: str) -> bool:
    host, pid = owner_parts(owner)
    if host != socket.gethostname():
        return True  # cannot tell for another host: wait for the lease to expire
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ledger(SqliteControl, LedgerHosts):
    """Thread-safe access to the ledger: jobs, claims, leases and transitions (and the
    hosts' heartbeats, vidupd.ledger.hosts).
    `Ledger(state_dir)` is the SQLite ledger; `Ledger(store=...)` any other store."""

    # -- intake --------------------------------------------------------------------------
    def offer(self, path: Path, watch: str | None, targets: Iterable[tuple[str, str]],
              identity: FileIdentity, metadata: Metadata) -> list[Offer]:
        """A stable file was seen. Per (target, kind): create, re-queue or recognise its job.

        Never queues a file version already handled for a target, including after a rename
        within the watched tree (same inode, size and mtime at a new path, the old one gone).
        A version is its path, inode, size and mtime_ns, never the device number, which
        differs between the hosts of a shared outbox (see core.model.FileIdentity): two
        hosts that notice one file make one job.
        """
        return self.offer_many([Intent(path, watch, tuple(targets), identity, metadata)])

    def offer_many(self, intents: Iterable["Intent"]) -> list[Offer]:
        """`offer` for many files in one transaction (a burst of drops costs one fsync)."""
        now = self._now()
        out: list[Offer] = []
        with self._tx() as db:
            self._store.serialize(db, "offer")  # two hosts seeing one file version make one job
            for it in intents:
                out += self._offer_one(db, now, it)
        return out

    def _offer_one(self, db: Conn, now: float, it: "Intent") -> list[Offer]:
        path, watch, identity = it.path, it.watch, it.identity
        out: list[Offer] = []
        meta = metadata_json(it.metadata)
        ident = _version(identity)  # what is compared: the device number is stored, never matched
        for target, kind in it.targets:
            rows = db.execute("SELECT * FROM jobs WHERE path=? AND target=? ORDER BY id DESC",
                              (self._p(path), target)).fetchall()
            same = next((r for r in rows if (r["inode"], r["size"], r["mtime_ns"]) == ident), None)
            if same is not None:
                if same["not_before"] >= HELD:  # changed earlier, stable again with this identity
                    db.execute("UPDATE jobs SET not_before=0, updated=? WHERE id=?", (now, same["id"]))
                    out.append(Offer(target, "requeued", same["id"], path))
                else:
                    out.append(Offer(target, "known", same["id"], path))
                continue
            moved = db.execute(  # by the version (SQLite would take every same-size job of the target)
                f"SELECT * FROM jobs {self._dialect.indexed('jobs_version')} WHERE target=? AND inode=? AND size=? "
                "AND mtime_ns=? AND path<>? ORDER BY id DESC LIMIT 1", (target, *ident, self._p(path))).fetchone()
            if moved is not None and not os.path.exists(path_from_db(moved["path"])):
                db.execute("UPDATE jobs SET path=?, watch=?, updated=? WHERE id=?",
                           (self._p(path), watch, now, moved["id"]))
                out.append(Offer(target, "renamed", moved["id"], path))
                continue
            reusable = next((r for r in rows if r["state"] in ("queued", "failed")), None)
            if reusable is not None:  # same name, new content, not yet uploaded: start over
                db.execute(
                    "UPDATE jobs SET dev=?, inode=?, size=?, mtime_ns=?, md5=NULL, metadata=?, kind=?, "
                    "state='queued', attempts=0, last_error=NULL, bytes_done=0, rate=0, not_before=0, "
                    "lease_owner=NULL, lease_until=NULL, priority=?, updated=? WHERE id=?",
                    (identity.dev, *ident, meta, kind, it.priority, now, reusable["id"]))
                db.execute("DELETE FROM checkpoints WHERE job_id=?", (reusable["id"],))
                out.append(Offer(target, "requeued", reusable["id"], path))
                continue
            if any(r["state"] == "uploading" for r in rows):
                # the running upload will notice the change itself (FileChanged) and hold
                out.append(Offer(target, "known", next(r["id"] for r in rows if r["state"] == "uploading"), path))
                continue
            new = db.execute(
                "INSERT INTO jobs(path, watch, target, kind, dev, inode, size, mtime_ns, metadata, state, "
                "priority, created, updated) VALUES(?,?,?,?,?,?,?,?,?,'queued',?,?,?) RETURNING id",
                (self._p(path), watch, target, kind, identity.dev, *ident, meta, it.priority, now, now)).fetchone()
            out.append(Offer(target, "queued", int(new[0]), path))
        return out

    def skip_new(self, path: Path, watch: str | None, target: str, kind: str, identity: FileIdentity,
                 reason: str) -> int | None:
        """Record a file version that will not be uploaded to `target` (once, so rescans stay
        quiet). Returns the new job id, or None if it was already recorded."""
        now = self._now()
        ident = _version(identity)
        with self._tx() as db:
            self._store.serialize(db, "offer")
            if db.execute("SELECT 1 FROM jobs WHERE path=? AND target=? AND inode=? AND size=? AND mtime_ns=?",
                          (self._p(path), target, *ident)).fetchone():
                return None
            new = db.execute(
                "INSERT INTO jobs(path, watch, target, kind, dev, inode, size, mtime_ns, state, last_error, "
                "created, updated) VALUES(?,?,?,?,?,?,?,?,'skipped',?,?,?) RETURNING id",
                (self._p(path), watch, target, kind, identity.dev, *ident, reason, now, now)).fetchone()
            return int(new[0])

    # -- claiming: claim and prioritize are in vidupd.ledger.sqlite_claim -------------------------
    def renew(self, owner: str, ids: Iterable[int], lease_seconds: float) -> list[int]:
        """Extend `owner`'s leases on `ids`; returns those it no longer holds (taken over)."""
        ids = list(ids)
        if not ids:
            return []
        marks = ','.join('?' * len(ids))
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET lease_until=? WHERE lease_owner=? AND id IN ({marks})",
                       (self._now() + lease_seconds, owner, *ids))
            held = {r[0] for r in db.execute(f"SELECT id FROM jobs WHERE lease_owner=? AND id IN ({marks})",
                                             (owner, *ids))}
        return [i for i in ids if i not in held]

    def release(self, owner: str, ids: Iterable[int] | None = None, generation: int | None = None) -> None:
        """Give leases back (on stop): uploads become queued again, to resume next time.

        With `ids` it is a worker's transition: LeaseLost (nothing written) unless `owner`
        (and `generation`, if given) still holds every one of them."""
        with self._tx() as db:
            sel = "lease_owner=?"
            args: list[Any] = [owner]
            if ids is not None:
                ids = sorted(set(ids))
                for job_id in ids:
                    self._hold(db, job_id, owner, generation)
                sel += f" AND id IN ({','.join('?' * len(ids))})"
                args += ids
            db.execute(f"UPDATE jobs SET state=CASE WHEN state='uploading' THEN 'queued' ELSE state END, "
                       f"lease_owner=NULL, lease_until=NULL, rate=0 WHERE {sel}", args)

    def recover(self) -> int:
        """At start-up: free the leases of processes on this host that no longer run (kill -9)."""
        rows = self._all("SELECT DISTINCT lease_owner FROM jobs WHERE lease_owner IS NOT NULL")
        dead = [r[0] for r in rows if not _owner_alive(r[0])]
        n = 0
        for owner in dead:
            with self._tx() as db:
                n += db.execute("UPDATE jobs SET state=CASE WHEN state='uploading' THEN 'queued' ELSE state END, "
                                "lease_owner=NULL, lease_until=NULL, rate=0 WHERE lease_owner=?", (owner,)).rowcount
        return n

    # -- transitions -----------------------------------------------------------------------
    def progress(self, job_id: int, bytes_done: int, rate: float, owner: str, lease_seconds: float,
                 generation: int | None = None) -> None:
        """Progress for `status`, and a lease renewal while we are at it. LeaseLost if the
        lease is no longer `owner`'s (the pool then cancels the upload)."""
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            # progress makes an earlier attempt's error history: `status` shows only a current one
            db.execute("UPDATE jobs SET bytes_done=?, rate=?, lease_until=?, updated=?, last_error=NULL WHERE id=?",
                       (bytes_done, rate, self._now() + lease_seconds, self._now(), job_id))

    def apply(self, job_id: int, outcome: Outcome, *, owner: str | None,
              generation: int | None = None) -> Event | None:
        """One worker transition: fenced (LeaseLost, nothing written, unless `owner` and
        `generation` still hold the job; `owner` None: unfenced, for the operator and
        tests), decided by `outcome` from the row as this transaction sees it, committed,
        and only then its event returned for the caller to emit."""
        with self._tx() as db:
            row = db.execute(f"SELECT * FROM jobs WHERE id=?{self._dialect.lock_row}", (job_id,)).fetchone()
            self._fence(row, job_id, owner, generation)  # the fence, on the row this transition reads
            if row is None:
                raise LedgerError(f"{self.where}: no job {job_id}")
            job = Job.from_row(row)
            now = self._now()
            change = outcome.decide(job, json.loads(row["details"] or "{}"), now)
            columns = dict(change.columns)
            if change.check_remote_id is not None:
                self._store.serialize(db, "remote", job.target, change.check_remote_id)
                content = columns.get("md5", job.md5)
                other = self._conflict(db, job, change.check_remote_id, content)
                if other is not None:
                    self._write(db, job_id, now, True, state="attention", last_error=(
                        f"platform returned remote id {change.check_remote_id}, already held by job {other} "
                        "for different content"))
                    return outcome.conflicted(job, change.check_remote_id, other)
            if columns or change.ends_lease:
                self._write(db, job_id, now, change.ends_lease, **columns)
            if change.drop_checkpoint:
                db.execute("DELETE FROM checkpoints WHERE job_id=?", (job_id,))
        return change.event

    @staticmethod
    def _write(db: Conn, job_id: int, now: float, ends_lease: bool, **columns: Any) -> None:
        """The one UPDATE of a transition; the lease fields are cleared here and nowhere else."""
        if isinstance(columns.get("last_error"), str):  # messages may quote a non-UTF-8 file name
            columns["last_error"] = safe_text(columns["last_error"])
        if ends_lease:
            columns.update(lease_owner=None, lease_until=None)
        columns["updated"] = now
        db.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in columns)} WHERE id=?", (*columns.values(), job_id))

    @staticmethod
    def _conflict(db: Conn, job: Job, remote_id: str, content: str | None) -> int | None:
        """Another job of the target holding `remote_id` for other content (the seed's duplicate-id bug)."""
        other = db.execute(
            "SELECT id FROM jobs WHERE target=? AND remote_id=? AND id<>? AND state<>'skipped' "
            "AND NOT (md5 IS NOT NULL AND md5<>'' AND md5=? AND size=?) LIMIT 1",  # unknown content proves nothing
            (job.target, remote_id, job.id, content, job.size)).fetchone()
        return None if other is None else int(other[0])

    def retry(self, job_ids: Iterable[int] = (), failed: bool = False) -> int:
        """Put failed / attention jobs (or the given ones) back in the queue, to be hashed again:
        a stale fingerprint (file rewritten, mtime forged) fails forever and a hash costs one
        read. Checkpoints stay: a provider resumes one only if made for the content now found.
        A cancelled job named here starts from scratch (no remote id, no checkpoint)."""
        with self._tx() as db:
            n = 0
            for jid in job_ids:
                if db.execute("UPDATE jobs SET state='queued', attempts=0, not_before=0, md5=NULL, bytes_done=0, "
                              "remote_id=NULL, remote_kind=NULL, details=NULL, last_error=NULL, "
                              "cancel_requested=NULL, updated=? WHERE id=? AND state='cancelled'",
                              (self._now(), jid)).rowcount:
                    db.execute("DELETE FROM checkpoints WHERE job_id=?", (jid,))
                    n += 1
            if failed:
                n += db.execute("UPDATE jobs SET state='queued', attempts=0, not_before=0, md5=NULL, updated=? "
                                "WHERE state='failed'", (self._now(),)).rowcount
            for jid in job_ids:
                n += db.execute("UPDATE jobs SET state='queued', attempts=0, not_before=0, md5=NULL, updated=? "
                                "WHERE id=? AND state IN ('failed','attention','skipped')", (self._now(), jid)).rowcount
            return n

    def take_after_upload(self, path: Path, identity: FileIdentity) -> list[Job] | None:
        """If every job of this file version is finished and its after-upload action has not
        run, mark it as run (once, even with targets finishing together) and return the jobs."""
        key = (self._p(path), *_version(identity))
        with self._tx() as db:
            rows = db.execute("SELECT * FROM jobs WHERE path=? AND inode=? AND size=? AND mtime_ns=? "
                              f"ORDER BY id{self._dialect.lock_row}", key).fetchall()
            if not rows or any(r["state"] not in FINISHED or r["after_done"] for r in rows):
                return None
            db.execute("UPDATE jobs SET after_done=1 WHERE path=? AND inode=? AND size=? AND mtime_ns=?", key)
        return [Job.from_row(r) for r in rows]

    # -- queries (no side effects) -----------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        r = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        return Job.from_row(r) if r else None

    def twin_possible(self, job_id: int) -> bool:
        """Whether another job of this target might hold the same content, so this one must be
        hashed before it is sent: a job of the same size that is queued or uploading (it may
        be sending it right now), or committed/done with its content known. A finished job
        whose content is unknown (sent unhashed by a provider that did not report a
        content id) cannot be compared: it is "unknown, not a twin". Failed, skipped and
        attention jobs are no twins either (a skipped duplicate's twin is counted itself).
        One statement, so it is consistent with every offer committed before it; a job
        offered later sees this one (queued or uploading) and hashes itself."""
        with self._store.read() as db:
            return self._twin_possible(db, job_id)

    @staticmethod
    def _twin_possible(db: Conn, job_id: int) -> bool:
        row = db.execute("SELECT 1 FROM jobs AS me JOIN jobs AS o ON o.target=me.target AND o.size=me.size "
                         "AND o.id<>me.id WHERE me.id=? AND (o.state IN ('queued','uploading') OR "
                         "(o.state IN ('committed','done') AND o.md5 IS NOT NULL AND o.md5<>'')) LIMIT 1",
                         (job_id,)).fetchone()
        return row is not None

    def send_unhashed(self, job_id: int, *, owner: str | None = None, generation: int | None = None) -> bool:
        """True, and the job marked as being sent without a fingerprint, when no twin is
        possible (see twin_possible); False when it must be hashed first. One transaction,
        so a same-size job that hashes meanwhile finds the mark and waits for this one's
        commit (its content id), while a job that is merely still hashing is not waited for.
        The mark (UNHASHED in the md5 column) never leaves the ledger: Job.md5 reads None."""
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            self._serialize_size(db, job_id)
            if self._twin_possible(db, job_id):
                return False
            db.execute("UPDATE jobs SET md5=?, updated=? WHERE id=?", (UNHASHED, self._now(), job_id))
            return True

    def record_content(self, job_id: int, fingerprint: str, skip_duplicates: bool, *, owner: str | None = None,
                       generation: int | None = None) -> tuple[str, Job | None]:
        """Store a job's content fingerprint and, atomically, decide what to do with it:
        ("go", None); ("skip", job that already put this content on the target); or
        ("wait", job that is uploading this content right now, or sending a file of the
        same size without a fingerprint (send_unhashed): its content is known only once it
        commits, with the content id its provider computed while sending). A job that is
        still hashing is not waited for: whichever records its content second waits."""
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            me = self._serialize_size(db, job_id)
            db.execute("UPDATE jobs SET md5=?, updated=? WHERE id=?", (fingerprint, self._now(), job_id))
            if not skip_duplicates:
                return "go", None
            same = (me["target"], me["size"], job_id)
            done = db.execute("SELECT * FROM jobs WHERE target=? AND size=? AND id<>? AND md5=? AND remote_id IS NOT "
                              "NULL AND state IN ('done','committed') ORDER BY id LIMIT 1",
                              (*same, fingerprint)).fetchone()
            if done is not None:
                return "skip", Job.from_row(done)
            busy = db.execute("SELECT * FROM jobs WHERE target=? AND size=? AND id<>? AND state='uploading' "
                              "AND md5 IN (?, ?) ORDER BY md5=?, id LIMIT 1",  # jobs_content: found by md5
                              (*same, fingerprint, UNHASHED, UNHASHED)).fetchone()
            return ("wait", Job.from_row(busy)) if busy is not None else ("go", None)

    def _serialize_size(self, db: Conn, job_id: int) -> Any:
        """Hold the job's (target, size) for this transaction: whether identical content is
        in flight is decided by one host at a time. Returns the job's (target, size) row."""
        me = db.execute("SELECT target, size FROM jobs WHERE id=?", (job_id,)).fetchone()
        if me is not None:
            self._store.serialize(db, "size", me["target"], me["size"])
        return me

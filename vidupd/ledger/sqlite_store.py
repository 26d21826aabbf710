"""The SQLite ledger's plumbing: opening (checked, migrated), transactions, and the state
that is not a job's row: checkpoints and shared values. `vidupd.ledger.sqlite.Ledger` adds
the jobs on top."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.errors import LeaseLost
from ..core.model import SharedValue
from ..core.statedir import prepare_ledger_files
from .model import LedgerError
from .schema import MIGRATIONS, migrate


def _ro_extra(path: Path) -> str:
    """A read-only open of a WAL ledger creates (and leaves) its -wal and -shm files when
    they are missing, i.e. when no process has it open: then it is opened immutable, so a
    look (`status`, a dry run) writes nothing under state_dir. A writer starting meanwhile
    writes to its new -wal, which this snapshot does not see."""
    return "" if path.with_name(path.name + "-wal").exists() else "&immutable=1"


class SqliteStore:
    """Thread-safe access to the ledger database (one connection, one lock)."""

    def __init__(self, state_dir: Path, readonly: bool = False):
        """Open (creating and migrating unless `readonly`). Read-only opens never write,
        so `vidupd status` can run beside the daemon and on a ledger it may not change."""
        self.path = state_dir / "ledger.sqlite3"
        self._lock = threading.RLock()
        if readonly and not self.path.exists():
            raise LedgerError(f"{self.path}: no ledger yet (the daemon has not run with this state_dir)")
        if not readonly:  # private: checkpoints hold upload tokens
            try:
                prepare_ledger_files(state_dir)
            except OSError as e:
                raise LedgerError(f"{self.path}: cannot create the ledger ({e.strerror})") from None
        try:
            target = f"file:{self.path}?mode=ro{_ro_extra(self.path)}" if readonly else str(self.path)
            self._db = sqlite3.connect(target, uri=readonly, isolation_level=None, check_same_thread=False,
                                       timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 30000")
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]  # before anything writes
            if not readonly and ok == "ok":
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"{self.path}: cannot open the ledger ({e}); move the file aside to start "
                              "a new one (files already uploaded would then be uploaded again)") from None
        if ok != "ok":
            raise LedgerError(f"{self.path}: the ledger is damaged ({ok}); restore it from a backup or move it aside")
        if readonly:
            if self.schema_version != len(MIGRATIONS):
                raise LedgerError(f"{self.path}: schema version {self.schema_version}, this vidupd expects "
                                  f"{len(MIGRATIONS)}; run the daemon once to migrate it")
        else:
            self._migrate()

    # -- plumbing ----------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._tx() as db:
            migrate(db, self.path)

    @property
    def schema_version(self) -> int:
        try:
            row = self._one("SELECT value FROM meta WHERE key='schema_version'")
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    class _Tx:
        def __init__(self, ledger: "SqliteStore"):
            self.ledger = ledger

        def __enter__(self) -> sqlite3.Connection:
            self.ledger._lock.acquire()
            try:
                self.ledger._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.ledger._lock.release()
                raise
            return self.ledger._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.ledger._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.ledger._lock.release()

    def _tx(self) -> "SqliteStore._Tx":
        return SqliteStore._Tx(self)

    def _one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _hold(db: sqlite3.Connection, job_id: int, owner: str | None, generation: int | None) -> None:
        """The fence, inside a transition's transaction: LeaseLost unless `owner` (and
        `generation`, when given) still holds the job. `owner` None: an unfenced write."""
        if owner is None:
            return
        row = db.execute("SELECT lease_owner, lease_gen FROM jobs WHERE id=?", (job_id,)).fetchone()
        SqliteStore._fence(row, job_id, owner, generation)

    @staticmethod
    def _fence(row: sqlite3.Row | None, job_id: int, owner: str | None, generation: int | None) -> None:
        """LeaseLost unless the job's row (lease_owner, lease_gen) is still `owner`'s at `generation`."""
        if owner is None:
            return
        if row is None or row["lease_owner"] != owner or (generation is not None and row["lease_gen"] != generation):
            raise LeaseLost(job_id, owner)

    # -- health ----------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """One small committed write (the time of this check), so a health probe knows the
        ledger still takes the transitions every upload needs; LedgerError says why not."""
        try:
            with self._tx() as db:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('health_checked', ?)", (repr(time.time()),))
        except sqlite3.Error as e:
            raise LedgerError(f"{self.path}: the ledger does not take writes ({e})") from None

    # -- shared values (vidupd.ledger.shared) ---------------------------------------------------
    def shared_get(self, key: str) -> SharedValue | None:
        r = self._one("SELECT generation, data FROM shared WHERE key=?", (key,))
        return SharedValue(int(r[0]), json.loads(r[1])) if r else None

    def shared_put(self, key: str, expected: int, data: Mapping[str, Any]) -> SharedValue:
        """Compare and set: store `data` as generation `expected + 1` only if the stored
        generation is still `expected` (0: no value yet); LedgerError otherwise."""
        with self._tx() as db:
            row = db.execute("SELECT generation FROM shared WHERE key=?", (key,)).fetchone()
            if (int(row[0]) if row else 0) != expected:
                raise LedgerError(f"shared value {key!r} changed meanwhile (lost update refused)")
            db.execute("INSERT INTO shared(key, generation, data, updated) VALUES(?,?,?,?) ON CONFLICT(key) "
                       "DO UPDATE SET generation=excluded.generation, data=excluded.data, updated=excluded.updated",
                       (key, expected + 1, json.dumps(dict(data), sort_keys=True), time.time()))
        return SharedValue(expected + 1, dict(data))

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint(self, job_id: int, owner: str | None = None, generation: int | None = None) -> "LedgerCheckpoint":
        """The job's checkpoint store; with `owner` its saves and clears are fenced like a transition."""
        return LedgerCheckpoint(self, job_id, owner, generation)

    def _cp_load(self, job_id: int) -> dict[str, Any] | None:
        r = self._one("SELECT data FROM checkpoints WHERE job_id=?", (job_id,))
        return json.loads(r[0]) if r else None

    def _cp_save(self, job_id: int, state: dict[str, Any], owner: str | None = None,
                 generation: int | None = None) -> None:
        data = json.dumps(state, sort_keys=True)
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            db.execute("INSERT INTO checkpoints(job_id, data, updated) VALUES(?,?,?) "
                       "ON CONFLICT(job_id) DO UPDATE SET data=excluded.data, updated=excluded.updated",
                       (job_id, data, time.time()))

    def _cp_clear(self, job_id: int, owner: str | None = None, generation: int | None = None) -> None:
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            db.execute("DELETE FROM checkpoints WHERE job_id=?", (job_id,))


class LedgerCheckpoint:
    """CheckpointStore backed by the ledger: each save is one SQLite transaction, fenced by
    the worker's lease when made with one (LeaseLost: the job is someone else's now)."""

    def __init__(self, ledger: SqliteStore, job_id: int, owner: str | None = None, generation: int | None = None):
        self._ledger = ledger
        self._job_id = job_id
        self._lease = (owner, generation)

    def load(self) -> dict[str, Any] | None:
        return self._ledger._cp_load(self._job_id)

    def save(self, state: dict[str, Any]) -> None:
        self._ledger._cp_save(self._job_id, state, *self._lease)

    def clear(self) -> None:
        self._ledger._cp_clear(self._job_id, *self._lease)


"""The ledger's logic below the jobs: its store, the fence, the health write, checkpoints
and shared values. Written once for every store (vidupd.ledger.store); vidupd.ledger.sqlite
adds the jobs on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ContextManager, Iterable, Mapping

from ..core.errors import LeaseLost
from ..core.model import SharedValue
from .model import LedgerError
from .store import Conn, LedgerStore


class LedgerBase:
    """Thread-safe access to one ledger store."""

    def __init__(self, state_dir: Path | None = None, readonly: bool = False, *, store: LedgerStore | None = None):
        """The SQLite ledger under `state_dir` (created and migrated unless `readonly`), or
        the given `store` (see vidupd.ledger.open_ledger)."""
        if store is None:
            if state_dir is None:
                raise TypeError("Ledger needs a state_dir or a store")
            from .sqlite_store import SqliteStore

            store = SqliteStore(Path(state_dir), readonly)
        self._store = store
        self._dialect = store.dialect
        self.path = store.path  # the SQLite file, or None
        self.where = store.where  # names the ledger in messages (never a password)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def store(self) -> LedgerStore:
        return self._store

    @property
    def schema_version(self) -> int:
        return self._store.schema_version

    def _tx(self) -> ContextManager[Conn]:
        return self._store.tx()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._store.one(sql, args)

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return self._store.all(sql, args)

    def _now(self) -> float:
        """The ledger's clock (epoch s): leases written by one host are read by others."""
        return self._store.now()

    def _p(self, path: Any) -> Any:
        """A path as the store's `path` column holds it."""
        return self._dialect.path(path)

    def failure(self, e: BaseException) -> bool:
        """Whether `e` is the ledger's database failing, not one file's values (see LedgerStore)."""
        return self._store.failure(e)

    def exclusive(self, name: str) -> ContextManager[None]:
        return self._store.exclusive(name)

    def try_exclusive(self, name: str) -> ContextManager[bool]:
        """Whether this process may do what one process of the ledger at a time should (the
        periodic full rescan of a shared outbox), not waited for; see LedgerStore."""
        return self._store.try_exclusive(name)

    def close(self) -> None:
        self._store.close()

    def _hold(self, db: Conn, job_id: int, owner: str | None, generation: int | None) -> None:
        """The fence, inside a transition's transaction: LeaseLost unless `owner` (and
        `generation`, when given) still holds the job; the row stays locked until the
        transaction ends. `owner` None: an unfenced write."""
        if owner is None:
            return
        row = db.execute(f"SELECT lease_owner, lease_gen FROM jobs WHERE id=?{self._dialect.lock_row}",
                         (job_id,)).fetchone()
        self._fence(row, job_id, owner, generation)

    @staticmethod
    def _fence(row: Any, job_id: int, owner: str | None, generation: int | None) -> None:
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
                db.execute("INSERT INTO meta(key, value) VALUES('health_checked', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (repr(self._now()),))
        except LedgerError:
            raise
        except Exception as e:
            if not self.failure(e):
                raise
            raise LedgerError(f"{self.where}: the ledger does not take writes ({e})") from None

    # -- shared values (vidupd.ledger.shared) ---------------------------------------------------
    def shared_get(self, key: str) -> SharedValue | None:
        r = self._one("SELECT generation, data FROM shared WHERE key=?", (key,))
        return SharedValue(int(r[0]), json.loads(r[1])) if r else None

    def shared_put(self, key: str, expected: int, data: Mapping[str, Any]) -> SharedValue:
        """Compare and set: store `data` as generation `expected + 1` only if the stored
        generation is still `expected` (0: no value yet); LedgerError otherwise. One
        statement, so it is atomic on every store without a lock of its own."""
        text, now = json.dumps(dict(data), sort_keys=True), self._now()
        with self._tx() as db:
            if expected == 0:
                stored = db.execute("INSERT INTO shared(key, generation, data, updated) VALUES(?,1,?,?) "
                                    "ON CONFLICT(key) DO NOTHING RETURNING generation", (key, text, now)).fetchone()
            else:
                stored = db.execute("UPDATE shared SET generation=?, data=?, updated=? WHERE key=? AND generation=? "
                                    "RETURNING generation", (expected + 1, text, now, key, expected)).fetchone()
            if stored is None:
                raise LedgerError(f"shared value {key!r} changed meanwhile (lost update refused)")
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
                       (job_id, data, self._now()))

    def _cp_held(self, job_id: int, owner: str | None, generation: int | None) -> None:
        """LeaseLost unless `owner` still holds the job at `generation` and its lease has not
        run out (an expired lease may be claimed by another host at any moment). One read."""
        if owner is None:
            return
        row = self._one("SELECT lease_owner, lease_gen, lease_until FROM jobs WHERE id=?", (job_id,))
        self._fence(row, job_id, owner, generation)
        if row["lease_until"] is not None and float(row["lease_until"]) <= self._now():
            raise LeaseLost(job_id, owner)

    def _cp_clear(self, job_id: int, owner: str | None = None, generation: int | None = None) -> None:
        with self._tx() as db:
            self._hold(db, job_id, owner, generation)
            db.execute("DELETE FROM checkpoints WHERE job_id=?", (job_id,))


class LedgerCheckpoint:
    """CheckpointStore backed by the ledger: each save is one transaction, fenced by the
    worker's lease when made with one (LeaseLost: the job is someone else's now)."""

    def __init__(self, ledger: LedgerBase, job_id: int, owner: str | None = None, generation: int | None = None):
        self._ledger = ledger
        self._job_id = job_id
        self._lease = (owner, generation)

    def load(self) -> dict[str, Any] | None:
        return self._ledger._cp_load(self._job_id)

    def save(self, state: dict[str, Any]) -> None:
        self._ledger._cp_save(self._job_id, state, *self._lease)

    def clear(self) -> None:
        self._ledger._cp_clear(self._job_id, *self._lease)

    def ensure_held(self) -> None:
        """LeaseLost unless the lease this store was made with is still held and current:
        asked before a platform call that changes the upload as a whole (Complete, Abort,
        commit, a new create), which another host resuming the job must not see."""
        self._ledger._cp_held(self._job_id, *self._lease)

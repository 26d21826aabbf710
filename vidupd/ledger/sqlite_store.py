"""The SQLite store: one file under state_dir, WAL + synchronous=FULL, so a committed
transaction survives kill -9 and power loss and readers (`vidupd status`) never block the
daemon. One connection and one lock per process; BEGIN IMMEDIATE takes the database's write
lock, so every write transaction of every process runs alone (nothing to lock row by row).
The ledger's logic on top of it is vidupd.ledger.sqlite.Ledger."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.state_lock import FileLock
from ..core.statedir import prepare_ledger_files
from .model import LedgerError, ledger_failure
from .schema import MIGRATIONS, migrate
from .store import SQLITE, LedgerStore

FILE = "ledger.sqlite3"


def _ro_extra(path: Path) -> str:
    """A read-only open of a WAL ledger creates (and leaves) its -wal and -shm files when
    they are missing, i.e. when no process has it open: then it is opened immutable, so a
    look (`status`, a dry run) writes nothing under state_dir. A writer starting meanwhile
    writes to its new -wal, which this snapshot does not see."""
    return "" if path.with_name(path.name + "-wal").exists() else "&immutable=1"


class SqliteStore(LedgerStore):
    """Thread-safe access to the ledger database (one connection, one lock)."""

    dialect = SQLITE

    def __init__(self, state_dir: Path, readonly: bool = False):
        """Open (creating and migrating unless `readonly`). Read-only opens never write,
        so `vidupd status` can run beside the daemon and on a ledger it may not change."""
        self.path = state_dir / FILE
        self.where = str(self.path)
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
            with self.tx() as db:
                migrate(db, self.path)

    @property
    def schema_version(self) -> int:
        try:
            row = self.one("SELECT value FROM meta WHERE key='schema_version'")
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A flock on `state_dir/NAME.lock`, not the SQLite write lock: the section may wait
        on the network, and holding the write lock that long would stall every ledger write."""
        with FileLock(self.path.with_name(f"{name}.lock")):
            yield

    def failure(self, e: BaseException) -> bool:
        return ledger_failure(e)

    def close(self) -> None:
        with self._lock:
            self._db.close()

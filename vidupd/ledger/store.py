"""What the ledger's logic needs from a database: the storage layer, pluggable.

The transitions (vidupd.ledger.sqlite.Ledger and its bases) are written once, in SQL both
engines run, with `?` placeholders; a store supplies the connection, the transactions and
the few places where the engines differ (`Dialect`). SQLite (vidupd.ledger.sqlite_store)
serialises every write transaction with its database lock; PostgreSQL
(vidupd.ledger.postgresql) runs READ COMMITTED with several hosts at once, so the logic
marks the reads a transition decides on: `lock_row` (the fenced row, FOR UPDATE),
`skip_locked` (claims), and `serialize(db, key)` (an advisory lock for the read-then-insert
decisions that span rows: offers, twins, remote-id conflicts). On SQLite these are no-ops.
The rest of the dialect: index hints (`indexed`: SQLite's planner needs them, PostgreSQL has
none), NULL order (`nulls_first`), and how `path` is stored. Portable SQL otherwise: `?`
placeholders, ON CONFLICT upserts, RETURNING instead of lastrowid, `col IS NULL` / `col=?`
(never SQLite's `col IS ?`).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Protocol

from ..core.fsnames import path_to_db


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Any: ...


class Conn(Protocol):
    """A connection inside a transaction: `execute(sql with ? placeholders, args)`; rows
    read both by index and by column name (sqlite3.Row and its PostgreSQL twin)."""

    def execute(self, sql: str, args: Iterable[Any] = ...) -> Cursor: ...


def _bytes_path(path: Any) -> bytes:
    return os.fsencode(os.fspath(path))


@dataclass(frozen=True)
class Dialect:
    """SQL fragments that differ between engines (each empty where an engine needs none)."""

    name: str
    index_hints: bool  # `FROM jobs INDEXED BY name`: SQLite's planner needs telling (see `indexed`)
    lock_row: str  # after a SELECT whose rows a transition will change
    skip_locked: str  # after a claim's candidate query (after its LIMIT)
    nulls_first: str  # after an ORDER BY column where NULL must come first (SQLite's default, not PG's)
    path_param: Callable[[Any], Any]  # a path as the `path` column stores it

    def path(self, path: Any) -> Any:
        return self.path_param(path)

    def indexed(self, index: str) -> str:
        """What follows `FROM jobs` in a query that must walk `index` in order."""
        return f"INDEXED BY {index}" if self.index_hints else ""


# SQLite: one writer at a time (BEGIN IMMEDIATE), so nothing needs locking row by row.
# INDEXED BY: a claim walks (state, id) or a queue index in order and stops at `limit`; the
# planner would otherwise range-scan (state, not_before) and sort every waiting job per claim.
SQLITE = Dialect("sqlite", True, "", "", "", path_to_db)
# PostgreSQL: `path` is bytea (a file name is bytes; most are UTF-8, not all), rows a
# transition reads are locked, and claims skip the rows another host is claiming.
POSTGRESQL = Dialect("postgresql", False, " FOR UPDATE", " FOR UPDATE SKIP LOCKED", " NULLS FIRST", _bytes_path)


class LedgerStore(ABC):
    """One ledger database: opened, checked and migrated by the constructor."""

    dialect: Dialect
    where: str  # names the ledger in messages: a file, or a URL without its password
    path: Path | None = None  # the SQLite file (None for a server)

    @abstractmethod
    def tx(self) -> ContextManager[Conn]:
        """A write transaction: committed when the block ends, rolled back on an exception."""

    @abstractmethod
    def read(self) -> ContextManager[Conn]:
        """A connection for a few reads that need no transaction of their own."""

    def one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        with self.read() as db:
            return db.execute(sql, tuple(args)).fetchone()

    def all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        with self.read() as db:
            return db.execute(sql, tuple(args)).fetchall()

    def now(self) -> float:
        """The clock every lease of this ledger is measured by (epoch s)."""
        return time.time()

    def serialize(self, db: Conn, *key: Any) -> None:
        """Inside a transaction: wait until no other transaction holds `key`, then hold it
        until this one ends. A no-op where every write transaction is serialised anyway."""

    @abstractmethod
    def exclusive(self, name: str) -> ContextManager[None]:
        """A section only one process of the ledger (any host) is in at a time, held outside
        any transaction (it may wait on the network: a token refresh)."""

    def try_exclusive(self, name: str) -> ContextManager[bool]:
        """A section at most one process of the ledger is in, not waited for: yields whether
        this one got it (held until the block ends). Without a shared server every process
        gets it (the SQLite ledger has one daemon: DaemonLock)."""
        return nullcontext(True)

    @abstractmethod
    def failure(self, e: BaseException) -> bool:
        """Whether `e` is the database itself failing (full disk, lock timeout, server
        gone), not a problem with one statement's values."""

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

"""The PostgreSQL store: one database shared by a fleet of hosts, through psycopg 3 and
its connection pool, READ COMMITTED, plain SQL (the ledger's own, see vidupd.ledger.store).

Concurrency: claims lock their candidates with FOR UPDATE SKIP LOCKED (two hosts never
claim one job); fenced transitions lock the job's row (FOR UPDATE) and check owner and
generation on the locked row; decisions that read several rows before they write (offers,
twins, remote-id conflicts) take a transaction-scoped advisory lock (`serialize`), as
SQLite's write lock does for every transaction; `exclusive` (token refreshes) is an
advisory lock held by its own transaction. Migrations run under an advisory lock too.

Every call is bounded: connect_timeout, statement_timeout and lock_timeout on the server,
TCP keepalives and tcp_user_timeout against a server that vanished mid-call, and a wait
limit for a pooled connection. Connection failures and timeouts become LedgerUnavailable
(transient: the caller tries again later), with the URL shown without its password.
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from ..core.secrets import redact, reveal
from .location import scrub_url
from .model import LedgerError, LedgerUnavailable
from .pg_schema import MIGRATIONS, migrate, stored_version
from .store import POSTGRESQL, LedgerStore

CONNECT_TIMEOUT = 10  # seconds to open a connection
STATEMENT_TIMEOUT_MS = 30_000  # a statement the server has not finished by then is cancelled
LOCK_TIMEOUT_MS = 30_000  # a row or advisory lock not granted by then fails the call
EXCLUSIVE_WAIT_MS = 120_000  # `exclusive`: another host's token refresh (network-bound) may take this long
# A transaction left idle this long is ended by the server, its locks with it: a host frozen
# (SIGSTOP, a VM paused) inside one would otherwise hold its row and advisory locks for as
# long as it is frozen (its TCP connection still answers), stalling every other host.
IDLE_IN_TX_MS = 15_000
POOL_WAIT = 30.0  # seconds to wait for a free pooled connection
POOL_SIZE = 10  # connections per process at most: workers, polls, dispatcher, intake, housekeeping
# Applied unless the URL says otherwise: a server cut off mid-call is noticed within ~15 s
CLIENT_DEFAULTS = dict(connect_timeout=str(CONNECT_TIMEOUT), application_name="vidupd", keepalives="1",
                       keepalives_idle="5", keepalives_interval="2", keepalives_count="3", tcp_user_timeout="15000")
# The database failing, not a statement's values: connections, timeouts, deadlocks, a full disk
# (all OperationalError), a closed connection, no pooled connection in time, and the server
# ending a transaction left idle (SQLSTATE 25P03, filed by psycopg under InternalError)
TROUBLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout,
           psycopg.errors.IdleInTransactionSessionTimeout)


class PgRow:
    """A row read by index or by column name, like sqlite3.Row."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]):
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: Any) -> Any:
    result = cursor.pgresult  # the names straight from libpq: cursor.description builds objects per column
    names = tuple(result.fname(i) for i in range(result.nfields)) if result is not None else ()
    index = _index(names)
    return lambda values: PgRow(values, index)


@lru_cache(maxsize=256)
def _index(names: tuple[bytes, ...]) -> dict[str, int]:
    return {n.decode(): i for i, n in enumerate(names)}


@lru_cache(maxsize=1024)
def _sql(text: str) -> str:
    """The ledger's `?` placeholders as psycopg's (no statement of the ledger has a `?` in a literal)."""
    return text.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the ledger's SQL."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self._conn.execute(_sql(sql), tuple(args))


def lock_key(*parts: Any) -> int:
    """A stable signed 64-bit advisory-lock key for `parts` (the same on every host)."""
    digest = hashlib.blake2b(repr(("vidupd",) + parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresStore(LedgerStore):
    """The ledger in a PostgreSQL database (or the schema first on the URL's search_path)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, password: Any = None, readonly: bool = False):
        """Connect, check, and (unless `readonly`) migrate; LedgerUnavailable if the server
        cannot be reached, LedgerError if the database is not a ledger this vidupd can use."""
        self.where = scrub_url(url)
        self._readonly = readonly
        self._ahead = 0.0  # the server's clock minus ours, measured by every new connection
        self._sections: dict[str, threading.Lock] = {}  # `exclusive`: one thread per process waits on the server
        self._sections_lock = threading.Lock()
        try:
            params = conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise LedgerError(f"{self.where}: not a valid PostgreSQL URL") from None
        for key, value in CLIENT_DEFAULTS.items():
            params.setdefault(key, value)
        self._kwargs: dict[str, Any] = dict(autocommit=True, row_factory=_rows)
        if password is not None:
            self._kwargs["password"] = reveal(password)
        self._conninfo = conninfo.make_conninfo(**{k: v for k, v in params.items() if k != "password"})
        if "password" in params:  # a URL that carries its own (the config refuses that; a bench may not)
            self._kwargs.setdefault("password", params["password"])
        try:  # the first connection alone: its failure says why (a pool would only time out)
            with psycopg.connect(self._conninfo, **self._kwargs) as conn:
                self._configure(conn)
                self._open(PgConn(conn), conn)
        except TROUBLE as e:
            raise self._unavailable(e, "cannot open the ledger") from None
        except psycopg.Error as e:  # e.g. no CREATE privilege: the README's set-up says which grants
            detail = redact(" ".join(str(e).split()))
            raise LedgerError(f"{self.where}: cannot open the ledger ({detail}); see the README's PostgreSQL "
                              "set-up for the role's privileges") from None
        self._pool = ConnectionPool(self._conninfo, kwargs=self._kwargs, min_size=1, max_size=POOL_SIZE,
                                    timeout=POOL_WAIT, configure=self._configure, name="vidupd-ledger", open=False)
        self._pool.open(wait=False)

    def _open(self, db: PgConn, conn: psycopg.Connection) -> None:
        if self._readonly:
            version = stored_version(db, self.where)
            if version is None:
                raise LedgerError(f"{self.where}: no ledger yet (no vidupd daemon has run against this database)")
            if version != len(MIGRATIONS):
                raise LedgerError(f"{self.where}: schema version {version}, this vidupd expects "
                                  f"{len(MIGRATIONS)}; run the daemon once to migrate it")
            return
        with conn.transaction():
            migrate(db, self.where)

    def _configure(self, conn: psycopg.Connection) -> None:
        """Every connection's limits (and read-only-ness), and the server's clock, in one round trip."""
        sent = time.time()
        row = conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false), "
                           "set_config('idle_in_transaction_session_timeout', %s, false), "
                           "set_config('default_transaction_read_only', %s, false), "
                           "extract(epoch from clock_timestamp())::float8",
                           (str(STATEMENT_TIMEOUT_MS), str(LOCK_TIMEOUT_MS), str(IDLE_IN_TX_MS),
                            "on" if self._readonly else "off")).fetchone()
        self._ahead = float(row[4]) - (sent + time.time()) / 2

    def _unavailable(self, e: BaseException, doing: str = "the ledger did not answer") -> LedgerUnavailable:
        detail = redact(" ".join(str(e).split())) or type(e).__name__
        return LedgerUnavailable(f"{self.where}: {doing} ({detail})")

    # -- LedgerStore ----------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection(timeout=POOL_WAIT) as conn:
                yield conn
        except TROUBLE as e:
            raise self._unavailable(e) from None

    @contextmanager
    def tx(self) -> Iterator[PgConn]:
        with self._connection() as conn:
            with conn.transaction():
                yield PgConn(conn)

    @contextmanager
    def read(self) -> Iterator[PgConn]:
        with self._connection() as conn:
            yield PgConn(conn)

    def now(self) -> float:
        """The server's clock (our clock plus the offset measured when connecting), so hosts
        whose clocks disagree still agree on when a lease runs out."""
        return time.time() + self._ahead

    def serialize(self, db: Any, *key: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?::bigint)", (lock_key(*key),))

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """An advisory lock in a transaction of its own, ended by a rollback (it wrote
        nothing): a connection lost meanwhile took the lock with it, and the section's own
        writes, committed on other connections, stand. The threads of this process queue
        on a local lock first: each holder keeps a pooled connection, and the section's
        own reads need another one."""
        with self._sections_lock:
            local = self._sections.setdefault(name, threading.Lock())
        with local, self._connection() as conn:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT set_config('lock_timeout', %s, true), "  # the section waits on the network
                             "set_config('idle_in_transaction_session_timeout', %s, true)",
                             (str(EXCLUSIVE_WAIT_MS), str(EXCLUSIVE_WAIT_MS)))
                conn.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (lock_key("exclusive", name),))
                yield
            finally:
                try:
                    conn.execute("ROLLBACK")
                except TROUBLE:
                    conn.close()  # the pool drops it; the server ended its transaction and lock

    @contextmanager
    def try_exclusive(self, name: str) -> Iterator[bool]:
        """pg_try_advisory_lock on a pooled connection outside any transaction (a session
        lock: the section may last longer than the server lets a transaction idle), given
        back at the end; a connection lost meanwhile took the lock with it."""
        key = lock_key("try_exclusive", name)
        with self._connection() as conn:
            got = bool(conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", (key,)).fetchone()[0])
            try:
                yield got
            finally:
                if got:
                    try:
                        conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (key,))
                    except TROUBLE:
                        conn.close()  # the server ends the session, and the lock with it

    def failure(self, e: BaseException) -> bool:
        return isinstance(e, (LedgerUnavailable, *TROUBLE))

    @property
    def schema_version(self) -> int:
        with self.read() as db:
            try:
                return stored_version(db, self.where) or 0
            except LedgerError:
                return 0

    def close(self) -> None:
        self._pool.close(timeout=5)

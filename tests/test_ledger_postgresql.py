"""The ledger compliance suite (tests/ledger_compliance.py) run for the PostgreSQL store,
on the throwaway server (tests/pg_server.py): each test's store is a new schema. Its
fixtures are made by SQL: `v1` (the version-1 DDL and the same two jobs as the SQLite
fixture), `corrupt` (a ledger whose `meta` holds garbage as its version) and `not-sqlite`
(the name the suite uses for "not a ledger at all": a database holding another program's
`jobs` table). Then the cases only a shared ledger has: processes claiming, offering,
migrating and refreshing a shared value at once."""

from __future__ import annotations

import json
import multiprocessing
import queue
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from ledger_compliance import META, LedgerCompliance, ident

from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.secrets import Secret
from vidupd.ledger import (MIGRATIONS, Intent, Ledger, LedgerError, LedgerSettings, LedgerShared, LedgerUnavailable,
                           open_ledger)
from vidupd.ledger import pg_schema

V1_ROWS = """
INSERT INTO meta VALUES('schema_version','1');
INSERT INTO jobs VALUES(1,'/srv/outbox/old.mp4','/srv/outbox','yk','video',1,2,3,4,'d41d8cd98f00b204e9800998ecf8427e',
  '{}','done',0,NULL,'XNDY5Njc0MTA4','video',NULL,0,0.0,0.0,NULL,NULL,0,1790000000.0,1790000000.0);
INSERT INTO jobs VALUES(2,'/srv/outbox/half.mp4','/srv/outbox','yk','video',1,5,1000,4,NULL,'{}','uploading',0,NULL,
  NULL,NULL,NULL,0,0.0,0.0,NULL,NULL,0,1790000000.0,1790000000.0);
INSERT INTO checkpoints VALUES(2,'{"upload_token": "tok"}',1790000000.0);
SELECT setval(pg_get_serial_sequence('jobs', 'id'), 2)
"""


def _schema(url: str) -> str:
    return unquote(url).rpartition("search_path=")[2]


class PgBackend:
    def __init__(self, server, url: str):
        self.server, self.url = server, url
        self.schema = _schema(url)

    def open(self) -> Ledger:
        return open_ledger(LedgerSettings(self.url, Secret(self.server.password)), Path("/nonexistent"))

    def _sql(self, script: str) -> None:
        with self.server.admin() as db:
            db.execute(f"SET search_path = {self.schema}")
            for stmt in filter(str.strip, script.split(";")):
                db.execute(stmt)

    def use_fixture(self, name: str) -> None:
        self._sql(f"DROP SCHEMA {self.schema} CASCADE; CREATE SCHEMA {self.schema}")
        meta = "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        if name == "v1":
            self._sql(meta + pg_schema.MIGRATIONS[0] + V1_ROWS)
        elif name == "corrupt":
            self._sql(meta + pg_schema.MIGRATIONS[0] + V1_ROWS.replace("'schema_version','1'", "'schema_version','\x01\x02'"))
        elif name == "not-sqlite":
            self._sql("CREATE TABLE jobs(name TEXT PRIMARY KEY, cron TEXT); INSERT INTO jobs VALUES('backup', '@daily')")
        else:
            raise KeyError(name)

    def stored(self) -> bytes:
        """Every table of the schema with its columns and rows."""
        with self.server.admin() as db:
            db.execute(f"SET search_path = {self.schema}")
            tables = [r[0] for r in db.execute("SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema=%s ORDER BY 1", (self.schema,))]
            dump = {t: [list(map(repr, r)) for r in db.execute(f"SELECT * FROM {t} ORDER BY 1")] for t in tables}
        return json.dumps(dump, sort_keys=True).encode()


@pytest.fixture
def backend(pg_server, pg_ledger_url) -> PgBackend:
    return PgBackend(pg_server, pg_ledger_url)


class TestPostgresLedger(LedgerCompliance):
    pass


# -- the schema: the same as SQLite's -----------------------------------------------------------

def test_both_schemas_have_the_same_tables_and_columns(backend: PgBackend, tmp_path: Path):
    backend.open().close()
    with backend.server.admin() as db:
        pg = {(t, c) for t, c in db.execute("SELECT table_name, column_name FROM information_schema.columns "
                                            "WHERE table_schema=%s", (backend.schema,))}
    Ledger(tmp_path).close()
    lite = sqlite3.connect(tmp_path / "ledger.sqlite3")
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    sq = {(t, r[1]) for t in tables for r in lite.execute(f"PRAGMA table_info({t})")}
    assert pg == sq and {t for t, _ in pg} == {"jobs", "checkpoints", "shared", "meta", "hosts"}
    assert len(pg_schema.MIGRATIONS) == len(MIGRATIONS)


def test_newer_schema_is_refused(backend: PgBackend):
    backend.open().close()
    backend._sql("UPDATE meta SET value='99' WHERE key='schema_version'")
    before = backend.stored()
    with pytest.raises(LedgerError, match="newer"):
        backend.open()
    assert backend.stored() == before


def test_readonly_open_needs_a_migrated_ledger_and_never_writes(backend: PgBackend):
    settings = LedgerSettings(backend.url, Secret(backend.server.password))
    with pytest.raises(LedgerError, match="no ledger yet"):
        open_ledger(settings, Path("/nonexistent"), readonly=True)
    backend.use_fixture("v1")
    with pytest.raises(LedgerError, match="schema version 1"):
        open_ledger(settings, Path("/nonexistent"), readonly=True)
    backend.open().close()
    ro = open_ledger(settings, Path("/nonexistent"), readonly=True)
    assert len(ro.jobs()) == 2 and ro.counts() == {"done": 1, "uploading": 1}
    with pytest.raises(Exception, match="read-only"):
        ro.shared_put("k", 0, {"v": 1})
    ro.close()


def test_unreachable_server_is_a_transient_error_without_the_password(pg_server):
    port = pg_server.port
    url = f"postgresql://someone@127.0.0.1:{port}/nosuchdb"
    with pytest.raises(LedgerUnavailable) as e:  # the database does not exist
        open_ledger(LedgerSettings(url, Secret("hunter2-secret")), Path("/nonexistent"))
    assert "hunter2-secret" not in str(e.value) and "127.0.0.1" in str(e.value)
    with pytest.raises(LedgerUnavailable) as e:  # nothing listens there
        open_ledger("postgresql://u:pw-in-url-123@127.0.0.1:1/db", Path("/nonexistent"))
    assert "pw-in-url-123" not in str(e.value)


def test_a_file_name_that_is_not_utf8_round_trips(backend: PgBackend, tmp_path: Path):
    l = backend.open()
    odd = tmp_path / b"caf\xe9.mp4".decode("utf-8", "surrogateescape")
    (o,) = l.offer(odd, "/w", [("t", "video")], ident(), META)
    assert l.get(o.job_id).path == odd and l.uploads_of_path(odd) == 1
    assert l.offer(odd, "/w", [("t", "video")], ident(), META)[0].outcome == "known"
    l.close()


# -- what only a shared ledger has: several processes at once -------------------------------------

def _claimer(url: str, password: str, owner: str, rounds: int, start, out) -> None:
    ledger = open_ledger(LedgerSettings(url, Secret(password)), Path("/nonexistent"))
    start.wait(60)
    got = []
    for _ in range(rounds):
        got += [j.id for j in ledger.claim(owner, 3, 3600)]
    ledger.close()
    out.put((owner, got))


def _offerer(url: str, password: str, n: int, dev: int, start, out) -> None:
    ledger = open_ledger(LedgerSettings(url, Secret(password)), Path("/nonexistent"))
    intents = [Intent(Path(f"/shared/{i}.mp4"), "/shared", (("t", "video"), ("u", "video")),
                      FileIdentity(dev, i, 100, 5), Metadata("m")) for i in range(n)]
    start.wait(60)
    half = n // 2  # a batch in one transaction, then one file per transaction
    offers = ledger.offer_many(intents[:half]) + [o for it in intents[half:] for o in ledger.offer_many([it])]
    ledger.close()
    out.put(([o.job_id for o in offers], [o.outcome for o in offers]))


def _migrator(url: str, password: str, start, out) -> None:
    start.wait(60)
    ledger = open_ledger(LedgerSettings(url, Secret(password)), Path("/nonexistent"))
    out.put(ledger.schema_version)
    ledger.close()


def _refresher(url: str, password: str, n: int, start, out) -> None:
    ledger = open_ledger(LedgerSettings(url, Secret(password)), Path("/nonexistent"))
    shared = LedgerShared(ledger)
    start.wait(60)
    seen = []

    def rotate(current):
        count = (current.data["count"] if current else 0) + 1
        time.sleep(0.005)  # a network call in the middle of the change
        return {"count": count}

    for _ in range(n):
        seen.append(shared.update("oauth", rotate).data["count"])
    ledger.close()
    out.put(seen)


def _run_all(target, args_list) -> list:
    """Run `target` in one process per args (spawned: nothing shared but the database), all
    let go at the same moment; their results, or a failure as soon as one of them fails."""
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Barrier(len(args_list))
    procs = [ctx.Process(target=target, args=(*args, start, out)) for args in args_list]
    for p in procs:
        p.start()
    results: list = []
    deadline = time.monotonic() + 120
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.5))
        except queue.Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not failed and time.monotonic() < deadline, f"a process failed: exit codes {failed}"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_processes_claiming_at_once_never_get_the_same_job(backend: PgBackend, tmp_path: Path):
    l = backend.open()
    l.offer_many([])
    for i in range(60):
        l.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)
    results = _run_all(_claimer, [(backend.url, backend.server.password, f"host{n}", 12) for n in range(4)])
    claimed = [j for _, ids in results for j in ids]
    assert len(claimed) == len(set(claimed)) == 60  # each job once, and every one
    assert {j.lease_owner for j in l.jobs()} == {owner for owner, ids in results if ids}
    l.close()


def test_processes_offering_one_file_version_at_once_make_one_job(backend: PgBackend):
    backend.open().close()
    ids = [r[0] for r in _run_all(_offerer, [(backend.url, backend.server.password, 40, 7)] * 3)]
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 80
    l = backend.open()
    assert len(l.jobs()) == 80
    l.close()


def test_hosts_whose_device_numbers_differ_offering_at_once_make_one_job_per_target(backend: PgBackend):
    """Each process is a host whose mount of the shared outbox has its own st_dev."""
    backend.open().close()
    results = _run_all(_offerer, [(backend.url, backend.server.password, 40, dev) for dev in (41, 42, 43)])
    ids = [r[0] for r in results]
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 80
    outcomes = sorted(o for r in results for o in r[1])  # queued by the first, known to the others
    assert outcomes == ["known"] * 160 + ["queued"] * 80, "not started over by another host's offer"
    l = backend.open()
    jobs = l.jobs()
    assert len(jobs) == 80 and len({(j.target, j.path) for j in jobs}) == 80
    assert {j.identity.dev for j in jobs} <= {41, 42, 43}  # whoever came first: kept for information
    l.close()


def test_the_database_refuses_a_second_job_for_one_file_version_and_target(backend: PgBackend, tmp_path: Path):
    """The UNIQUE index behind the offer lock (migration 8): a write that bypassed the
    ledger's logic still cannot make a twin; another target, or another version, can."""
    import psycopg

    l = backend.open()
    (o,) = l.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(dev=1), META)
    insert = ("INSERT INTO jobs(path, watch, target, kind, dev, inode, size, mtime_ns, created, updated) "
              "SELECT path, watch, %s, kind, %s, inode, size, mtime_ns + %s, 0, 0 FROM jobs WHERE id=%s")
    with backend.server.admin() as db:
        db.execute(f"SET search_path = {backend.schema}")
        db.execute(insert, ("u", 2, 0, o.job_id))  # another target
        db.execute(insert, ("t", 2, 1, o.job_id))  # another version (mtime)
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(insert, ("t", 2, 0, o.job_id))  # the same version, another device number
    assert len(l.jobs()) == 3
    l.close()


def test_twins_an_older_vidupd_made_are_kept_by_the_migration(backend: PgBackend):
    """A version-7 ledger holding one file version twice (its hosts' device numbers
    differed): migration 8 keeps both jobs and their history, and refuses new twins."""
    backend._sql(f"DROP SCHEMA {backend.schema} CASCADE; CREATE SCHEMA {backend.schema}; "
                 "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for script in pg_schema.MIGRATIONS[:7]:
        backend._sql(script)
    backend._sql("INSERT INTO meta VALUES('schema_version','7');" + "".join(
        f"INSERT INTO jobs(path, watch, target, kind, dev, inode, size, mtime_ns, state, remote_id, created, updated) "
        f"VALUES('/srv/outbox/a.mp4', '/srv/outbox', 't', 'video', {dev}, 9, 100, 5, 'done', 'R{dev}', 1, 1);"
        for dev in (41, 42)))
    l = backend.open()
    assert l.schema_version == len(MIGRATIONS)
    assert [(j.identity.dev, j.remote_id) for j in l.jobs()] == [(41, "R41"), (42, "R42")]
    (o,) = l.offer(Path("/srv/outbox/a.mp4"), "/srv/outbox", [("t", "video")], FileIdentity(43, 9, 100, 5), META)
    assert o.outcome == "known" and len(l.jobs()) == 2
    (n,) = l.offer(Path("/srv/outbox/b.mp4"), "/srv/outbox", [("t", "video")], FileIdentity(43, 10, 100, 5), META)
    import psycopg

    with backend.server.admin() as db, pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(f"SET search_path = {backend.schema}")
        db.execute("INSERT INTO jobs(path, watch, target, kind, dev, inode, size, mtime_ns, created, updated) "
                   "SELECT path, watch, target, kind, 1, inode, size, mtime_ns, 0, 0 FROM jobs WHERE id=%s",
                   (n.job_id,))
    l.close()


def test_processes_migrating_at_once_migrate_once(backend: PgBackend):
    results = _run_all(_migrator, [(backend.url, backend.server.password)] * 4)
    assert results == [len(MIGRATIONS)] * 4
    l = backend.open()
    assert l.schema_version == len(MIGRATIONS) and l.jobs() == []
    l.close()


def test_a_shared_value_changed_by_processes_at_once_loses_no_update(backend: PgBackend):
    backend.open().close()
    results = _run_all(_refresher, [(backend.url, backend.server.password, 15)] * 3)
    counts = sorted(c for seen in results for c in seen)
    assert counts == list(range(1, 46))  # every change saw the one before it: none lost, none twice
    l = backend.open()
    assert l.shared_get("oauth").data == {"count": 45} and l.shared_get("oauth").generation == 45
    l.close()


def test_try_exclusive_is_held_by_one_host_at_a_time_and_not_waited_for(backend: PgBackend):
    """Issue 13: the periodic full rescan of a shared outbox, one host at a time."""
    a, b = backend.open(), backend.open()
    try:
        with a.try_exclusive("rescan") as first:
            with b.try_exclusive("rescan") as second, b.try_exclusive("other") as unrelated:
                assert (first, second, unrelated) == (True, False, True)
        with b.try_exclusive("rescan") as after:  # a gave it back
            assert after is True
    finally:
        a.close()
        b.close()


def test_a_dropped_connection_is_a_transient_error_and_the_next_call_reconnects(backend: PgBackend,
                                                                                 tmp_path: Path):
    l = backend.open()
    (o,) = l.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
    with l.store.read() as db:  # every call is bounded by the server too
        assert db.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        assert db.execute("SHOW lock_timeout").fetchone()[0] == "30s"
    with backend.server.admin() as admin:  # the server drops every connection of the ledger
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name='vidupd'")
    with pytest.raises(LedgerUnavailable) as e:
        l.get(o.job_id)
    assert l.failure(e.value) and backend.server.password not in str(e.value)
    assert wait_for_value(lambda: l.get(o.job_id)).state == "queued"  # the pool has connected again
    l.close()


def wait_for_value(call, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except LedgerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_readme_set_up_works_and_a_role_without_privileges_is_told_so(pg_server, pg_ledger_url):
    """README: a login role owning its database is all vidupd needs (PostgreSQL 15 lets a
    database's owner create in its public schema); a role that may not create tables gets
    a LedgerError that says where to look, not a traceback."""
    with pg_server.admin() as db:
        db.execute("DROP DATABASE IF EXISTS vidupd_readme")
        db.execute("DROP ROLE IF EXISTS vidupd_readme")
        db.execute("CREATE ROLE vidupd_readme LOGIN PASSWORD 'readme-pw-1'")
        db.execute("CREATE DATABASE vidupd_readme OWNER vidupd_readme")
    url = f"postgresql://vidupd_readme@127.0.0.1:{pg_server.port}/vidupd_readme"
    l = open_ledger(LedgerSettings(url, Secret("readme-pw-1")), Path("/nonexistent"))
    assert l.schema_version == len(MIGRATIONS) and l.jobs() == []
    l.close()
    other_schema = (f"postgresql://vidupd_readme@127.0.0.1:{pg_server.port}/postgres?options="
                    + pg_ledger_url.rpartition("options=")[2])
    with pytest.raises(LedgerError, match="privileges") as e:  # the test's schema belongs to the superuser
        open_ledger(LedgerSettings(other_schema, Secret("readme-pw-1")), Path("/nonexistent"))
    assert "readme-pw-1" not in str(e.value)



def _filled(backend: PgBackend, tmp_path: Path) -> Ledger:
    """A ledger of 2,000 jobs whose table statistics are current (plans as in production)."""
    from test_claim_cost import fill

    l = backend.open()
    fill(l, tmp_path, 2000)
    with backend.server.admin() as db:
        db.execute(f"ANALYZE {backend.schema}.jobs")
    return l


def _spy_statements(monkeypatch) -> list[tuple[str, tuple]]:
    """Every statement the ledger sends from now on (until monkeypatch.undo), with its arguments."""
    from vidupd.ledger.postgresql import PgConn

    seen: list[tuple[str, tuple]] = []
    execute = PgConn.execute

    def spy(self, sql, args=()):
        seen.append((sql, tuple(args)))
        return execute(self, sql, args)

    monkeypatch.setattr(PgConn, "execute", spy)
    return seen


def test_no_claim_statement_scans_or_sorts_the_queue(backend: PgBackend, tmp_path: Path, monkeypatch):
    """As tests/test_claim_cost.py for SQLite: every statement a claim runs walks an index
    (no Seq Scan, no Sort), for every order and skip, so a claim stays O(limit) on a queue
    of thousands (the planner decides with the table's statistics, as in production)."""
    from test_claim_cost import CLAIMS

    from vidupd.ledger.claim_order import ORDERS
    from vidupd.ledger.postgresql import _sql

    l = _filled(backend, tmp_path)
    seen = _spy_statements(monkeypatch)
    for order in ORDERS:
        for kw in CLAIMS:
            assert len(l.claim("A", 3, 60, order=order, poll_limit=2, **kw)) == 3
    monkeypatch.undo()
    selects = [(s, a) for s, a in seen if s.lstrip().upper().startswith("SELECT") and "FROM jobs" in s]
    assert len(selects) >= 4 * len(CLAIMS) * len(ORDERS)
    with backend.server.admin() as db:
        db.execute(f"SET search_path = {backend.schema}")
        for sql, args in selects:
            plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + _sql(sql), args))
            assert "Seq Scan" not in plan and "Sort" not in plan, (sql, plan)
    l.close()


def test_no_offer_statement_scans_the_jobs(backend: PgBackend, tmp_path: Path, monkeypatch):
    """As tests/test_ledger_sqlite.py: an offer's lookups of a file version (without its
    device number), rename detection included, walk an index."""
    from vidupd.ledger.postgresql import _sql

    l = _filled(backend, tmp_path)
    job = next(j for j in l.jobs() if j.path == tmp_path / "000005.mp4")
    seen = _spy_statements(monkeypatch)
    l.offer(tmp_path / "brand-new.mp4", "/a", [("slow", "video")], FileIdentity(9, 99999, 5, 5), META)
    version = (job.identity.inode, job.identity.size, job.identity.mtime_ns)
    (moved,) = l.offer(tmp_path / "moved.mp4", "/a", [(job.target, "video")], FileIdentity(8, *version), META)
    l.take_after_upload(tmp_path / "moved.mp4", job.identity)
    monkeypatch.undo()
    assert moved.outcome == "renamed"
    lookups = [(s, a) for s, a in seen if s.lstrip().upper().startswith("SELECT *")]
    assert len(lookups) >= 4
    with backend.server.admin() as db:
        db.execute(f"SET search_path = {backend.schema}")
        for sql, args in lookups:
            plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + _sql(sql), args))
            assert "Seq Scan" not in plan, (sql, plan)
            if "path<>" in sql:
                assert "jobs_version" in plan, (sql, plan)
    l.close()


def test_a_host_frozen_inside_a_transaction_does_not_stall_the_others(backend: PgBackend, tmp_path: Path,
                                                                       monkeypatch):
    """A host stopped (SIGSTOP, a paused VM) while holding the offer lock: its TCP connection
    still answers, so only the server's idle-in-transaction limit ends its transaction; then
    the other host's offer goes through, and the frozen one's transaction is gone when it
    comes back (nothing of it is committed)."""
    import threading

    from vidupd.ledger import postgresql

    monkeypatch.setattr(postgresql, "IDLE_IN_TX_MS", 500)
    frozen, other = backend.open(), backend.open()
    holding, other_done, outcome = threading.Event(), threading.Event(), []

    def freeze() -> None:
        try:
            with frozen._tx() as db:
                frozen.store.serialize(db, "offer")
                db.execute("INSERT INTO meta(key, value) VALUES('frozen-write', 'x')")
                holding.set()
                other_done.wait(60)  # "frozen" until the other host got through
                db.execute("SELECT 1")
            outcome.append("committed")
        except LedgerUnavailable as e:
            outcome.append(e)

    t = threading.Thread(target=freeze)
    t.start()
    assert holding.wait(30)
    (o,) = other.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)  # waits ~0.5 s, not 30
    other_done.set()
    t.join(60)
    assert o.outcome == "queued" and isinstance(outcome[0], LedgerUnavailable)
    assert other._one("SELECT count(*) FROM meta WHERE key='frozen-write'")[0] == 0
    frozen.close()
    other.close()

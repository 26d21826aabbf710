"""The ledger compliance suite (tests/ledger_compliance.py) run for the SQLite backend:
the store is a state_dir; fixtures are the committed state_dirs in tests/fixtures/ledger."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ledger_compliance import LedgerCompliance

from vidupd.ledger import Ledger

FIXTURES = Path(__file__).parent / "fixtures" / "ledger"


class SqliteBackend:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir

    def open(self) -> Ledger:
        return Ledger(self.state_dir)

    def use_fixture(self, name: str) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.copytree(FIXTURES / name, self.state_dir)

    def stored(self) -> bytes:
        return (self.state_dir / "ledger.sqlite3").read_bytes()


class TestSqliteLedger(LedgerCompliance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> SqliteBackend:
        return SqliteBackend(tmp_path / "state")


def test_no_offer_statement_scans_the_jobs(tmp_path: Path):
    """A file version is matched without its device number (migration 8): each lookup an
    offer, a rename, a skip record and the after-upload step make still walks an index
    (jobs_version: inode, size, mtime, path; or jobs_path), so intake stays cheap on a
    ledger of many jobs."""
    from test_claim_cost import fill

    from vidupd.core.model import FileIdentity, Metadata

    ledger = Ledger(tmp_path / "state")
    fill(ledger, tmp_path, 2000)
    old, new = tmp_path / "000005.mp4", tmp_path / "moved.mp4"
    job = next(j for j in ledger.jobs() if j.path == old)
    seen: list[str] = []
    ledger.store._db.set_trace_callback(seen.append)
    try:
        ledger.offer(tmp_path / "brand-new.mp4", "/a", [("slow", "video")], FileIdentity(9, 99999, 5, 5), Metadata("n"))
        assert ledger.offer(new, "/a", [(job.target, "video")], FileIdentity(8, *_version(job)), Metadata("m"))[0] \
            .outcome == "renamed"  # old path does not exist
        ledger.take_after_upload(new, job.identity)
        ledger.skip_new(tmp_path / "fifo", "/a", "slow", "unknown", FileIdentity(9, 99998, 0, 5), "a FIFO")
    finally:
        ledger.store._db.set_trace_callback(None)
    selects = [s for s in seen if s.lstrip().upper().startswith(("SELECT", "UPDATE"))]
    assert len(selects) >= 6
    for sql in selects:
        plan = " | ".join(r[3] for r in ledger.store._db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN jobs" not in plan, (sql, plan)
        if "path<>" in sql:  # rename detection: by the version, not every same-size job of the target
            assert "jobs_version" in plan, (sql, plan)
    ledger.close()


def _version(job) -> tuple[int, int, int]:
    return job.identity.inode, job.identity.size, job.identity.mtime_ns

"""The PostgreSQL store's cost measures (issue 13), on the throwaway server: a growing jobs
table is analyzed, so the planner does not keep the plans it made for an empty one (a
content lookup walking every job of one size, O(queue) per file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_compliance import META, ident

from vidupd.core.secrets import Secret
from vidupd.ledger import Intent, LedgerSettings, open_ledger, postgresql


@pytest.fixture
def ledger(pg_server, pg_ledger_url):
    led = open_ledger(LedgerSettings(pg_ledger_url, Secret(pg_server.password)), Path("/nonexistent"))
    yield led
    led.close()


def test_a_growing_jobs_table_is_analyzed(ledger, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(postgresql, "ANALYZE_FIRST", 3)
    ledger.store._analyze_at = 3

    def reltuples() -> float:
        return ledger.store.one("SELECT reltuples FROM pg_class WHERE oid='jobs'::regclass")[0]

    assert reltuples() < 0  # never analyzed (nor vacuumed)
    ledger.offer_many([Intent(tmp_path / "a.mp4", "/w", (("t", "video"),), ident(1), META)])
    assert reltuples() < 0
    ledger.offer_many([Intent(tmp_path / f"{n}.mp4", "/w", (("t", "video"),), ident(n), META) for n in (2, 3)])
    assert reltuples() == 3
    ledger.offer_many([Intent(tmp_path / f"{n}.mp4", "/w", (("t", "video"),), ident(n), META) for n in (4, 5)])
    assert reltuples() == 3  # the next one at 6
    ledger.offer_many([Intent(tmp_path / "6.mp4", "/w", (("t", "video"),), ident(6), META)])
    assert reltuples() == 6

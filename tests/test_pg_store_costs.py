"""The PostgreSQL store's cost measures (issue 13), on the throwaway server: a growing jobs
table is analyzed, so the planner does not keep the plans it made for an empty one (a
content lookup walking every job of one size, O(queue) per file)."""

from __future__ import annotations

from pathlib import Path

from ledger_compliance import META, ident

from vidupd.core.secrets import Secret
from vidupd.ledger import Intent, LedgerSettings, open_ledger, postgresql


def test_a_growing_jobs_table_is_analyzed(pg_server, pg_ledger_url, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(postgresql, "ANALYZE_FIRST", 3)
    ledger = open_ledger(LedgerSettings(pg_ledger_url, Secret(pg_server.password)), Path("/nonexistent"))

    def reltuples() -> float:
        return ledger.store.one("SELECT reltuples FROM pg_class WHERE oid='jobs'::regclass")[0]

    def offer(*inodes: int) -> None:
        ledger.offer_many([Intent(tmp_path / f"{n}.mp4", "/w", (("t", "video"),), ident(n), META) for n in inodes])

    try:
        assert reltuples() < 0  # never analyzed (nor vacuumed)
        offer(1)
        assert reltuples() < 0
        offer(2, 3)
        assert reltuples() == 3
        offer(4, 5)
        assert reltuples() == 3  # the next one at 6
        offer(1, 6)  # one known file (no new job), one new: the sixth
        assert reltuples() == 6
        offer(7)
        assert reltuples() == 6  # the next one at 12
    finally:
        ledger.close()

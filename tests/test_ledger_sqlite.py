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

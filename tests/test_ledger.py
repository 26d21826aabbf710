"""Ledger: what is specific to the SQLite backend (read-only opens, the schema version in its
meta table, damaged files named in the message). The behaviour every backend shares (state
machine, claims, leases, fencing, rename/duplicate rules, migrations and recovery from
committed fixtures) is tests/ledger_compliance.py, run for SQLite by tests/test_ledger_sqlite.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Ledger, LedgerError

FIXTURES = Path(__file__).parent / "fixtures" / "ledger"
META = Metadata(title="t")


def ident(inode: int = 1, size: int = 100, mtime: int = 5) -> FileIdentity:
    return FileIdentity(1, inode, size, mtime)


def test_readonly_open_never_writes(tmp_path: Path):
    with pytest.raises(LedgerError, match="no ledger yet"):
        Ledger(tmp_path, readonly=True)
    assert not (tmp_path / "ledger.sqlite3").exists()
    Ledger(tmp_path).close()
    ro = Ledger(tmp_path, readonly=True)
    assert ro.jobs() == []
    with pytest.raises(Exception):
        ro.offer(tmp_path / "x.mp4", None, [("t", "video")], ident(), META)
    ro.close()


def _copy_fixture(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def test_readonly_open_of_an_old_schema_asks_for_a_migration(tmp_path: Path):
    state = _copy_fixture("v1", tmp_path)
    before = (state / "ledger.sqlite3").read_bytes()
    with pytest.raises(LedgerError, match="schema version 1"):
        Ledger(state, readonly=True)  # status asks for a migration instead of guessing
    assert (state / "ledger.sqlite3").read_bytes() == before


@pytest.mark.parametrize("name", ["corrupt", "not-sqlite"])
def test_damaged_ledger_message_names_the_file(name: str, tmp_path: Path):
    state = _copy_fixture(name, tmp_path)
    with pytest.raises(LedgerError) as e:
        Ledger(state)
    assert str(state / "ledger.sqlite3") in str(e.value)


def test_newer_schema_is_refused(tmp_path: Path):
    l = Ledger(tmp_path)
    with l._tx() as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    l.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(tmp_path)

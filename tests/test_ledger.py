"""Ledger: the state machine, leases, rename/duplicate rules, migrations and recovery from
committed fixtures (each test copies a fixture, opens it, reopens it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidupd.ledger import HELD, Ledger, LedgerError, MIGRATIONS
from vidupd.providers.base import FileIdentity, Metadata

FIXTURES = Path(__file__).parent / "fixtures" / "ledger"
META = Metadata(title="t")


def ident(inode: int = 1, size: int = 100, mtime: int = 5) -> FileIdentity:
    return FileIdentity(1, inode, size, mtime)


@pytest.fixture
def ledger(tmp_path: Path):
    l = Ledger(tmp_path / "state")
    yield l
    l.close()


def test_offer_is_idempotent_per_file_version(ledger: Ledger, tmp_path: Path):
    p = tmp_path / "a.mp4"
    (o1,) = ledger.offer(p, "/w", [("yk", "video")], ident(), META)
    (o2,) = ledger.offer(p, "/w", [("yk", "video")], ident(), META)
    assert o1.outcome == "queued" and o2.outcome == "known" and o1.job_id == o2.job_id
    both = ledger.offer(p, "/w", [("yk", "video"), ("vod", "video")], ident(), META)
    assert [o.outcome for o in both] == ["known", "queued"]


def test_claim_is_exclusive_and_bounded(ledger: Ledger, tmp_path: Path):
    for i in range(5):
        ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)
    a = ledger.claim("A", 2, 60)
    b = ledger.claim("B", 10, 60)
    assert len(a) == 2 and len(b) == 3
    assert not {j.id for j in a} & {j.id for j in b}
    assert ledger.claim("C", 10, 60) == []
    assert all(j.state == "uploading" for j in a + b)


def test_expired_lease_can_be_taken_over(ledger: Ledger, tmp_path: Path):
    ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
    (j,) = ledger.claim("A", 1, 0.05)
    time.sleep(0.1)
    (k,) = ledger.claim("B", 1, 60)
    assert k.id == j.id and k.lease_owner == "B"


def test_recover_frees_leases_of_dead_processes(ledger: Ledger, tmp_path: Path):
    ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    ledger.claim(f"{socket.gethostname()}:{dead.pid}:1", 1, 3600)
    assert ledger.claim("X", 1, 60) == []
    assert ledger.recover() == 1
    (j,) = ledger.claim("X", 1, 60)
    assert j.state == "uploading"


def test_done_file_renamed_is_recognised(ledger: Ledger, tmp_path: Path):
    old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
    (o,) = ledger.offer(old, "/w", [("t", "video")], ident(), META)
    ledger.claim("A", 1, 60)
    ledger.committed(o.job_id, "R1", "video", {}, final=True)
    (r,) = ledger.offer(new, "/w", [("t", "video")], ident(), META)  # old path no longer exists
    assert r.outcome == "renamed" and r.job_id == o.job_id
    assert ledger.get(o.job_id).path == new and ledger.get(o.job_id).state == "done"


def test_same_name_new_content_is_a_new_job_after_done(ledger: Ledger, tmp_path: Path):
    p = tmp_path / "a.mp4"
    (o,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=1), META)
    ledger.committed(o.job_id, "R1", "video", {}, final=True)
    (o2,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=2), META)
    assert o2.outcome == "queued" and o2.job_id != o.job_id


def test_changed_file_is_held_until_stable_again(ledger: Ledger, tmp_path: Path):
    p = tmp_path / "a.mp4"
    (o,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=1), META)
    ledger.claim("A", 1, 60)
    ledger.checkpoint(o.job_id).save({"offset": 10})
    ledger.hold_for_change(o.job_id, "changed")
    assert ledger.get(o.job_id).not_before >= HELD and ledger.claim("A", 1, 60) == []
    assert ledger.checkpoint(o.job_id).load() is None
    (o2,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=2), META)
    assert o2.outcome == "requeued" and o2.job_id == o.job_id
    (j,) = ledger.claim("A", 1, 60)
    assert j.identity.mtime_ns == 2


def test_duplicate_remote_id_for_different_content_needs_attention(ledger: Ledger, tmp_path: Path):
    (a,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)
    (b,) = ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)
    ledger.record_content(a.job_id, "aaa", False)
    ledger.record_content(b.job_id, "bbb", False)
    assert ledger.record_remote_id(a.job_id, "SAME", "video") is None
    assert ledger.record_remote_id(b.job_id, "SAME", "video") == a.job_id
    assert ledger.get(b.job_id).state == "attention"
    assert ledger.record_remote_id(a.job_id, "SAME", "video") is None  # the same job again is fine


def test_after_upload_taken_once_when_all_targets_finished(ledger: Ledger, tmp_path: Path):
    p = tmp_path / "a.mp4"
    offers = ledger.offer(p, "/w", [("t1", "video"), ("t2", "video")], ident(), META)
    ledger.committed(offers[0].job_id, "R1", "video", {}, final=True)
    assert ledger.take_after_upload(p, ident()) is None
    ledger.committed(offers[1].job_id, "R2", "video", {}, final=True)
    assert len(ledger.take_after_upload(p, ident())) == 2
    assert ledger.take_after_upload(p, ident()) is None


def test_checkpoints_survive_reopen(tmp_path: Path):
    l = Ledger(tmp_path)
    (o,) = l.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
    l.checkpoint(o.job_id).save({"upload_token": "u", "server": "1.2.3.4:80"})
    l.close()
    l = Ledger(tmp_path)
    assert l.checkpoint(o.job_id).load() == {"upload_token": "u", "server": "1.2.3.4:80"}
    l.close()


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


def test_v1_fixture_migrates_and_keeps_jobs(tmp_path: Path):
    state = _copy_fixture("v1", tmp_path)
    with pytest.raises(LedgerError, match="schema version 1"):
        Ledger(state, readonly=True)  # status asks for a migration instead of guessing
    l = Ledger(state)
    assert l.schema_version == len(MIGRATIONS)
    done, half = l.jobs()
    assert done.state == "done" and done.remote_id == "XNDY5Njc0MTA4" and done.committed_at is None
    assert half.state == "uploading" and l.checkpoint(half.id).load() == {"upload_token": "tok"}
    assert l.recover() == 0  # no lease owner recorded: nothing to free, and nothing lost
    l.close()
    again = Ledger(state)  # reopening a migrated ledger is a no-op
    assert again.schema_version == len(MIGRATIONS) and len(again.jobs()) == 2
    again.close()


@pytest.mark.parametrize("name", ["corrupt", "not-sqlite"])
def test_damaged_ledger_is_refused_with_advice(name: str, tmp_path: Path):
    state = _copy_fixture(name, tmp_path)
    before = (state / "ledger.sqlite3").read_bytes()
    with pytest.raises(LedgerError) as e:
        Ledger(state)
    msg = str(e.value)
    assert str(state / "ledger.sqlite3") in msg and ("backup" in msg or "move the file aside" in msg)
    assert (state / "ledger.sqlite3").read_bytes() == before  # never "repaired" by starting empty


def test_newer_schema_is_refused(tmp_path: Path):
    l = Ledger(tmp_path)
    with l._tx() as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    l.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(tmp_path)


def test_identical_content_hashed_at_once_goes_exactly_once(ledger: Ledger, tmp_path: Path):
    (a,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)
    (b,) = ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)
    ledger.claim("A", 2, 60)  # both uploading (hashing)
    # b finishes hashing first: it goes; a, later, waits for b instead of sending a copy
    assert ledger.record_content(b.job_id, "same", True) == ("go", None)
    verdict, twin = ledger.record_content(a.job_id, "same", True)
    assert verdict == "wait" and twin.id == b.job_id
    ledger.committed(b.job_id, "R1", "video", {}, final=True)
    verdict, twin = ledger.record_content(a.job_id, "same", True)
    assert verdict == "skip" and twin.remote_id == "R1"
    assert ledger.record_content(a.job_id, "same", False) == ("go", None)

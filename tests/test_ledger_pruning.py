"""Ledger housekeeping with the real daemon (issue 11): finished jobs older than
`retain_days` are pruned in the background, once their file has left the watched folder;
their uploads stay in the event log; a file still in place keeps its job, so it is not
uploaded again."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from helpers import DaemonProcess, actions, vidupd, wait_for, write_config

pytestmark = pytest.mark.timeout(120)


def test_old_finished_jobs_are_pruned_but_files_in_place_keep_theirs(tmp_path):
    outbox, kept, dest, events = tmp_path / "outbox", tmp_path / "kept", tmp_path / "dest", tmp_path / "ev.jsonl"
    for d in (outbox, kept, dest):
        d.mkdir()
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "retain_days": 1},
                       {"arch": {"provider": "directory", "dest": str(dest)}},
                       [{"path": str(outbox), "targets": ["arch"], "settle_seconds": 0.5, "after_upload": "delete"},
                        {"path": str(kept), "targets": ["arch"], "settle_seconds": 0.5}],
                       {"events": str(events)})
    (outbox / "gone.mp4").write_bytes(b"g" * 3000)
    (kept / "stays.mp4").write_bytes(b"s" * 4000)
    with DaemonProcess(cfg, events) as d:
        wait_for(lambda: len(actions(events, "upload.completed")) == 2 and actions(events, "file.deleted"), 30,
                 what="both uploads")
        assert d.stop() == 0
    assert not actions(events, "ledger.pruned"), "nothing is old yet"
    gone_id = next(e["vidupd.remote_id"] for e in actions(events, "upload.completed") if "gone" in e["file.path"])
    db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite3")  # two days pass
    db.execute("UPDATE jobs SET updated = updated - 2 * 86400, created = created - 2 * 86400")
    db.commit()
    db.close()
    with DaemonProcess(cfg, events) as d:
        pruned = wait_for(lambda: actions(events, "ledger.pruned"), 30, what="the pruning pass")
        time.sleep(1.5)  # a rescan of the kept folder: its file must not be uploaded again
        assert d.stop() == 0
    assert pruned[0]["vidupd.pruned"] == 1 and pruned[0]["vidupd.retain_days"] == 1
    left = json.loads(vidupd("status", "-c", str(cfg), "--json", "--all").stdout)["jobs"]
    assert [j["file"].rsplit("/", 1)[-1] for j in left] == ["stays.mp4"]
    assert len(actions(events, "upload.completed")) == 2, "the kept file was not sent again"
    assert any(e.get("vidupd.remote_id") == gone_id for e in actions(events, "upload.completed"))


def test_retain_days_is_checked(tmp_path):
    (tmp_path / "w").mkdir()

    def check(days):
        cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "retain_days": days},
                           {"arch": {"provider": "directory", "dest": str(tmp_path / "w")}},
                           [{"path": str(tmp_path / "w"), "targets": ["arch"]}])
        return vidupd("check-config", "-c", str(cfg))

    assert check(0.5).returncode == 0 and check(0).returncode == 0  # 0: keep every job
    r = check(-1)
    assert r.returncode == 2 and "retain_days" in r.stderr and "unknown" not in r.stderr

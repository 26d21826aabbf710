"""A completion committed in the ledger whose `upload.completed` line was never written (the
process killed between the two; found by the 300-kill crash soak) is announced at the next
start, once, from the ledger (vidupd.core.announcements, service.reemit.announce_pending)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, read_events, wait_for, write_config

from vidupd.core import events
from vidupd.core.events import LogConfig
from vidupd.core.announcements import ANNOUNCEMENTS, MAX_BYTES, Announcements, Pending
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Completed, Ledger, RetryLater
from vidupd.service.reemit import announce_pending

pytestmark = pytest.mark.timeout(90)


def test_a_begin_without_its_end_is_pending_and_a_torn_line_is_ignored(tmp_path):
    a = Announcements(tmp_path / ANNOUNCEMENTS)
    a.begin(1, 3)
    a.end(1)
    a.begin(2, 5)
    a.begin(4, 1)
    a.end(4)
    a.close()
    with open(tmp_path / ANNOUNCEMENTS, "a") as f:
        f.write("B 9")  # killed mid-append
    assert Announcements(tmp_path / ANNOUNCEMENTS).pending() == [Pending(2, 5)]
    assert oct(os.stat(tmp_path / ANNOUNCEMENTS).st_mode & 0o777) == "0o600"
    a.reset()
    assert a.pending() == []


def test_the_file_is_emptied_when_nothing_is_outstanding_past_its_bound(tmp_path):
    a = Announcements(tmp_path / ANNOUNCEMENTS)
    n = MAX_BYTES // len("B 100000 1\nE 100000\n") + 10
    a.begin(7, 1)  # outstanding all along: nothing may be emptied under it
    for i in range(n):
        a.begin(100000 + i, 1)
        a.end(100000 + i)
    assert (tmp_path / ANNOUNCEMENTS).stat().st_size > MAX_BYTES
    a.end(7)
    assert (tmp_path / ANNOUNCEMENTS).stat().st_size == 0
    a.begin(8, 2)
    a.close()
    assert a.pending() == [Pending(8, 2)]


def _job(ledger: Ledger, tmp_path: Path, name: str) -> int:
    path = tmp_path / name
    path.write_bytes(name.encode() * 10)
    (offer,) = ledger.offer(path, None, [("vod", "video")], FileIdentity.of(os.stat(path)), Metadata(path.stem))
    return offer.job_id


def test_only_a_completion_still_under_its_generation_is_announced(tmp_path):
    ledger = Ledger(tmp_path / "state")
    log = tmp_path / "events.jsonl"
    events.configure(LogConfig(events=str(log), level="info", format="json"), mirror=False)
    try:
        lost, logged, other_host, unfinished = (_job(ledger, tmp_path, f"{n}.mp4") for n in "abcd")
        (claimed,) = ledger.claim("me", 1, 60, ids=[lost])
        ledger.apply(lost, Completed("R-lost", "video"), owner="me", generation=claimed.lease_gen)
        ledger.apply(logged, Completed("R-logged", "video"), owner=None)
        ledger.apply(other_host, Completed("R-other", "video"), owner=None)
        ledger.apply(unfinished, RetryLater("later", 5, 1, "Transient"), owner=None)
        a = Announcements(tmp_path / "state" / ANNOUNCEMENTS)
        a.begin(lost, claimed.lease_gen)  # the kill came after the commit, before the line
        a.begin(logged, 0)
        a.end(logged)
        a.begin(other_host, 99)  # a later claim (another host's) finished it
        a.begin(unfinished, 0)  # killed before the commit: nothing finished
        a.close()
        assert announce_pending(ledger, a, lambda t: "aliyun-vod") == 1
        assert announce_pending(ledger, a, lambda t: "aliyun-vod") == 0  # once
    finally:
        events.configure(LogConfig())
        ledger.close()
    (done,) = actions(log, "upload.completed")
    assert done["vidupd.remote_id"] == "R-lost" and done["vidupd.job_id"] == lost
    assert done["vidupd.reannounced"] is True and done["vidupd.provider"] == "aliyun-vod"
    assert done["event.outcome"] == "success" and done["file.path"].endswith("a.mp4")


def test_the_daemon_announces_at_start_what_its_killed_predecessor_committed_unlogged(tmp_path):
    """The real daemon: a file uploaded (directory provider), then the state a kill between
    the ledger's commit and the line leaves (the line missing, the begin recorded); the next
    start writes the line once, and a start after that does not repeat it."""
    state, outbox, dest, log = tmp_path / "state", tmp_path / "outbox", tmp_path / "dest", tmp_path / "events.jsonl"
    outbox.mkdir()
    config = write_config(tmp_path / "vidupd.toml", {"state_dir": str(state)},
                          {"d": {"provider": "directory", "dest": str(dest)}},
                          [{"path": str(outbox), "targets": ["d"], "settle_seconds": 0.2}], {"events": str(log)})
    (outbox / "clip.mp4").write_bytes(b"v" * 100_000)
    d = DaemonProcess(config, log)
    with d.start():
        (done,) = wait_for(lambda: actions(log, "upload.completed"), 30, what="the upload")
        assert d.stop() == 0
    job_id, remote_id = done["vidupd.job_id"], done["vidupd.remote_id"]
    lines = [ln for ln in log.read_text().splitlines() if '"upload.completed"' not in ln]
    log.write_text("\n".join(lines) + "\n")
    ledger = Ledger(state)
    (job,) = [j for j in ledger.jobs() if j.id == job_id]
    ledger.close()
    (state / ANNOUNCEMENTS).write_text(f"B {job_id} {job.lease_gen}\n")
    for _ in range(2):
        with DaemonProcess(config, log).start() as again:
            assert again.stop() == 0
    (late,) = actions(log, "upload.completed")
    assert late["vidupd.remote_id"] == remote_id and late["vidupd.reannounced"] is True
    assert (state / ANNOUNCEMENTS).stat().st_size == 0
    assert not [e for e in read_events(log) if e["event.action"] == "daemon.error"]
    assert json.loads(log.read_text().splitlines()[-1])["event.action"] == "daemon.stopped"

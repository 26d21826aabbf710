"""Issue 14's full-disk suite: the real daemon uploading to the sandbox (its own process)
while its state_dir, or the disk of its event log, is a small tmpfs that a ballast file
fills. The daemon says so once (not an event per try), takes in nothing new meanwhile,
keeps the ledger intact (PRAGMA integrity_check), carries on by itself once the ballast is
deleted, and loses nothing: every file uploaded exactly once, and the ledger, the event
log and the sandbox's uploads.jsonl agree. Event lines the full log disk refused are held
back (bounded) and written once it takes lines again; the unit tests below pin the bound."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fault_site import FaultSite, assert_exactly_once, integrity, ledger_rows, outcome_counts
from helpers import actions, drop_random, fill, read_events, wait_for

from vidupd.core import events
from vidupd.core.event_backlog import Backlog
from vidupd.core.event_sink import EventSink
from vidupd.core.events import LogConfig
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Ledger
from vidupd.ledger.outcomes import Completed
from vidupd.service.reemit import reemitter

SIZE = 400_000  # bytes per file: several OSS parts would need more time, not more proof


@pytest.fixture
def site(tmp_path: Path):
    s = FaultSite(tmp_path)
    yield s
    s.close()


def _line(action: str, n: int, level: str = "info") -> str:
    return json.dumps({"@timestamp": f"2026-01-01T00:00:{n:02d}.000Z", "log.level": level, "event.action": action,
                       "n": n})


# -- the backlog (units) -------------------------------------------------------------------------

def test_backlog_drops_progress_first_then_events_and_completed_last():
    b = Backlog(max_lines=3)
    for n, action in enumerate(["upload.completed", "upload.progress", "upload.started", "upload.progress",
                                "upload.completed", "upload.queued"]):
        b.add(_line(action, n))
    kept = []
    while (line := b.head()) is not None:
        kept.append(json.loads(line)["n"])
        b.pop()
    assert kept == [0, 4, 5]  # in emission order; both progress lines and the older ordinary event dropped
    dropped = b.take_dropped()
    assert dropped is not None and dropped.by_kind == {"progress": 2, "events": 1, "completed": 0}
    assert dropped.completed_since is None and b.take_dropped() is None


def test_backlog_says_since_when_completed_lines_were_dropped_and_keeps_its_byte_cap():
    b = Backlog(max_lines=1000, max_bytes=400)
    for n in range(20):
        b.add(_line("upload.completed", n))
    assert b.bytes <= 400 and len(b) < 20
    dropped = b.take_dropped()
    assert dropped is not None and dropped.by_kind["completed"] == 20 - len(b)
    assert dropped.completed_since == "2026-01-01T00:00:00.000Z"  # the oldest one dropped


def test_sink_holds_lines_back_on_a_full_disk_and_writes_them_in_order_later(tmpfs):
    disk = tmpfs("sink-fs", "256k")
    resumed: list[tuple] = []
    sink = EventSink(str(disk / "events.jsonl"), on_resumed=lambda late, dropped: resumed.append((late, dropped)))
    sink.write(_line("daemon.started", 0))
    ballast = fill(disk)
    for n in range(1, 200):
        sink.write(_line("upload.progress" if n % 2 else "upload.completed", n % 60))
    sink.flush()  # still full (the file's last page took a few lines): held back, nothing lost
    held = len(sink.backlog)
    assert held > 100 and not resumed
    ballast.unlink()
    sink.flush()
    lines = (disk / "events.jsonl").read_text().splitlines()
    assert len(lines) == 200 and [json.loads(x)["n"] for x in lines] == [n % 60 for n in range(200)]
    assert resumed == [(held, None)] and sink.lost_total == 0
    sink.close()


# -- the daemon (end to end) ---------------------------------------------------------------------

def _outage_events(events: Path, since: float) -> list[dict]:
    """Warnings and errors logged after `since` (epoch s): what the outage cost in lines."""
    out = []
    for e in read_events(events):
        if e["log.level"] in ("warn", "error"):
            stamp = time.mktime(time.strptime(e["@timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            if stamp >= since - 1:
                out.append(e)
    return out


def test_full_state_dir_is_said_once_pauses_intake_and_recovers_exactly_once(site, tmpfs):
    disk = tmpfs("state-fs", "4m")
    site.write(state_dir=disk / "state")
    first = [drop_random(site.outbox / f"a{i}.mp4", SIZE) for i in range(3)]
    with site.daemon() as d:
        wait_for(lambda: len(site.completed()) >= 1, 60, what="uploads before the disk fills")
        full_at = time.time()
        ballast = fill(disk)
        later = [drop_random(site.outbox / f"b{i}.mp4", SIZE) for i in range(3)]
        wait_for(lambda: actions(site.events, "ledger.unreachable"), 30, what="the daemon saying the disk is full")
        time.sleep(6)  # a few watcher ticks, rescans and dispatcher turns on the full disk
        assert d.proc.poll() is None
        queued = {Path(e["file.path"]).name for e in actions(site.events, "upload.queued")}
        assert not queued & {p.name for p in later}, "intake went on while the ledger's disk was full"
        said = _outage_events(site.events, full_at)
        assert len([e for e in said if e["event.action"] == "ledger.unreachable"]) == 1
        assert len(said) <= 3, f"a flood of {len(said)} lines: {[e['message'] for e in said]}"
        (notice,) = actions(site.events, "ledger.unreachable")
        assert notice.get("vidupd.reason") == "disk_full" and "full" in notice["message"]
        ballast.unlink()
        wait_for(lambda: len(site.completed()) >= 6, 90, what="recovery once space is back")
        wait_for(lambda: all(r[1] == "done" for r in ledger_rows(site.state)), 60, what="all jobs done")
        assert actions(site.events, "ledger.reachable")
        assert d.stop() == 0
    assert integrity(site.state) == "ok"
    assert_exactly_once(site, first + later)


def test_full_log_disk_holds_events_back_and_writes_them_when_space_returns(site, tmpfs):
    disk = tmpfs("log-fs", "1m")
    site.write(events=disk / "events.jsonl")
    d = site.daemon().start()
    try:
        ballast = fill(disk)
        files = [drop_random(site.outbox / f"g{i}.mp4", SIZE) for i in range(4)]
        wait_for(lambda: len(site.sandbox.entries()) == 4, 60, what="uploads while the event log is full")
        wait_for(lambda: all(r[1] == "done" for r in ledger_rows(site.state)), 60, what="all jobs done")
        assert d.proc.poll() is None
        assert not site.completed()  # nothing could be written so far ...
        ballast.unlink()
        wait_for(lambda: len(site.completed()) == 4, 30, what="the held-back lines")  # ... and now all of it
        (resumed,) = actions(site.events, "event_log.resumed")
        assert resumed["vidupd.late"] >= 8 and resumed["vidupd.dropped"] == 0
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    assert "cannot write the event log" in d.stderr()
    counts = outcome_counts(site.events)
    assert "<torn line>" not in counts, counts
    assert_exactly_once(site, files)
    assert integrity(site.state) == "ok"


def test_dropped_completed_lines_get_their_remote_ids_reemitted_from_the_ledger(tmp_path, tmpfs):
    """The backlog's cap reached with nothing but upload.completed lines left to drop: once the
    log disk takes lines again, `event_log.resumed` says how many went, and the service layer
    re-emits the remote ids of the jobs finished since then from the ledger."""
    disk = tmpfs("log-cap-fs", "256k")
    ledger = Ledger(tmp_path / "state")
    log = disk / "events.jsonl"
    sink = events.configure(LogConfig(events=str(log), level="info", format="json"), mirror=False)
    undo = events.on_completed_dropped(reemitter(ledger))
    try:
        sink.backlog = Backlog(max_lines=3)
        ballast = fill(disk)
        ids = {}
        for i in range(6):
            path = tmp_path / f"c{i}.mp4"
            path.write_bytes(b"x" * (i + 1))
            (offer,) = ledger.offer(path, None, [("vod", "video")], FileIdentity.of(os.stat(path)), Metadata(path.stem))
            ledger.apply(offer.job_id, Completed(f"R{i}", "video"), owner=None)
            ids[str(path)] = f"R{i}"
            events.emit("upload.completed", f"{path.name}: uploaded", path=str(path), job_id=offer.job_id,
                        remote_id=f"R{i}", target="vod")
        ballast.unlink()
        events.flush()
        wait_for(lambda: len([e for e in read_events(log) if e["event.action"] == "event_log.reemitted"]) == 7, 10,
                 what="the re-emitted remote ids")
    finally:
        undo()
        events.configure(LogConfig())
        ledger.close()
    lines = read_events(log)
    (resumed,) = [e for e in lines if e["event.action"] == "event_log.resumed"]
    assert resumed["vidupd.dropped"] == 3 and resumed["vidupd.dropped_by_kind"]["completed"] == 3
    assert resumed["log.level"] == "warn"
    kept = {e["file.path"] for e in lines if e["event.action"] == "upload.completed"}
    assert len(kept) == 3  # the newest three were held back and written late
    again = {e["file.path"]: e["vidupd.remote_id"] for e in lines
             if e["event.action"] == "event_log.reemitted" and "vidupd.remote_id" in e}
    assert again == ids  # every remote id of the outage is in the log again, marked as re-emitted


def test_an_upload_that_ends_while_the_disk_is_full_is_resumed_once_space_returns(tmp_path, tmpfs):
    """The disk fills mid-upload: the platform takes the file, but its outcome cannot be
    recorded. Once the ballast goes, the job is given back and finished at once (before: it
    sat in `uploading` until its lease ran out, minutes later), and still exactly once."""
    site = FaultSite(tmp_path, ("--max-rate", "400K"))
    try:
        disk = tmpfs("state-fs", "4m")
        site.write(state_dir=disk / "state", workers=1)
        big = drop_random(site.outbox / "big.mp4", 2_000_000)  # about 5 s at the sandbox's rate
        with site.daemon() as d:
            wait_for(lambda: actions(site.events, "upload.started"), 60, what="the upload under way")
            ballast = fill(disk)
            wait_for(lambda: site.sandbox.entries(), 60, what="the platform holding the file")
            wait_for(lambda: actions(site.events, "ledger.unreachable"), 30, what="the full disk noticed")
            time.sleep(2)  # the worker ends with its outcome unrecorded
            ballast.unlink()
            wait_for(lambda: [r for r in ledger_rows(site.state) if r[1] == "done"], 45,
                     what="the job finished soon after the space came back (not a lease later)")
            assert d.stop() == 0
        assert integrity(site.state) == "ok"
        assert_exactly_once(site, [big])
    finally:
        site.close()

"""Small units: progress rate limiting, secret redaction, filters, sidecars, watcher rescans."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, wait_for

from vidupd.config import WatchConfig
from vidupd.core import events
from vidupd.core.events import LogConfig
from vidupd.core.filters import PathFilter, kind_of
from vidupd.core.secrets import Secret, redact
from vidupd.engine.progress import ProgressReporter
from vidupd.intake.sidecar import SidecarError, read_metadata
from vidupd.intake.watcher import Watcher


def test_progress_events_every_ten_percent_or_five_seconds():
    now = [0.0]
    announced: list[int] = []
    recorded: list[int] = []
    r = ProgressReporter(1000, record=lambda d, rate: recorded.append(d), announce=lambda d, rate: announced.append(d),
                         clock=lambda: now[0])
    for done in range(10, 1001, 10):  # 1% steps, instantly
        r(done)
    assert announced == list(range(100, 1000, 100))  # every 10%, not at the end (completion says it)
    announced.clear()
    slow = ProgressReporter(10**9, record=lambda d, rate: None, announce=lambda d, rate: announced.append(d),
                            clock=lambda: now[0])
    for i in range(1, 21):
        now[0] += 1.0
        slow(i * 1000)
    assert len(announced) == 4  # tiny steps: once every 5 s
    assert recorded[0] == 10  # the first report reaches the ledger at once


def test_secrets_are_redacted_everywhere_in_the_event_log(tmp_path: Path):
    token = Secret("tok-7f3a9c1e-very-secret", "inline")
    log = tmp_path / "events.jsonl"
    events.configure(LogConfig(events=str(log), level="debug"))
    events.emit("upload.failed", f"request to https://api/x?access_token={token.reveal()} failed",
                error=f"boom {token.reveal()}", credential=token)
    logging.getLogger("urllib3.connectionpool").warning("GET /create.json?access_token=%s", token.reveal())
    text = log.read_text()
    assert "tok-7f3a9c1e-very-secret" not in text
    lines = [json.loads(l) for l in text.splitlines()]
    assert lines[0]["vidupd.credential"] == "***" and "***" in lines[0]["message"]
    assert lines[1]["event.action"] == "log" and lines[1]["log.logger"] == "urllib3.connectionpool"
    assert redact("x tok-7f3a9c1e-very-secret y") == "x *** y" and "very-secret" not in repr(token)
    events.configure(LogConfig())


def test_event_log_is_reopened_after_logrotate(tmp_path: Path):
    log = tmp_path / "events.jsonl"
    events.configure(LogConfig(events=str(log)))
    events.emit("a.one", "first")
    os.rename(log, tmp_path / "events.jsonl.1")
    time.sleep(1.1)  # the sink looks at the inode at most once a second
    events.emit("a.two", "second")
    assert "a.two" in log.read_text() and "a.two" not in (tmp_path / "events.jsonl.1").read_text()
    events.configure(LogConfig())


@pytest.mark.parametrize("name,ok", [
    ("clip.mp4", True), ("clip.mp4.part", False), (".clip.mp4", False), ("clip.tmp", False),
    ("clip.mp4.crdownload", False), ("clip.mp4.filepart", False), ("clip.mp4~", False), (".clip.mp4.swp", False),
    (".clip.mp4.AbC123", False), ("clip.json", False), ("sub/clip.mp4", True), (".sync/clip.mp4", False),
    ("raw/clip.mp4", False),
])
def test_default_and_configured_excludes(name: str, ok: bool):
    w = WatchConfig(path=Path("/w"), targets=("t",), exclude=("raw",), recursive=True)
    assert PathFilter(w).accepts(Path(name)) is ok


def test_kinds_by_extension():
    assert [kind_of(Path(n), "auto") for n in ("a.MP4", "a.jpg", "a.srt", "a.url", "a.txt")] == [
        "video", "image", "attached", "url_pull", None]
    assert kind_of(Path("a.txt"), "attached") == "attached"


def test_sidecar_forms_and_errors(tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert read_metadata(clip).title == "clip"
    (tmp_path / "clip.json").write_text(json.dumps({"title": "T", "tags": "a, b", "cate_id": 7}))
    m = read_metadata(clip)
    assert (m.title, m.tags, dict(m.extra)) == ("T", ("a", "b"), {"cate_id": 7})
    (tmp_path / "clip.mp4.json").write_text(json.dumps({"title": 5}))  # the more specific one wins
    with pytest.raises(SidecarError, match=r"clip\.mp4\.json: title"):
        read_metadata(clip)
    (tmp_path / "clip.mp4.json").write_text("[1, 2]")
    with pytest.raises(SidecarError, match="must hold a JSON object"):
        read_metadata(clip)


def test_inotify_overflow_triggers_a_rescan(tmp_path: Path):
    w = WatchConfig(path=tmp_path, targets=("t",), settle_seconds=0)
    seen: list[Path] = []
    watcher = Watcher((w,), 3600, lambda batch: seen.extend(p for p, _, _ in batch), lambda r: None, tick=0.05)
    watcher.start()
    try:
        scans = watcher.scans
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
        wait_for(lambda: watcher.scans > scans, 5, what="a rescan")
    finally:
        watcher.stop()


def test_periodic_rescan_only_on_this_hosts_turn_but_a_requested_one_always(tmp_path: Path):
    """Issue 13: on a shared outbox one host per round does the safety-net rescan."""
    w = WatchConfig(path=tmp_path, targets=("t",), settle_seconds=0)
    turns: list[bool] = []
    mine = [False]

    def turn() -> bool:
        turns.append(mine[0])
        return mine[0]

    watcher = Watcher((w,), 0.1, lambda batch: None, lambda r: None, tick=0.02, rescan_turn=turn)
    watcher.start()
    try:
        scans = watcher.scans  # the start-up scan ran
        wait_for(lambda: len(turns) >= 3, 5, what="rescans due")
        assert watcher.scans == scans  # another host's turn each time
        watcher.request_rescan()  # an overflow or a reload: this host needs it itself
        wait_for(lambda: watcher.scans > scans, 5, what="the requested rescan")
        mine[0] = True
        wait_for(lambda: watcher.scans > scans + 1, 5, what="this host's turn")
    finally:
        watcher.stop()


def test_polling_mode_for_network_shares(site):
    site.write(watch={"poll": True, "poll_interval": 0.5})
    with DaemonProcess(site.config, site.events) as d:
        (site.outbox / "nfs.mp4").write_bytes(b"data from another host" * 100)
        wait_for(lambda: actions(site.events, "upload.completed"), 30, what="upload seen by polling")
        d.stop()


def test_one_pass_gives_whole_and_piece_md5s(tmp_path: Path):
    import hashlib

    from vidupd.core.content import md5_file
    from vidupd.core.model import FileIdentity

    p = tmp_path / "v.mp4"
    data = os.urandom((9 << 20) + 77)  # 4.x pieces of 2 MiB, several 4 MiB blocks
    p.write_bytes(data)
    d = md5_file(p, FileIdentity.of(p.stat()), piece_size=2 << 20)
    assert d.md5 == hashlib.md5(data).hexdigest()
    assert list(d.pieces) == [hashlib.md5(data[i:i + (2 << 20)]).hexdigest() for i in range(0, len(data), 2 << 20)]
    assert d.piece(2 << 20, 2 << 20, len(data)) == d.pieces[1]
    assert d.piece(8 << 20, (1 << 20) + 77, len(data)) == d.pieces[4]  # the short last piece
    assert d.piece(1 << 20, 2 << 20, len(data)) is None and d.piece(0, 1 << 20, len(data)) is None
    assert md5_file(p, FileIdentity.of(p.stat())).pieces == ()

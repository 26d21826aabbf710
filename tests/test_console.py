"""What a person at a terminal sees (issue 11, console): events as one readable, coloured
line each on a real pseudo-terminal, while the JSON lines stay exactly JSON wherever they go
to a file or a pipe, and `[log] format = "json"` keeps JSON even on a terminal."""

from __future__ import annotations

import json
import re
import signal

import pytest
from helpers import DaemonProcess, actions, wait_for, write_config
from terminal import PtyProcess, plain

pytestmark = pytest.mark.timeout(180)

HUMAN = re.compile(r"^\d\d:\d\d:\d\d (INFO |WARN |ERROR|DEBUG) [a-z_]+\.[a-z_]+ +\S")


def human_lines(screen: str) -> list[str]:
    return [line for line in plain(screen).split("\n") if HUMAN.match(line)]


def test_demo_on_a_terminal_shows_human_coloured_lines(tmp_path):
    with PtyProcess("demo", "--once", "--dir", str(tmp_path / "demo"), "--sample-mib", "1") as p:
        assert p.wait(timeout=150) == 0, p.screen
        screen = p.screen
    assert '{"@timestamp"' not in screen, "no raw JSON on the terminal"
    lines = human_lines(screen)
    assert any(" upload.completed " in line and "vidupd-sample.mp4" in line for line in lines), screen
    assert any(" upload.queued " in line for line in lines), screen
    assert "\x1b[" in screen, "coloured"
    for line in plain(screen).split("\n"):  # every event is one line: none starts mid-event
        assert not line.startswith(("{", "  ", "event.", "file.")), line
    # the same demo with stdout a pipe (stderr on the terminal): the events there are the JSON lines, untouched
    with PtyProcess("demo", "--once", "--dir", str(tmp_path / "demo2"), "--sample-mib", "1",
                    on_tty=("stderr",)) as p:
        assert p.wait(timeout=150) == 0, p.screen
    lines = p.piped.decode().splitlines()
    assert lines and all(line.startswith('{"@timestamp": ') for line in lines), lines[:3]
    events = [json.loads(line) for line in lines]
    assert any(e["event.action"] == "upload.completed" for e in events)
    assert "\x1b[" not in p.piped.decode()


def _site(tmp_path, fmt: str | None = None):
    outbox, dest = tmp_path / "outbox", tmp_path / "dest"
    outbox.mkdir()
    dest.mkdir()
    log = {"events": str(tmp_path / "events.jsonl"), "level": "info", **({"format": fmt} if fmt else {})}
    config = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "workers": 1},
                          {"arch": {"provider": "directory", "dest": str(dest)}},
                          [{"path": str(outbox), "targets": ["arch"], "settle_seconds": 0.5}], log)
    return config, outbox, tmp_path / "events.jsonl"


def test_run_in_a_terminal_shows_human_lines_on_stderr_and_json_in_the_file(tmp_path):
    config, outbox, events = _site(tmp_path)
    with PtyProcess("run", "-c", str(config), on_tty=("stderr",)) as p:
        p.wait_for_text("daemon.started")
        (outbox / "clip.mp4").write_bytes(b"x" * 5000)
        p.wait_for_text("upload.completed")
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
        screen = p.screen
    lines = human_lines(screen)
    done = [line for line in lines if " upload.completed " in line]
    assert done and "clip.mp4" in done[0], screen
    completed = actions(events, "upload.completed")
    assert completed and completed[0]["vidupd.remote_id"] in done[0] or completed[0]["vidupd.remote_id"] in screen
    assert p.piped == b"", "stdout stays empty: the events went to their file"
    raw = events.read_text()
    assert "\x1b" not in raw
    assert all(line.startswith('{"@timestamp": ') for line in raw.splitlines())
    # the daemon under systemd or a pipe: stderr is no terminal, nothing human is written there
    (outbox / "clip2.mp4").write_bytes(b"z" * 5000)
    with DaemonProcess(config, events) as d:
        wait_for(lambda: len(actions(events, "upload.completed")) >= 2, 30, what="the upload")
        assert d.stop() == 0
    assert human_lines(d.stderr()) == []


def test_format_json_keeps_json_on_a_terminal(tmp_path):
    config, outbox, events = _site(tmp_path, fmt="json")
    with PtyProcess("run", "-c", str(config)) as p:
        wait_for(lambda: actions(events, "daemon.started"), 30, what="daemon.started")
        (outbox / "clip.mp4").write_bytes(b"y" * 5000)
        wait_for(lambda: actions(events, "upload.completed"), 30, what="the upload")
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
    assert human_lines(p.screen) == [], p.screen


def test_bad_format_is_a_config_error(tmp_path):
    from helpers import vidupd

    config, _, _ = _site(tmp_path, fmt="pretty")
    r = vidupd("check-config", "-c", str(config))
    assert r.returncode == 2
    assert "log.format" in r.stderr and "console" in r.stderr

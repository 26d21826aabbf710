"""The event log of a full daemon run, read the way Filebeat's ndjson parser reads it (one
JSON object per line), checked line by line against the ECS names of the contract
(ARCHITECTURE.md, "Event log")."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest
import vidupd
from helpers import DaemonProcess, actions, wait_for

pytestmark = pytest.mark.timeout(120)

# ECS fields vidupd writes; anything else must live under vidupd.*
ECS_FIELDS = {
    "@timestamp", "message", "log.level", "log.logger",
    "event.action", "event.outcome", "event.id", "event.dataset",
    "file.path", "file.size", "error.message", "error.type",
    "service.name", "host.hostname", "process.pid",
    # issue 11: ECS categorisation and the fields that moved to their ECS names
    "event.kind", "event.category", "event.type", "ecs.version", "service.version", "event.duration",
    "file.hash.md5", "url.full",
}
KINDS = {"event", "metric"}
CATEGORIES = {"file", "web", "process", "configuration", "authentication", "database"}
TYPES = {"start", "end", "creation", "deletion", "change", "info", "error", "denied"}
DEPRECATED = {"vidupd.duration_seconds": "event.duration", "vidupd.md5": "file.hash.md5", "vidupd.url": "url.full",
              "vidupd.version": "service.version"}
LEVELS = {"debug", "info", "warn", "error"}
OUTCOMES = {"success", "failure", "unknown"}
REMOTE_KINDS = {"video", "image", "attached", "url_pull", "registered"}
UPLOAD_FIELDS = ("file.path", "file.size", "vidupd.target", "vidupd.provider", "vidupd.job_id")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def json_lines(path: Path) -> list[dict]:
    """A strict JSON-lines reader: every line is exactly one JSON object, UTF-8, no blank lines."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the last line is complete"
    out = []
    for n, line in enumerate(raw.decode("utf-8").split("\n")[:-1], 1):
        assert line.strip() == line and line, f"line {n}: blank or padded"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"line {n}: not an object"
        out.append(obj)
    return out


def drop(path: Path, size: int, seed: int) -> Path:
    block = hashlib.sha256(f"{seed}".encode()).digest() * 32
    tmp = path.with_name("." + path.name + ".part")
    tmp.write_bytes((block * (size // len(block) + 1))[:size])
    os.replace(tmp, path)
    return path


def check_line(n: int, e: dict) -> None:
    where = f"line {n} ({e.get('event.action')})"
    for key in e:
        assert key in ECS_FIELDS or (key.startswith("vidupd.") and len(key) > 7), f"{where}: {key!r} is not allowed"
    assert TIMESTAMP.match(e["@timestamp"]), f"{where}: @timestamp {e['@timestamp']!r}"
    ts = dt.datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00"))
    assert ts.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - ts).total_seconds()) < 600
    assert e["log.level"] in LEVELS, where
    assert isinstance(e["message"], str) and e["message"], where
    assert isinstance(e["event.action"], str) and re.fullmatch(r"[a-z_]+\.[a-z_]+|log", e["event.action"]), where
    assert isinstance(e["event.id"], str) and e["event.id"], where
    assert e["service.name"] == "vidupd" and e["event.dataset"] == "vidupd.events"
    assert isinstance(e["process.pid"], int)
    if "event.outcome" in e:
        assert e["event.outcome"] in OUTCOMES, where
    assert e["ecs.version"].startswith("8.") and e["service.version"] == vidupd.__version__, where
    assert e["event.kind"] in KINDS, where
    assert set(e.get("event.category", [])) <= CATEGORIES and isinstance(e.get("event.category", []), list), where
    assert isinstance(e["event.type"], list) and len(e["event.type"]) == 1 and set(e["event.type"]) <= TYPES, where
    if "error.message" in e or "error.type" in e:  # error.* only on failures, so error views show failures
        assert e["log.level"] == "error", where
    for old, new in DEPRECATED.items():  # the old name stays for one release, beside the ECS one
        if old in e:
            assert new in e, f"{where}: {old} without {new}"
            if old == "vidupd.duration_seconds":
                assert isinstance(e[new], int) and abs(e[new] - e[old] * 1e9) < 1e6, where
            elif old != "vidupd.version":
                assert e[new] == e[old], where
    if e["event.action"] == "upload.completed":
        assert e["event.type"] == ["creation"] and e["event.category"] == ["file", "web"], where
    if e["event.action"] == "upload.failed":
        assert e["event.type"] == ["error"], where
    if "file.size" in e:
        assert isinstance(e["file.size"], int) and e["file.size"] >= 0, where
    if "file.path" in e:
        assert isinstance(e["file.path"], str) and os.path.isabs(e["file.path"]), where
    if e["log.level"] == "error" and e["event.action"].startswith(("upload.", "media.")):
        assert e.get("event.outcome") == "failure", where
    if e["event.action"].startswith("upload."):
        for f in UPLOAD_FIELDS:
            assert f in e, f"{where}: missing {f}"
        assert isinstance(e["vidupd.job_id"], int) and isinstance(e["vidupd.target"], str), where
    if e["event.action"] in ("upload.completed", "upload.remote_id", "media.ready"):
        assert isinstance(e["vidupd.remote_id"], str) and e["vidupd.remote_id"], where
        assert e["vidupd.remote_kind"] in REMOTE_KINDS, where
    if e["event.action"] == "upload.completed":
        assert e["event.outcome"] == "success", where
    if "vidupd.remote_kind" in e:
        assert e["vidupd.remote_kind"] in REMOTE_KINDS, where


def test_every_line_of_a_full_run_uses_the_contract_names(site, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the destination folder should be")
    targets = {"arch": {"provider": "directory", "dest": str(site.dest)},
               "broken": {"provider": "directory", "dest": str(blocked)}}
    watches = [{"path": str(site.outbox), "targets": ["arch"], "settle_seconds": 1},
               {"path": str(tmp_path / "outbox-b"), "targets": ["broken"], "settle_seconds": 1}]
    (tmp_path / "outbox-b").mkdir()
    site.write(top={"max_rate": 5_000_000}, targets=targets, watches=watches)
    a = drop(site.outbox / "a.mp4", 3_000_000, seed=1)  # progress events too
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "upload.completed"), 30, what="a.mp4 uploaded")
        (site.outbox / "copy-of-a.mp4").write_bytes(a.read_bytes())  # duplicate content: upload.skipped
        drop(site.outbox / "notes.xyz", 100, seed=2)  # unknown kind: upload.skipped
        drop(site.outbox / "bad.mp4", 100, seed=3)
        (site.outbox / "bad.json").write_text("{not json")  # file.rejected
        drop(tmp_path / "outbox-b" / "b.mp4", 100, seed=4)  # permanent failure: upload.failed
        wait_for(lambda: actions(site.events, "upload.completed") and actions(site.events, "upload.skipped")
                 and actions(site.events, "upload.failed") and actions(site.events, "file.rejected")
                 and len(actions(site.events, "upload.skipped")) >= 2, 30, what="every kind of event")
        d.signal(signal.SIGHUP)  # reload (unchanged config)
        wait_for(lambda: actions(site.events, "daemon.reloaded"), 20, what="reload")
        assert d.stop() == 0

    lines = json_lines(site.events)
    for n, e in enumerate(lines, 1):
        check_line(n, e)
    ids = [e["event.id"] for e in lines]
    assert len(set(ids)) == len(ids), "event.id is unique per line (Filebeat's document id)"
    # etc/filebeat.yml fingerprints a file by its first 256 bytes: the first line alone is enough
    assert min(len(line) for line in site.events.read_bytes().split(b"\n")[:-1]) >= 256
    seen = {e["event.action"] for e in lines}
    for action in ("daemon.started", "upload.queued", "upload.started", "upload.progress", "upload.remote_id",
                   "upload.completed", "upload.skipped", "upload.failed", "file.rejected", "daemon.reloaded",
                   "daemon.stopping", "daemon.stopped"):
        assert action in seen, action
    (done,) = [e for e in lines if e["event.action"] == "upload.completed"]
    assert done["file.path"] == str(a) and done["file.size"] == 3_000_000
    assert done["vidupd.target"] == "arch" and done["vidupd.provider"] == "directory"
    (failed,) = [e for e in lines if e["event.action"] == "upload.failed"]
    assert failed["log.level"] == "error" and failed["error.message"] and failed["vidupd.target"] == "broken"
    assert isinstance(done["event.duration"], int) and done["event.duration"] > 0
    assert done["file.hash.md5"] == hashlib.md5(a.read_bytes()).hexdigest() == done["vidupd.md5"]
    started = next(e for e in lines if e["event.action"] == "daemon.started")
    assert started["event.type"] == ["start"] and started["event.category"] == ["process"]
    progress = next(e for e in lines if e["event.action"] == "upload.progress")
    assert progress["event.kind"] == "metric"


def test_a_retry_is_a_warning_with_its_reason_not_an_error(make_site):
    """upload.retrying used to carry error.message at info/warning level, so every retried 5xx
    landed in the error views; its reason is now vidupd.reason (and vidupd.reason_type)."""
    from test_vod_e2e import Env

    env = make_site(Env, fail_rate=0.35, seed=3)
    for n in range(4):
        drop(env.outbox / f"r{n}.mp4", 600_000 + n, seed=n)
    with env.daemon() as d:
        wait_for(lambda: len(actions(env.events, "upload.completed")) + len(actions(env.events, "upload.failed"))
                 >= 4, 180, what="every upload settled")
        assert d.stop() == 0
    lines = json_lines(env.events)
    for n, e in enumerate(lines, 1):
        check_line(n, e)
    retrying = [e for e in lines if e["event.action"] == "upload.retrying"]
    assert retrying, "the faults caused retries"
    for e in retrying:  # a request tried again within an attempt: info; a whole attempt later: warning
        assert e["log.level"] in ("info", "warn") and "error.message" not in e and "error.type" not in e
        assert e["vidupd.reason"] and e["event.type"] == ["info"]
        assert ("vidupd.step" in e) == (e["log.level"] == "info"), e
        if e["log.level"] == "warn":
            assert e["vidupd.reason_type"] == "TransientError"

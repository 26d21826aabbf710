"""Youku end to end: the real daemon (subprocess) against the Youku sandbox over HTTP on
loopback, with kill -9, token expiry, injected faults, expired upload tokens and the
duplicate-id bug of the seed."""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from pathlib import Path

import pytest
from helpers import SandboxSite, actions, drop_random as drop, md5_file as md5, wait_for

from vidupd.sandbox.common import SandboxOptions
from vidupd.sandbox.youku import YoukuSandbox

SLICE = 2 << 20  # the sandbox's slice length (slice_length 2048 KB)


class Env(SandboxSite):
    """The daemon against the Youku sandbox."""

    def __init__(self, root: Path, **options):
        super().__init__(root)
        self.box = YoukuSandbox(root / "sandbox", SandboxOptions(slice_task_timeout=2, **options), self.journal,
                                encode_seconds=0.5)
        self.box.start()
        self.creds = dict(self.box.credentials)
        self.write_config(2, {"youku": {
            "provider": "youku", "api_base": self.box.api_base, "client_id": self.creds["client_id"],
            "client_secret": self.creds["client_secret"], "access_token": self.creds["access_token"],
            "refresh_token": self.creds["refresh_token"], "confirm_wait": 1, "slice_concurrency": 4,
            "upload_protocol": "slices",  # the six-step flow (the OSS flow: test_youku_oss_e2e.py)
            "ready_timeout": 60}})

    def close(self) -> None:
        self.box.shutdown()


@pytest.fixture
def env_factory(make_site):
    return partial(make_site, Env)


def upload_token(env: Env) -> str:
    db = sqlite3.connect(f"file:{env.state / 'ledger.sqlite3'}?mode=ro", uri=True)
    (data,) = db.execute("SELECT data FROM checkpoints").fetchone()
    db.close()
    return json.loads(data)["upload_token"]


def test_three_files_three_video_ids_matching_md5_no_secret_anywhere(env_factory):
    env = env_factory()
    files = [drop(env.outbox / "big.mp4", 65 << 20), drop(env.outbox / "b.mov", 3 << 20),
             drop(env.outbox / "c.mkv", 1 << 20)]
    before = sorted(p.name for p in env.outbox.iterdir())
    with env.daemon() as d:
        wait_for(lambda: len(actions(env.events, "media.ready")) >= 3, 120, what="three ready videos")
        assert d.stop() == 0
    done = env.completed()
    ids = {Path(e["file.path"]).name: e["vidupd.remote_id"] for e in done}
    assert len(ids) == 3 and len(set(ids.values())) == 3
    journal = {e["remote_id"]: e for e in env.journal.entries()}
    for f in files:
        assert journal[ids[f.name]]["md5"] == md5(f)
    assert all(e["vidupd.remote_kind"] == "video" and e["vidupd.provider"] == "youku" for e in done)
    # every id was logged the moment it was known, before the upload counted as complete
    for e in actions(env.events, "upload.remote_id"):
        assert e["vidupd.remote_id"] in ids.values()
    assert sorted(p.name for p in env.outbox.iterdir()) == before  # nothing written into the watch
    secrets = [env.creds["client_secret"], env.creds["access_token"], env.creds["refresh_token"]]
    haystacks = [env.events.read_bytes(), env.events.with_suffix(".stderr").read_bytes()]
    haystacks += [p.read_bytes() for p in env.state.rglob("*") if p.is_file()]
    for s in secrets:
        assert not any(s.encode() in h for h in haystacks), "a configured secret leaked into the log or state"


def test_kill9_mid_upload_resumes_on_the_remembered_server(env_factory):
    env = env_factory(max_rate=8_000_000)
    f = drop(env.outbox / "long.mp4", 24 << 20)
    d = env.daemon().start()
    wait_for(lambda: any(e.get("vidupd.bytes_done", 0) >= 8 << 20 for e in actions(env.events, "upload.progress")),
             60, what="a third uploaded")
    d.kill9()
    received_before = env.box.slice_bytes_received
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the resumed upload")
        d.stop()
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f)
    assert len(actions(env.events, "upload.remote_id")) == 1 and len(env.completed()) == 1
    resent = env.box.slice_bytes_received - (24 << 20)
    assert received_before > 0 and resent <= 4 * SLICE, f"re-sent {resent} bytes"
    assert not actions(env.events, "upload.restarted")  # resumed, not started over


def test_access_token_expiring_mid_upload_is_refreshed(env_factory):
    env = env_factory(token_ttl=1.5, max_rate=6_000_000)
    f = drop(env.outbox / "t.mp4", 16 << 20)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="upload across a token expiry")
        d.stop()
    assert actions(env.events, "auth.refreshed")
    assert not list(env.state.rglob("tokens.json"))  # the rotated pair lives in the ledger
    db = sqlite3.connect(f"file:{env.state / 'ledger.sqlite3'}?mode=ro", uri=True)
    ((generation,),) = db.execute("SELECT generation FROM shared WHERE key LIKE 'youku-oauth:%'").fetchall()
    db.close()
    assert generation >= 1  # refreshed at least once
    assert env.journal.entries()[0]["md5"] == md5(f)


def test_ten_percent_faults(env_factory):
    env = env_factory(fail_rate=0.1, seed=11)
    files = [drop(env.outbox / f"f{i}.mp4", (3 + i) << 20) for i in range(3)]
    with env.daemon() as d:
        wait_for(lambda: len(env.completed()) >= 3, 180, what="uploads despite faults")
        d.stop()
    by_md5 = {e["md5"] for e in env.journal.entries()}
    assert {md5(f) for f in files} <= by_md5 and len(env.journal.entries()) == 3
    assert not actions(env.events, "upload.failed")


def test_expired_upload_token_starts_over(env_factory):
    env = env_factory(max_rate=4_000_000)
    f = drop(env.outbox / "x.mp4", 12 << 20)
    d = env.daemon().start()
    wait_for(lambda: actions(env.events, "upload.progress"), 60, what="upload under way")
    assert d.stop() == 0
    env.box.expire_upload_token(upload_token(env))
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="upload after the token expired")
        d.stop()
    (restart,) = actions(env.events, "upload.restarted")
    assert "expired" in restart["message"]
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f)


def test_duplicate_ids_need_attention(env_factory):
    env = env_factory(duplicate_ids=True)
    drop(env.outbox / "one.mp4", 1 << 20)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 60, what="first upload")
        drop(env.outbox / "two.mp4", 1 << 20)
        wait_for(lambda: actions(env.events, "upload.duplicate_remote_id"), 60, what="duplicate id detected")
        d.stop()
    (dup,) = actions(env.events, "upload.duplicate_remote_id")
    assert dup["log.level"] == "error" and dup["vidupd.remote_id"] == env.completed()[0]["vidupd.remote_id"]
    assert len(env.completed()) == 1  # not treated as done
    db = sqlite3.connect(f"file:{env.state / 'ledger.sqlite3'}?mode=ro", uri=True)
    states = dict(db.execute("SELECT path, state FROM jobs").fetchall())
    assert states[str(env.outbox / "two.mp4")] == "attention"

"""Youku's OSS-based upload end to end: the real daemon (subprocess) against the Youku
sandbox (API host + its OSS bucket) over HTTP on loopback: one video per file, kill -9
resuming the SAME multipart upload, STS credentials expiring every few seconds, 10% faults,
`auto` against a sandbox that only speaks the six steps, a long Chinese title and
description through a front end that refuses request lines over 8 KB, password videos, and
a vanished file's upload cancelled and its multipart upload aborted."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import SandboxSite, actions, drop_random as drop, md5_file as md5, wait_for

from vidupd.sandbox.common import SandboxOptions
from vidupd.sandbox.youku import YoukuSandbox

PART = 1 << 20  # part_size below
# The sandbox verifies V4 once it has --oss-signature; before that it speaks V1 only.
SIGNATURE = "v4" if "oss_signature" in {f.name for f in dataclasses.fields(SandboxOptions)} else "v1"


class Env(SandboxSite):
    """The daemon against the Youku sandbox, uploading through the OSS flow."""

    def __init__(self, root: Path, target: dict[str, Any] | None = None, **options: Any):
        super().__init__(root)
        self.box = YoukuSandbox(root / "sandbox", SandboxOptions(**options), self.journal, encode_seconds=0.3)
        self.box.start()
        self.creds = dict(self.box.credentials)
        self.write_config(2, {"youku": {
            "provider": "youku", "api_base": self.box.api_base, "client_id": self.creds["client_id"],
            "client_secret": self.creds["client_secret"], "access_token": self.creds["access_token"],
            "refresh_token": self.creds["refresh_token"], "confirm_wait": 1, "part_size": PART,
            "part_concurrency": 2, "oss_signature": SIGNATURE, "ready_timeout": 60, **(target or {})}})

    def counters(self) -> dict[str, int]:
        return self.box.counters()

    def checkpoint(self) -> dict[str, Any]:
        db = sqlite3.connect(f"file:{self.state / 'ledger.sqlite3'}?mode=ro", uri=True)
        rows = db.execute("SELECT data FROM checkpoints").fetchall()
        db.close()
        return json.loads(rows[0][0]) if rows else {}

    def close(self) -> None:
        self.box.shutdown()


@pytest.fixture
def env_factory(make_site):
    return partial(make_site, Env)


def flows(env: Env) -> list[str]:
    return [e.get("flow") for e in env.journal.entries()]


def no_secret_in(env: Env, *extra: str) -> None:
    secrets = [env.creds["client_secret"], env.creds["access_token"], env.creds["refresh_token"], *extra]
    haystacks = [env.events.read_bytes(), env.events.with_suffix(".stderr").read_bytes()]
    haystacks += [p.read_bytes() for p in env.state.rglob("*") if p.is_file()]
    for s in secrets:
        assert not any(s.encode() in h for h in haystacks), "a secret leaked into the log or state"


def test_oss_flow_one_video_per_file(env_factory):
    env = env_factory()
    files = [drop(env.outbox / "big.mp4", 9 * PART + 1234), drop(env.outbox / "small.mov", 300_000)]
    with env.daemon() as d:
        wait_for(lambda: len(actions(env.events, "media.ready")) >= 2, 120, what="two ready videos")
        assert d.stop() == 0
    journal = {e["remote_id"]: e for e in env.journal.entries()}
    done = {Path(e["file.path"]).name: e["vidupd.remote_id"] for e in env.completed()}
    assert len(journal) == len(done) == 2 and set(done.values()) == set(journal)
    for f in files:
        assert journal[done[f.name]]["md5"] == md5(f)
    assert flows(env) == ["oss", "oss"]
    c = env.counters()
    assert c["committed_oss"] == 2 and c["open_oss"] == 0 and c["slice_bytes_received"] == 0
    assert c["oss_bytes_received"] == sum(f.stat().st_size for f in files)  # every byte once
    assert {e["vidupd.protocol"] for e in actions(env.events, "upload.created")} == {"oss"}
    no_secret_in(env)


def test_kill9_resumes_the_same_multipart_upload(env_factory):
    env = env_factory(max_rate=4_000_000)
    size = 24 * PART
    f = drop(env.outbox / "long.mp4", size)
    d = env.daemon().start()
    wait_for(lambda: len((env.checkpoint().get("oss") or {}).get("parts") or ()) >= 6, 60, what="six parts done")
    d.kill9()
    saved = env.checkpoint()
    upload_id = saved["oss"]["upload_id"]
    assert saved["protocol"] == "oss" and "temp_access_secret" not in saved and "security_token" not in saved
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the resumed upload")
        d.stop()
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and entry["flow"] == "oss"
    (resumed,) = actions(env.events, "upload.resumed")
    assert resumed["vidupd.upload_id"] == upload_id and resumed["vidupd.parts_done"] >= 6
    assert not actions(env.events, "upload.restarted")  # the same multipart upload, not a new one
    assert len(actions(env.events, "upload.created")) == 1  # one create: one Youku upload
    resent = env.counters()["oss_bytes_received"] - size
    assert 0 <= resent <= 2 * PART, f"re-sent {resent} bytes"  # at most the parts in flight at the kill
    assert len(env.completed()) == 1


def test_credentials_expiring_every_few_seconds(env_factory):
    env = env_factory(token_ttl=3, max_rate=2_000_000)
    f = drop(env.outbox / "t.mp4", 16 * PART)  # about 8 s at 2 MB/s
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="upload across credential expiries")
        d.stop()
    assert env.counters()["sts_renewed"] >= 1
    assert any("upload credentials refreshed" in e["message"] for e in actions(env.events, "auth.refreshed"))
    assert not actions(env.events, "upload.restarted")  # renewed: the same multipart upload went on
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and entry["flow"] == "oss"
    assert env.counters()["oss_bytes_received"] <= 16 * PART + 2 * PART


def test_ten_percent_faults(env_factory):
    env = env_factory(fail_rate=0.1, seed=5)
    files = [drop(env.outbox / f"f{i}.mp4", (3 + i) * PART + i) for i in range(3)]
    with env.daemon() as d:
        wait_for(lambda: len(env.completed()) >= 3, 180, what="uploads despite faults")
        d.stop()
    entries = env.journal.entries()
    assert sorted(e["md5"] for e in entries) == sorted(md5(f) for f in files)  # exactly one video per file
    assert flows(env) == ["oss"] * 3 and not actions(env.events, "upload.failed")
    assert actions(env.events, "upload.retrying")  # the faults were met, and retried
    assert env.counters()["committed_oss"] == 3


def test_auto_against_a_six_step_server_uses_the_slices(env_factory):
    env = env_factory(youku_protocol="slices", slice_task_timeout=2)
    f = drop(env.outbox / "legacy.mp4", 5 * PART + 77)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the six-step upload")
        d.stop()
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and entry["flow"] == "slices"
    c = env.counters()
    assert c["committed_slices"] == 1 and c["oss_bytes_received"] == 0 and c["slice_bytes_received"] >= 5 * PART
    assert [e["vidupd.protocol"] for e in actions(env.events, "upload.created")] == ["slices"]


def test_long_chinese_title_and_description(env_factory):
    env = env_factory()
    title = "优酷开放平台上传接口测试用的很长很长的中文标题" * 9  # 207 characters
    title = title[:200]
    description = "这是一段描述视频内容的中文文字，" * 125  # 2,000 characters: an 18 KB query string
    (env.outbox / "长标题.json").write_text(json.dumps({"title": title, "description": description,
                                                        "tags": ["测试", "vidupd"]}, ensure_ascii=False))
    f = drop(env.outbox / "长标题.mp4", 2 * PART)  # after its sidecar: the watcher reads both together
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the upload with long metadata")
        d.stop()
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and entry["title"] == title[:50]
    show = requests.get(f"{env.box.api_base}/videos/show.json",
                        params={"client_id": env.creds["client_id"], "video_id": entry["remote_id"]}, timeout=10)
    body = show.json()
    assert body["title"] == title[:50] and body["description"] == description[:1999]


def test_password_video(env_factory):
    password = "watch-Pw-91735"
    env = env_factory(target={"public_type": "password", "watch_password": password})
    drop(env.outbox / "private.mp4", 2 * PART)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the password video")
        d.stop()
    (entry,) = env.journal.entries()
    show = requests.get(f"{env.box.api_base}/videos/show.json",
                        params={"client_id": env.creds["client_id"], "video_id": entry["remote_id"]}, timeout=10)
    assert show.json()["public_type"] == "password"
    no_secret_in(env, password)


def test_vanished_file_upload_is_cancelled_and_aborted(env_factory):
    env = env_factory(max_rate=3_000_000)
    f = drop(env.outbox / "gone.mp4", 20 * PART)
    d = env.daemon().start()
    wait_for(lambda: len((env.checkpoint().get("oss") or {}).get("parts") or ()) >= 3, 60, what="parts done")
    d.kill9()
    f.unlink()  # deleted before its upload finished
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "upload.failed"), 60, what="the job given up")
        d.stop()
    (abandoned,) = actions(env.events, "upload.abandoned")
    assert "cancelled" in abandoned["message"] and "aborted" in abandoned["message"]
    c = env.counters()
    assert c["cancelled_oss"] == 1 and c["open_oss"] == 0 and env.journal.entries() == []
    assert not list(env.box.oss.store.incomplete_uploads())  # the multipart upload is gone from OSS
    assert env.checkpoint() == {}

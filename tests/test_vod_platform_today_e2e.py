"""VOD as it is today (issue 10), end to end: the real daemon (a subprocess) against the VOD
and OSS sandboxes over HTTP on 127.0.0.1. Long Chinese metadata cut by bytes, a lost
CreateUploadVideo answer, a lost CompleteMultipartUpload answer with the daemon killed
before it could retry, RefreshUploadVideo moving the object, video states reported as
media.failed, Throttling.User retried. Bytes the sandbox received are counted, so "no second
transfer" is checked, not assumed."""

from __future__ import annotations

import json
from functools import partial

import pytest
from helpers import actions, drop_random as drop, md5_file as md5, wait_for
from test_vod_e2e import Env

from vidupd.providers.aliyun_vod.media import clean_text

MiB = 1 << 20
TITLE_200 = "".join(chr(0x4E00 + i % 500) for i in range(200))  # 600 bytes of UTF-8
DESCRIPTION_2000 = "视频描述，" * 400  # 6,000 bytes

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def make_env(make_site):
    return partial(make_site, Env)


def videos(env: Env) -> list:
    return [r for r in env.vod.state._media.values() if r.kind == "video"]


def field(event: dict, name: str):
    return event.get(f"vidupd.{name}", event.get(name))


def test_long_chinese_title_and_description_are_cut_by_bytes(make_env):
    env = make_env()
    (env.outbox / "片.mp4.json").write_text(json.dumps({"title": TITLE_200, "description": DESCRIPTION_2000},
                                                        ensure_ascii=False), encoding="utf-8")
    f = drop(env.outbox / "片.mp4", 1 * MiB)
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "media.ready"), 120, what="the video ready")
        d.stop()
    (done,) = env.completed()
    rec = env.vod.state.media(done["vidupd.remote_id"])
    assert rec.title == clean_text(TITLE_200, 128) and 126 <= len(rec.title.encode("utf-8")) <= 128
    description = rec.extra["Description"]
    assert DESCRIPTION_2000.startswith(description) and 1020 <= len(description.encode("utf-8")) <= 1024
    assert [e["md5"] for e in env.journal.entries()] == [md5(f)]
    assert not actions(env.events, "upload.failed")


def test_a_lost_create_answer_makes_one_video_and_one_transfer(make_env):
    env = make_env(drop_create_answer=1, target={"part_size": 2 * MiB})
    f = drop(env.outbox / "lost.mp4", 6 * MiB + 3)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the upload")
        d.stop()
    assert len(videos(env)) == 1  # the Create whose answer was lost made the only video
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and entry["remote_id"] == env.completed()[0]["vidupd.remote_id"]
    assert env.oss.parts_received == 4 and env.oss.part_bytes_received == f.stat().st_size
    assert [field(e, "reason") for e in actions(env.events, "upload.resumed")] == ["create answer lost"]


def test_a_lost_complete_answer_and_a_kill9_send_nothing_again(make_env):
    env = make_env(drop_complete_answer=1, target={"part_size": 2 * MiB})
    f = drop(env.outbox / "done.mp4", 10 * MiB)
    d = env.daemon().start()
    env.oss.add_completion_hook(lambda info: d.kill9())  # dies after OSS completed, before any answer or retry
    wait_for(lambda: d.proc.poll() is not None, 120, what="the kill at Complete")
    assert env.journal.entries() and not env.completed()
    with env.daemon() as d2:
        wait_for(lambda: env.completed(), 120, what="the resumed upload")
        d2.stop()
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f) and len(videos(env)) == 1
    assert env.oss.parts_received == 5 and env.oss.part_bytes_received == f.stat().st_size  # no second transfer
    assert not actions(env.events, "upload.restarted")
    assert len(actions(env.events, "upload.remote_id")) == 1


def test_refresh_handing_back_a_new_object_key_moves_the_upload(make_env):
    env = make_env(token_ttl=1.5, max_rate=8_000_000, refresh_new_key=1, target={"part_size": 2 * MiB})
    f = drop(env.outbox / "moved.mp4", 24 * MiB)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 180, what="the moved upload")
        d.stop()
    restarted = actions(env.events, "upload.restarted")
    assert [field(e, "reason") for e in restarted] == ["address changed"]
    (entry,) = env.journal.entries()
    rec = env.vod.state.media(entry["remote_id"])
    assert entry["md5"] == md5(f) and entry["object_key"] == rec.object_key and len(videos(env)) == 1
    assert not actions(env.events, "upload.failed")


@pytest.mark.parametrize("status", ["Blocked", "TranscodeFail"])
def test_failed_video_states_are_media_failed(make_env, status):
    env = make_env(video_status=status)
    drop(env.outbox / "bad.mp4", 300_000)
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "media.failed"), 120, what="media.failed")
        d.stop()
    (failed,) = actions(env.events, "media.failed")
    assert status in failed["message"] and not actions(env.events, "media.ready")


def test_throttling_user_is_retried_with_backoff(make_env):
    env = make_env(throttle_rate=0.5, seed=1, target={"part_size": 1 * MiB})
    f = drop(env.outbox / "busy.mp4", 3 * MiB)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the upload despite throttling")
        d.stop()
    # a retry is no failure: its reason is vidupd.reason, not error.message (issue 11, ECS)
    assert any("Throttling.User" in e["vidupd.reason"] for e in actions(env.events, "upload.retrying"))
    assert [e["md5"] for e in env.journal.entries()] == [md5(f)] and len(videos(env)) == 1

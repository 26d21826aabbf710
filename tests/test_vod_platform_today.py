"""VOD as it is today (issue 10), at the provider level against the VOD + OSS sandboxes over
HTTP on 127.0.0.1: Title/Description limits in bytes, the ReferenceId that makes a lost
CreateUploadVideo answer harmless, a lost CompleteMultipartUpload answer across a restart,
RefreshUploadVideo moving the object, the error codes and video states the real service
gives. The daemon-level versions are in test_vod_platform_today_e2e.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkvod.request.v20170321 import (CreateUploadAttachedMediaRequest, CreateUploadImageRequest,
                                            CreateUploadVideoRequest, GetVideoInfoRequest, RefreshUploadVideoRequest)
from provider_harness import Job, md5_of
from test_provider_aliyun_vod import Env

from vidupd.core.errors import PermanentError, UploadCancelled
from vidupd.core.model import Metadata
from vidupd.core.throttle import Throttle
from vidupd.providers.aliyun_vod.media import DESCRIPTION_MAX, TITLE_MAX, clean_text, cut_utf8

KIB, MIB = 1 << 10, 1 << 20
TITLE_200 = "".join(chr(0x4E00 + i % 500) for i in range(200))  # 200 Chinese characters: 600 bytes
DESCRIPTION_2000 = "视频描述，" * 400  # 2,000 characters: 6,000 bytes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    envs: list[Env] = []

    def start(**options: Any) -> Env:
        root = tmp_path / f"env{len(envs)}"
        root.mkdir()
        envs.append(Env(root, **options))
        return envs[-1]

    yield start
    for env in envs:
        env.shutdown()
        secrets = {env.vod.credentials["access_key_secret"], *env.issued}
        blob = json.dumps([[j.notes, j.checkpoint.saves] for j in env.jobs] + env.texts, default=str)
        assert not [s for s in secrets if s in blob], "a secret leaked"


def client(env: Env) -> AcsClient:
    creds = env.vod.credentials
    c = AcsClient(creds["access_key_id"], creds["access_key_secret"], env.vod.region, auto_retry=False)
    c.add_endpoint(env.vod.region, "vod", env.vod.endpoint)
    return c


def call(c: AcsClient, request_class: type, **params: Any) -> dict[str, Any]:
    request = request_class()
    for name, value in params.items():
        getattr(request, f"set_{name}")(value)
    return json.loads(c.do_action_with_exception(request))


def refused(fn: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ServerException) as err:
        fn()
    return err.value.get_http_status(), err.value.get_error_code()


def videos(env: Env) -> list[Any]:
    return [r for r in env.vod.state._media.values() if r.kind == "video"]


# ---- bytes, not characters ----------------------------------------------------------


def test_text_is_cut_by_utf8_bytes_on_a_character_boundary() -> None:
    assert cut_utf8("标" * 50, 128) == "标" * 42  # 126 bytes: a 43rd character would make 129
    assert cut_utf8("a" + "标" * 50, 128) == "a" + "标" * 42  # 127 bytes
    assert cut_utf8("é" * 100, 128) == "é" * 64  # 2-byte characters: exactly 128
    assert cut_utf8("ab€", 4) == "ab"  # never half of the 3-byte euro sign
    assert cut_utf8("short", 128) == "short"
    title = clean_text(TITLE_200, TITLE_MAX)
    assert len(title.encode("utf-8")) <= 128 and TITLE_200.startswith(title) and len(title) == 42
    description = clean_text(DESCRIPTION_2000, DESCRIPTION_MAX)
    assert len(description.encode("utf-8")) <= 1024 and DESCRIPTION_2000.startswith(description)
    assert clean_text("  标题 \U0001F600 ok ", 128) == "标题  ok"  # emoji still removed


def test_sandbox_counts_title_and_description_in_bytes(make_env: Callable[..., Env]) -> None:
    env = make_env()
    c = client(env)
    create = lambda **p: call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, FileName="a.mp4", **p)  # noqa: E731
    assert refused(lambda: create(Title="标" * 43)) == (400, "LengthExceededMax")  # 43 characters, 129 bytes
    assert refused(lambda: create(Title="t", Description="述" * 342)) == (400, "LengthExceededMax")
    assert create(Title="标" * 42 + "ab", Description="述" * 341 + "a")["VideoId"]  # 128 and 1,024 bytes
    for request_class, extra in ((CreateUploadImageRequest.CreateUploadImageRequest, {"ImageExt": "png"}),
                                 (CreateUploadAttachedMediaRequest.CreateUploadAttachedMediaRequest,
                                  {"BusinessType": "subtitle", "MediaExt": "srt"})):
        assert refused(lambda: call(c, request_class, Title="标" * 43, **extra)) == (400, "LengthExceededMax")


def test_long_chinese_title_and_description_are_cut_and_accepted(make_env: Callable[..., Env]) -> None:
    env = make_env()
    path = env.file("长.mp4", 200 * KIB)
    job = env.job(path, metadata=Metadata(title=TITLE_200, description=DESCRIPTION_2000))
    result = env.upload(env.provider(), job)
    rec = env.vod.state.media(result.remote_id)
    assert rec.title == clean_text(TITLE_200, 128) and len(rec.title.encode()) <= 128
    assert len(rec.extra["Description"].encode()) <= 1024 and DESCRIPTION_2000.startswith(rec.extra["Description"])
    assert env.entry(result.remote_id)["md5"] == md5_of(path)


# ---- ReferenceId --------------------------------------------------------------------


def test_sandbox_reference_id_is_unique_and_looked_up(make_env: Callable[..., Env]) -> None:
    env = make_env()
    c = client(env)
    first = call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="a", FileName="a.mp4",
                 ReferenceId="job-1_abc")
    assert refused(lambda: call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="b", FileName="b.mp4",
                                ReferenceId="job-1_abc")) == (400, "InvalidReferenceId.AlreadyExists")
    assert refused(lambda: call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="b", FileName="b.mp4",
                                ReferenceId="bad id!")) == (400, "InvalidParameter")
    info = call(c, GetVideoInfoRequest.GetVideoInfoRequest, ReferenceId="job-1_abc")["Video"]
    assert info["VideoId"] == first["VideoId"] and info["ReferenceId"] == "job-1_abc"
    assert call(c, RefreshUploadVideoRequest.RefreshUploadVideoRequest, ReferenceId="job-1_abc")["VideoId"] == \
        first["VideoId"]
    assert refused(lambda: call(c, GetVideoInfoRequest.GetVideoInfoRequest, ReferenceId="nobody-here")) == \
        (404, "InvalidVideo.NotFound")


def test_a_lost_create_answer_makes_one_video(make_env: Callable[..., Env]) -> None:
    env = make_env(drop_create_answer=1)
    path = env.file("lost.mp4", 3 * MIB + 5)
    job = env.job(path)
    result = env.upload(env.provider(part_size=MIB), job)
    assert [r.media_id for r in videos(env)] == [result.remote_id]  # the first Create's video, continued
    assert env.rpc_actions.count("CreateUploadVideo") == 1 and "GetVideoInfo" in env.rpc_actions
    assert job.actions("upload.resumed")[0]["reason"] == "create answer lost"
    assert env.oss.part_bytes_received == path.stat().st_size and env.entry(result.remote_id)["md5"] == md5_of(path)


def test_a_create_sent_before_a_crash_is_found_by_its_reference_id(make_env: Callable[..., Env]) -> None:
    """The process died after sending CreateUploadVideo, before saving the VideoId: the saved
    ReferenceId finds the video, and a retried Create of the same job never makes a second one."""
    env = make_env()
    path = env.file("crash.mp4", 150 * KIB)
    first = env.job(path)
    first.cancel.set()  # stops at the first read: after the Create, before any byte
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    saved = first.checkpoint.load()
    video_id, reference = saved["media"]["id"], saved["media"]["reference_id"]
    saved["media"] = {"reference_id": reference}  # as if the answer never reached the checkpoint
    first.checkpoint.save(saved)
    second = env.job(path, checkpoint=first.checkpoint)
    result = env.upload(env.provider(), second)
    assert result.remote_id == video_id and len(videos(env)) == 1
    assert env.rpc_actions.count("CreateUploadVideo") == 1


# ---- a lost Complete answer ----------------------------------------------------------


def test_a_lost_complete_answer_before_a_restart_sends_nothing_again(make_env: Callable[..., Env]) -> None:
    env = make_env(drop_complete_answer=1)
    path = env.file("complete.mp4", 4 * MIB + 7)
    first = env.job(path)
    env.oss.add_completion_hook(lambda info: first.cancel.set())  # the process "stops" before the retry
    env.fails(UploadCancelled, lambda: env.upload(env.provider(part_size=MIB), first))
    assert first.checkpoint.load()["media"]["oss"]["parts"]  # every part recorded, not completed
    second = env.job(path, checkpoint=first.checkpoint)
    result = env.upload(env.provider(part_size=MIB), second)
    assert env.oss.parts_received == 5 and env.oss.part_bytes_received == path.stat().st_size
    assert len(env.initiated) == 1 and not second.actions("upload.restarted")
    assert second.actions("upload.resumed")[0]["parts_done"] == 5
    assert [e["remote_id"] for e in env.journal.entries()] == [result.remote_id]
    assert result.content_id is None or result.content_id.startswith("crc64:")


def test_a_different_object_after_a_lost_complete_is_uploaded_again(make_env: Callable[..., Env]) -> None:
    env = make_env(drop_complete_answer=1)
    path = env.file("other.mp4", 2 * MIB + 1)
    first = env.job(path)
    env.oss.add_completion_hook(lambda info: first.cancel.set())
    env.fails(UploadCancelled, lambda: env.upload(env.provider(part_size=MIB), first))
    key = first.checkpoint.load()["media"]["address"]["FileName"]
    env.oss.store.delete(key)  # gone (or overwritten): only then is the file sent again
    result = env.upload(env.provider(part_size=MIB), env.job(path, checkpoint=first.checkpoint))
    assert env.oss.parts_received == 6 and env.oss.object_info(key).md5 == md5_of(path)
    assert result.remote_id == first.checkpoint.load()["media"]["id"]


# ---- RefreshUploadVideo moving the object ---------------------------------------------


def test_refresh_to_a_new_key_starts_the_object_over_there(make_env: Callable[..., Env]) -> None:
    # 3 s credentials are renewed at ~2.7 s, mid-way through a 5 s upload: after its multipart
    # upload began even on a loaded machine (1 s credentials could expire before the first part)
    env = make_env(token_ttl=3, refresh_new_key=1)
    path = env.file("moved.mp4", 30 * MIB)
    job = env.job(path, throttle=Throttle(6 * MIB))
    result = env.upload(env.provider(part_size=MIB, part_concurrency=2), job)
    [restarted] = job.actions("upload.restarted")
    assert restarted["reason"] == "address changed"
    rec = env.vod.state.media(result.remote_id)
    assert job.checkpoint.load()["media"]["address"]["FileName"] == rec.object_key
    assert env.entry(result.remote_id)["object_key"] == rec.object_key
    assert env.entry(result.remote_id)["md5"] == md5_of(path) and len(videos(env)) == 1
    assert len(env.initiated) == 2


def test_refresh_to_a_new_endpoint_keeps_the_parts(make_env: Callable[..., Env]) -> None:
    env = make_env(token_ttl=1, refresh_new_endpoint=1)
    path = env.file("endpoint.mp4", 12 * MIB)
    job = env.job(path, throttle=Throttle(6 * MIB))
    result = env.upload(env.provider(part_size=MIB, part_concurrency=2), job)
    assert job.actions("auth.refreshed") and not job.actions("upload.restarted")
    assert sorted(env.part_puts) == list(range(1, 13)) and len(env.initiated) == 1
    assert env.entry(result.remote_id)["md5"] == md5_of(path)


def test_an_endpoint_change_seen_on_resume_keeps_the_parts(make_env: Callable[..., Env]) -> None:
    env = make_env(refresh_new_endpoint=1)
    path = env.file("resume.mp4", 8 * MIB)
    first = env.job(path, on_progress=lambda job, done: done >= 3 * MIB and job.cancel.set())
    env.fails(UploadCancelled, lambda: env.upload(env.provider(part_size=MIB), first))
    done = len(first.checkpoint.load()["media"]["oss"]["parts"])
    second = env.job(path, checkpoint=first.checkpoint)
    env.upload(env.provider(part_size=MIB), second)
    assert "localhost" in second.checkpoint.load()["media"]["address"]["Endpoint"]
    assert second.actions("upload.resumed")[0]["parts_done"] >= done and not second.actions("upload.restarted")
    assert len(env.initiated) == 1 and len(env.part_puts) <= 8 + 4


# ---- errors and states the real service gives ------------------------------------------


def test_extensions_per_kind(make_env: Callable[..., Env]) -> None:
    env = make_env()
    c = client(env)
    for name in ("clip.mp4", "talk.mp3", "old.rmvb", "x.M3U8"):
        assert call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="t", FileName=name)["VideoId"]
    for name in ("notes.txt", "still.png", "m.mxf"):
        assert refused(lambda: call(c, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="t",
                                    FileName=name)) == (400, "InvalidFileName.Extension")
    assert refused(lambda: call(c, CreateUploadImageRequest.CreateUploadImageRequest, ImageExt="bmp")) == \
        (400, "InvalidParameter")
    assert refused(lambda: call(c, CreateUploadAttachedMediaRequest.CreateUploadAttachedMediaRequest,
                                BusinessType="watermark", MediaExt="srt")) == (400, "InvalidParameter")
    job = env.job(env.file("doc.txt", 10 * KIB))
    err = env.fails(PermanentError, lambda: env.upload(env.provider(), job))
    assert "InvalidFileName.Extension" in str(err) and not job.remote_ids


@pytest.mark.parametrize("status", ["Blocked", "TranscodeFail", "ProduceFail", "UploadFail", "Checking"])
def test_video_states_reported_by_get_video_info(make_env: Callable[..., Env], status: str) -> None:
    env = make_env(video_status=status)
    provider = env.provider()
    result = env.upload(provider, env.job(env.file("s.mp4", 100 * KIB)))
    got = provider.media_status(result.remote_id, "video")
    assert got.detail == status and got.state == ("pending" if status == "Checking" else "failed")


def test_throttling_user_is_retried(make_env: Callable[..., Env]) -> None:
    env = make_env(throttle_rate=0.3, seed=3)
    path = env.file("busy.mp4", 2 * MIB)
    job = env.job(path)
    result = env.upload(env.provider(part_size=MIB), job)
    assert any("Throttling.User" in n["error"] for n in job.actions("upload.retrying"))
    assert env.entry(result.remote_id)["md5"] == md5_of(path) and len(videos(env)) == 1


def test_forbidden_is_permanent_with_a_clear_message(make_env: Callable[..., Env]) -> None:
    env = make_env(vod_forbidden="Forbidden.RAM")
    job = env.job(env.file("no.mp4", 10 * KIB))
    err = env.fails(PermanentError, lambda: env.upload(env.provider(), job))
    assert "Forbidden.RAM" in str(err) and "RAM user" in str(err) and not job.actions("upload.retrying")


def test_sts_credentials_last_3000_seconds_by_default(make_env: Callable[..., Env]) -> None:
    env = make_env()
    job: Job = env.job(env.file("t.mp4", 10 * KIB))
    env.upload(env.provider(), job)
    auth = json.loads(base64.b64decode(env.issued[-1]))
    assert auth["Expiration"] == "3000"

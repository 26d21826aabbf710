"""AliyunVodProvider against the OSS + VOD sandboxes over real HTTP on 127.0.0.1: what is
specific to VOD and OSS. What every provider must do (resume, changed files, faults, secrets,
status) is the shared contract, tests/provider_contract.py, run by test_contract_aliyun_vod.py.

Each test calls `provider.upload()` directly with a JSON-file checkpoint store, a cancel
event, no bandwidth cap (unless the test needs time to pass) and a fast retry policy, then
checks what the sandbox accepted (its uploads journal, its object store, the actions it
was sent) as well as what the provider reported. On teardown every note, checkpoint,
remote id, result and exception text is searched for the account secret and for every
STS secret and token the sandbox issued.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import helpers
import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from provider_harness import POLICY, FileCheckpoint, Job, make_job, md5_of, record_issued_secrets, write_file

from vidupd.core.crc64 import crc64, crc64_combine, crc64_of_parts
from vidupd.core.errors import PermanentError, TransientError, UploadCancelled
from vidupd.core.model import Metadata
from vidupd.core.secrets import redact
from vidupd.core.throttle import Throttle
from vidupd.providers.aliyun_vod.media import (PullJob, clean_tags, clean_text, parse_url_list, pull_status,
                                               sidecar_overrides)
from vidupd.providers.aliyun_vod.provider import AliyunVodProvider
from vidupd.providers.aliyun_vod.rpc import endpoint_setting, oss_endpoint, translate
from vidupd.providers.base import MediaStatus, UploadResult
from vidupd.providers.oss.credentials import StsCredentials
from vidupd.providers.oss.multipart import MAX_PARTS, plan_part_size
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox
from vidupd.sandbox.vod_rpc import VodError

KIB, MIB = 1 << 10, 1 << 20

pytestmark = pytest.mark.timeout(120)


# ---- harness ------------------------------------------------------------------------


class Env:
    """OSS + VOD sandboxes sharing one journal, plus recorders of what reached them."""

    def __init__(self, root: Path, **options: Any):
        self.root = root
        self.journal = UploadsJournal(root / "uploads.jsonl")
        opts = SandboxOptions(**options)
        self.oss = OssSandbox(root / "sb", opts, self.journal)
        self.oss.start()
        self.vod = VodSandbox(root / "sb", opts, self.journal, self.oss, status_delays=(0.1, 0.2))
        self.vod.start()
        self.providers: list[AliyunVodProvider] = []
        self.jobs: list[Job] = []
        self.texts: list[str] = []  # results and exception messages, searched for secrets
        self.timeline: list[tuple[str, Any]] = []  # ordered: remote ids known, OSS bodies started
        self.rpc_actions: list[str] = []
        self.issued: list[str] = []  # every STS secret and token, and each Base64 UploadAuth
        self.part_puts: list[int] = []  # part numbers of UploadPart bodies received
        self.initiated: list[str] = []
        self._lock = threading.Lock()
        self._wrap()

    def _wrap(self) -> None:
        store, vod = self.oss.store, self.vod
        real_stage, real_commit_part, real_initiate = store.stage, store.commit_part, store.initiate
        real_dispatch = vod.dispatch

        def stage() -> Any:
            with self._lock:
                self.timeline.append(("oss-body", None))
            return real_stage()

        def commit_part(upload_id: str, key: str, number: int, *rest: Any) -> Any:
            with self._lock:
                self.part_puts.append(number)
            return real_commit_part(upload_id, key, number, *rest)

        def initiate(*args: Any) -> str:
            upload_id = real_initiate(*args)
            self.initiated.append(upload_id)
            return upload_id

        def dispatch(action: str, params: dict[str, str]) -> Any:
            with self._lock:
                self.rpc_actions.append(action)
            return real_dispatch(action, params)

        store.stage, store.commit_part, store.initiate = stage, commit_part, initiate  # type: ignore[method-assign]
        vod.dispatch = dispatch  # type: ignore[method-assign]
        record_issued_secrets(self.oss, vod, self.issued)

    def provider(self, secret: str | None = None, **overrides: Any) -> AliyunVodProvider:
        creds = self.vod.credentials
        settings: dict[str, Any] = {
            "access_key_id": creds["access_key_id"], "access_key_secret": secret or creds["access_key_secret"],
            "region": self.vod.region, "endpoint": self.vod.endpoint, "part_size": MIB, "part_concurrency": 4,
            "request_timeout": 10.0, "tags": ["vidupd", "test"],
        }
        settings.update(overrides)
        p = AliyunVodProvider("vod", settings, self.root / "state")
        p.call_retry = POLICY
        self.providers.append(p)
        return p

    def file(self, name: str, size: int, seed: int = 1) -> Path:
        return write_file(self.root / name, size, seed)

    def job(self, path: Path, kind: str = "video", job_id: int = 1, checkpoint: FileCheckpoint | None = None,
            on_progress: Callable[[Job, int], None] | None = None, metadata: Metadata | None = None,
            companions: dict[str, Path] | None = None, throttle: Throttle | None = None) -> Job:
        def remote_id_known(remote_id: str, remote_kind: str) -> None:  # after the Job recorded it
            with self._lock:
                self.timeline.append(("remote-id", remote_id))

        job = make_job(path, self.root, metadata or Metadata(title="a clip", description="vidupd test upload"),
                       kind=kind, job_id=job_id, checkpoint=checkpoint, on_progress=on_progress,
                       on_remote_id=remote_id_known, companions=companions, throttle=throttle)
        self.jobs.append(job)
        return job

    def upload(self, provider: AliyunVodProvider, job: Job) -> UploadResult:
        result = provider.upload(job.request, job.ctx)
        self.texts.append(repr(result))
        return result

    def fails(self, error: type[BaseException], fn: Callable[[], Any]) -> BaseException:
        with pytest.raises(error) as info:
            fn()
        self.texts.append(f"{info.value!r} {info.value}")
        return info.value

    def entry(self, remote_id: str) -> dict[str, Any]:
        [line] = [e for e in self.journal.entries() if e["remote_id"] == remote_id]
        return line

    def shutdown(self) -> None:
        for p in self.providers:
            p.close()
        self.vod.shutdown()
        self.oss.shutdown()


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """Start sandboxes with the given options; on teardown check that nothing leaked a secret
    and that no part-upload thread outlived its upload."""
    envs: list[Env] = []

    def start(**options: Any) -> Env:
        root = tmp_path / f"env{len(envs)}"
        root.mkdir()
        env = Env(root, **options)
        envs.append(env)
        return env

    yield start
    for env in envs:
        env.shutdown()
        secrets = {env.vod.credentials["access_key_secret"], *env.issued}
        for job in env.jobs:
            blob = json.dumps([job.notes, job.checkpoint.saves, job.remote_ids, env.texts], default=str)
            leaked = [s for s in secrets if s in blob]
            assert not leaked, "a secret leaked into a note, checkpoint, result or exception"
    assert not [t for t in threading.enumerate() if t.name.startswith("vod-oss-part")]


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def wait_for(fn: Callable[[], Any], timeout: float = 15.0) -> Any:
    return helpers.wait_for(fn, timeout, 0.05)


def first_index(timeline: list[tuple[str, Any]], kind: str) -> int:
    return next(i for i, (k, _) in enumerate(timeline) if k == kind)


# ---- pure helpers -------------------------------------------------------------------


def test_crc64_combine_matches_a_whole_pass() -> None:
    a, b, c = os.urandom(1000), os.urandom(3 * MIB + 7), b"x"
    assert crc64(a + b + c) == crc64_of_parts([(crc64(a), len(a)), (crc64(b), len(b)), (crc64(c), len(c))])
    assert crc64_combine(crc64(a), crc64(b""), 0) == crc64(a)
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA  # the CRC-64/XZ check value


def test_text_and_tag_limits() -> None:
    assert clean_text("  smile \U0001F600 ok ", 128) == "smile  ok"
    assert clean_text("x" * 200, 128) == "x" * 128
    tags = clean_tags(["a", "a", "b,c", "，d", "t" * 40] + [f"n{i}" for i in range(20)])
    assert tags.split(",")[:5] == ["a", "b", "c", "d", "t" * 32] and len(tags.split(",")) == 16


def test_sidecar_overrides_and_url_lists() -> None:
    extra = {"cate_id": 7, "TemplateGroupId": "tg", "UserData": {"k": "v"}, "other": "x"}
    assert sidecar_overrides(extra) == {"CateId": "7", "TemplateGroupId": "tg", "UserData": '{"k":"v"}'}
    with pytest.raises(PermanentError, match="user_data"):
        sidecar_overrides({"user_data": "not json"})
    text = "# pulls\n\nhttp://a/1.mp4\n  https://b/2 x.mp4  \nftp://c/3.mp4\n"
    with pytest.raises(PermanentError, match=r"list\.url line 5: not an http\(s\) URL"):
        parse_url_list(text, "list.url")
    assert parse_url_list("# c\n\nhttp://a/1.mp4\nhttps://b/2.mp4\n", "x") == ["http://a/1.mp4", "https://b/2.mp4"]
    with pytest.raises(PermanentError, match="no URL"):
        parse_url_list("# nothing\n", "empty.url")


def test_pull_status_summary() -> None:
    jobs = {"j1": PullJob("j1", "SUCCESS", "m1"), "j2": PullJob("j2", "DOWNLOADING"), "j3": PullJob("j3", "SUCCESS", "m3")}
    assert pull_status(["j1", "j2", "j3"], jobs).detail == "2/3 SUCCESS, 1 DOWNLOADING"
    assert pull_status(["j1", "j3"], jobs) .remote_ids == ("m1", "m3")
    failed = pull_status(["j1", "j4"], {**jobs, "j4": PullJob("j4", "DOWNLOAD_FAIL", "", "http://x", "DownloadFailed",
                                                                 "404")})
    assert failed.state == "failed" and "DownloadFailed" in failed.detail and "m1" in failed.detail
    assert pull_status(["j1", "zz"], jobs).state == "pending"


def test_settings_and_error_translation() -> None:
    assert endpoint_setting(None, "cn-beijing") == ("vod.cn-beijing.aliyuncs.com", True)
    assert endpoint_setting("127.0.0.1:9000", "cn-shanghai") == ("127.0.0.1:9000", False)
    assert oss_endpoint("http://oss-cn-shanghai.aliyuncs.com", True) == "https://oss-cn-shanghai.aliyuncs.com"
    assert oss_endpoint("http://127.0.0.1:1234", True) == "http://127.0.0.1:1234"
    assert plan_part_size(100 * MIB, MIB) == MIB
    assert plan_part_size(20_000 * MIB, MIB) == -(-20_000 * MIB // MAX_PARTS)
    cases = [(ServerException("Throttling.User", "slow down", 503), TransientError),
             (ServerException("InternalError", "oops", 500), TransientError),
             (ServerException("InvalidVideo.NotFound", "gone", 404), PermanentError),
             (ClientException("SDK.HttpError", "HTTPConnectionPool: url: /?Signature=abc timed out"), TransientError)]
    for exc, kind in cases:
        err = translate(exc, "GetVideoInfo")
        assert isinstance(err, kind) and "GetVideoInfo" in str(err) and "Signature=abc" not in str(err)
    with pytest.raises(PermanentError, match="part_size"):
        AliyunVodProvider("vod", {"access_key_id": "a", "access_key_secret": "b", "part_size": 1000}, Path("/tmp"))


def test_real_endpoints_are_called_over_https(tmp_path: Path) -> None:
    provider = AliyunVodProvider("vod", {"access_key_id": "LTAIx", "access_key_secret": "s3cret-value",
                                         "region": "cn-beijing"}, tmp_path)
    sent: list[Any] = []

    def capture(request: Any) -> bytes:
        sent.append(request)
        return b'{"Video": {"Status": "Transcoding"}}'

    provider.rpc._client.do_action_with_exception = capture  # type: ignore[method-assign]
    assert provider.media_status("v1", "video") == MediaStatus("pending", "Transcoding")
    [request] = sent
    assert (request.endpoint, request.get_protocol_type()) == ("vod.cn-beijing.aliyuncs.com", "https")
    provider.close()


# ---- videos -------------------------------------------------------------------------


def test_small_video_is_one_put_after_the_id_is_known(env: Env) -> None:
    provider = env.provider()
    path = env.file("clip.mp4", 300 * KIB)
    job = env.job(path, metadata=Metadata(title="标题 \U0001F600 title", tags=("news",), category="12",
                                          extra={"WorkflowId": "wf-1"}))
    result = env.upload(provider, job)
    assert result.remote_kind == "video" and job.remote_ids == [(result.remote_id, "video")]
    assert first_index(env.timeline, "remote-id") < first_index(env.timeline, "oss-body")
    reference = job.checkpoint.saves[0]["media"]["reference_id"]  # saved before the Create was sent
    assert job.checkpoint.saves[0]["media"] == {"reference_id": reference}
    assert job.checkpoint.saves[1]["media"]["id"] == result.remote_id  # saved before any byte, too
    assert env.vod.state.media(result.remote_id).reference_id == reference
    assert "UploadAuth" not in json.dumps(job.checkpoint.saves)
    entry = env.entry(result.remote_id)
    assert (entry["md5"], entry["size"], entry["kind"]) == (md5_of(path), path.stat().st_size, "video")
    assert env.initiated == [] and job.progress[-1] == path.stat().st_size
    rec = env.vod.state.media(result.remote_id)
    assert rec.title == "标题  title" and rec.file_name == "clip.mp4"
    assert (rec.extra["Tags"], rec.extra["CateId"], rec.extra["WorkflowId"]) == ("news", "12", "wf-1")
    states = set()

    def ready() -> bool:
        status = provider.media_status(result.remote_id, "video")
        states.add(status.state)
        return status.state == "ready"

    wait_for(ready)
    assert states <= {"pending", "ready"}


def test_multipart_video_parallel_parts(env: Env) -> None:
    provider = env.provider(part_size=MIB, part_concurrency=4)
    path = env.file("big.mp4", 20 * MIB + 12345)
    job = env.job(path)
    result = env.upload(provider, job)
    assert env.entry(result.remote_id)["md5"] == md5_of(path)
    assert len(env.initiated) == 1 and sorted(env.part_puts) == list(range(1, 22))
    assert first_index(env.timeline, "remote-id") < first_index(env.timeline, "oss-body")
    assert job.progress == sorted(job.progress) and job.progress[-1] == path.stat().st_size
    assert list(env.oss.store.incomplete_uploads()) == []
    parts = max(((s["media"].get("oss") or {}).get("parts", []) for s in job.checkpoint.saves), key=len)
    assert len(parts) == 21 and all(len(p) == 4 for p in parts)  # [number, etag, crc, size]


def test_video_over_64_mib(env: Env) -> None:
    provider = env.provider(part_size=8 * MIB, part_concurrency=4)
    path = env.file("long.mp4", 72 * MIB + 1)
    started = time.monotonic()
    result = env.upload(provider, env.job(path))
    assert env.entry(result.remote_id)["md5"] == md5_of(path)
    assert sorted(env.part_puts) == list(range(1, 11)) and time.monotonic() - started < 30


def test_cancel_mid_multipart_then_resume_sends_few_parts_again(env: Env) -> None:
    path = env.file("resume.mp4", 24 * MIB)

    def stop_at_a_third(job: Job, done: int) -> None:
        if done >= 8 * MIB:
            job.cancel.set()

    first = env.job(path, on_progress=stop_at_a_third)
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    saved = first.checkpoint.load()
    video_id = saved["media"]["id"]
    assert saved["media"]["oss"]["upload_id"] == env.initiated[0] and not saved["media"]["uploaded"]
    sent_before = len(env.part_puts)
    env.rpc_actions.clear()
    second = env.job(path, checkpoint=first.checkpoint)  # a new provider: as after a restart
    result = env.upload(env.provider(), second)
    assert result.remote_id == video_id and env.rpc_actions[0] == "RefreshUploadVideo"
    assert "CreateUploadVideo" not in env.rpc_actions and len(env.initiated) == 1
    assert len(env.part_puts) - 24 <= 4  # parts sent twice: at most part_concurrency
    assert len(env.part_puts) - sent_before == 24 - len(saved["media"]["oss"]["parts"])
    assert second.actions("upload.resumed")[0]["parts_done"] == len(saved["media"]["oss"]["parts"])
    assert env.entry(video_id)["md5"] == md5_of(path)


def test_parts_the_checkpoint_missed_are_adopted_not_sent_again(env: Env) -> None:
    """A kill -9 between OSS's answer and the checkpoint save: ListParts + local MD5 recover them."""
    path = env.file("killed.mp4", 16 * MIB)

    def die_at_half(job: Job, done: int) -> None:
        if done >= 3 * MIB:
            job.checkpoint.frozen = True  # nothing more reaches the disk
        if done >= 8 * MIB:
            job.cancel.set()

    first = env.job(path, on_progress=die_at_half)
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    on_server = sorted(set(env.part_puts))
    first.checkpoint.frozen = False
    second = env.job(path, checkpoint=first.checkpoint)
    result = env.upload(env.provider(), second)
    resumed = second.actions("upload.resumed")[0]
    assert resumed["parts_adopted"] > 0 and resumed["parts_done"] == len(on_server)
    assert sorted(env.part_puts) == list(range(1, 17))  # every part went out exactly once
    assert env.entry(result.remote_id)["md5"] == md5_of(path)


def test_vanished_multipart_upload_restarts_for_the_same_video(env: Env) -> None:
    path = env.file("aborted.mp4", 8 * MIB)
    first = env.job(path, on_progress=lambda job, done: done >= 2 * MIB and job.cancel.set())
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    saved = first.checkpoint.load()["media"]
    env.oss.store.abort(saved["oss"]["upload_id"], saved["address"]["FileName"])
    second = env.job(path, checkpoint=first.checkpoint)
    result = env.upload(env.provider(), second)
    assert result.remote_id == saved["id"] and len(env.initiated) == 2
    assert second.actions("upload.restarted")[0]["reason"] == "NoSuchUpload"
    assert env.entry(result.remote_id)["md5"] == md5_of(path)


@pytest.mark.parametrize("proactive", [True, False], ids=["before-expiry", "on-SecurityTokenExpired"])
def test_sts_expiry_mid_upload_continues_the_same_upload(make_env: Callable[..., Env], proactive: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(token_ttl=1)
    if not proactive:
        monkeypatch.setattr(StsCredentials, "renewal_due", lambda creds, now=None: False)
    path = env.file("sts.mp4", 20 * MIB)
    job = env.job(path, throttle=Throttle(8 * MIB))  # about 1.5 s: the 1 s credentials expire meanwhile
    result = env.upload(env.provider(part_size=MIB, part_concurrency=4), job)
    refreshed = job.actions("auth.refreshed")
    assert refreshed and env.rpc_actions.count("RefreshUploadVideo") == len(refreshed)
    reasons = {r["reason"] for r in refreshed}
    assert reasons == {"expiring"} if proactive else reasons <= {"SecurityTokenExpired", "InvalidAccessKeyId"}
    assert len(env.initiated) == 1 and sorted(env.part_puts) == list(range(1, 21))
    assert env.entry(result.remote_id)["md5"] == md5_of(path)
    assert list(env.oss.store.incomplete_uploads()) == []
    assert all(redact(value) == "***" for value in env.issued)  # every STS secret is scrubbed from logs


def test_cover_image_goes_first_and_once(env: Env) -> None:
    video, cover = env.file("show.mp4", 200 * KIB, seed=2), env.file("show.jpg", 20 * KIB, seed=3)
    failed_once: list[bool] = []
    real = env.vod.dispatch

    def refuse_first_video(action: str, params: dict[str, str]) -> Any:
        if action == "CreateUploadVideo" and not failed_once:
            failed_once.append(True)
            raise VodError(400, "InvalidParameter", "refused once by the test")
        return real(action, params)

    env.vod.dispatch = refuse_first_video  # type: ignore[method-assign]
    provider = env.provider()
    first = env.job(video, companions={"cover": cover})
    env.fails(PermanentError, lambda: env.upload(provider, first))
    second = env.job(video, checkpoint=first.checkpoint, companions={"cover": cover})
    result = env.upload(provider, second)
    assert env.rpc_actions.count("CreateUploadImage") == 1  # the retry kept the uploaded cover
    [(image_id, image_kind)] = first.remote_ids
    assert image_kind == "image"
    assert second.remote_ids == [(result.remote_id, "video")]
    assert env.entry(image_id)["md5"] == md5_of(cover) and env.entry(image_id)["kind"] == "image"
    assert env.vod.state.media(image_id).sub_type == "cover"
    info = provider.media_status(result.remote_id, "video")
    assert info.state in ("pending", "ready")
    assert env.vod.state.media(result.remote_id).extra["CoverURL"] == result.details["CoverURL"]
    assert result.details["CoverImageId"] == image_id


def test_refused_cover_does_not_stop_the_video(env: Env) -> None:
    video, cover = env.file("odd.mp4", 150 * KIB), env.file("odd.webp", 5 * KIB)
    job = env.job(video, companions={"cover": cover})
    result = env.upload(env.provider(), job)
    assert job.actions("upload.cover_failed") and "CoverURL" not in result.details
    assert env.entry(result.remote_id)["md5"] == md5_of(video)


# ---- images, attached media ---------------------------------------------------------


def test_image_and_subtitle(env: Env) -> None:
    provider = env.provider(image_type="default", attached_business_type="subtitle")
    image = env.file("poster.png", 50 * KIB, seed=4)
    result = env.upload(provider, env.job(image, kind="image", job_id=2))
    assert result.remote_kind == "image" and result.details["ImageURL"].startswith(env.oss.endpoint)
    assert (env.entry(result.remote_id)["kind"], env.entry(result.remote_id)["md5"]) == ("image", md5_of(image))
    subs = env.root / "show.vtt"
    subs.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    attached = env.upload(provider, env.job(subs, kind="attached", job_id=3))
    assert attached.remote_kind == "attached" and attached.details["MediaURL"]
    entry = env.entry(attached.remote_id)
    assert (entry["kind"], entry["md5"]) == ("attached", md5_of(subs))
    assert env.vod.state.media(attached.remote_id).sub_type == "subtitle"
    assert provider.media_status(attached.remote_id, "attached").state == "ready"


def test_interrupted_image_reuses_its_credentials_or_starts_over_after_a_restart(env: Env) -> None:
    image = env.file("still.jpg", 30 * KIB, seed=5)
    provider = env.provider()
    first = env.job(image, kind="image")
    first.cancel.set()  # stops at the first read: after CreateUploadImage, before any byte
    env.fails(UploadCancelled, lambda: env.upload(provider, first))
    [(old_id, _)] = first.remote_ids
    same = env.job(image, kind="image", checkpoint=first.checkpoint)
    same.cancel.set()
    env.fails(UploadCancelled, lambda: env.upload(provider, same))  # same process: credentials kept
    assert same.remote_ids == [] and env.rpc_actions.count("CreateUploadImage") == 1
    later = env.job(image, kind="image", checkpoint=first.checkpoint)
    result = env.upload(env.provider(), later)  # a restart: image credentials cannot be refreshed
    assert result.remote_id != old_id and later.remote_ids == [(result.remote_id, "image")]
    assert later.actions("upload.restarted")[0]["old_remote_id"] == old_id
    assert [e["remote_id"] for e in env.journal.entries()] == [result.remote_id]


# ---- URL pull and registration -------------------------------------------------------


def test_url_pull_until_ready(env: Env, file_server: tuple[Path, str]) -> None:
    root, base = file_server
    (root / "one clip.mp4").write_bytes(os.urandom(200 * KIB))
    (root / "two,3.mp4").write_bytes(os.urandom(100 * KIB))
    listing = env.root / "pulls.url"
    listing.write_text(f"# from the archive\n\n{base}/one clip.mp4\n{base}/two,3.mp4\n")
    provider = env.provider()
    job = env.job(listing, kind="url_pull", metadata=Metadata(title="pulled"))
    result = env.upload(provider, job)
    job_ids = result.remote_id.split(",")
    assert result.remote_kind == "url_pull" and len(job_ids) == 2 and result.details["job_ids"] == result.remote_id
    assert [j for _, j in job.checkpoint.load()["jobs"]] == job_ids
    again = env.upload(provider, env.job(listing, kind="url_pull", checkpoint=job.checkpoint))
    assert again.remote_id == result.remote_id and env.rpc_actions.count("UploadMediaByURL") == 1
    status = wait_for(lambda: (s := provider.media_status(result.remote_id, "url_pull")).state == "ready" and s)
    assert len(status.remote_ids) == 2
    md5s = {env.entry(m)["md5"] for m in status.remote_ids}
    assert md5s == {md5_of(root / "one clip.mp4"), md5_of(root / "two,3.mp4")}
    assert {env.entry(m)["title"] for m in status.remote_ids} == {"pulled (1)", "pulled (2)"}


def test_url_pull_failures(env: Env, file_server: tuple[Path, str]) -> None:
    _, base = file_server
    provider = env.provider()
    bad = env.root / "bad.url"
    bad.write_text(f"{base}/a.mp4\nfile:///etc/passwd\n")
    err = env.fails(PermanentError, lambda: env.upload(provider, env.job(bad, kind="url_pull")))
    assert "bad.url line 2" in str(err) and env.rpc_actions == []
    [(url, job_id)] = provider.submit_pull([f"{base}/missing.mp4"], "gone")
    assert url == f"{base}/missing.mp4"
    status = wait_for(lambda: (s := provider.media_status(job_id, "url_pull")).state != "pending" and s)
    assert status.state == "failed" and "DOWNLOAD_FAIL" in status.detail
    assert env.vod.state.job(job_id).title == "gone"
    plain = env.root / "plain.url"  # no title of its own: each pull is named after its URL
    plain.write_text(f"{base}/my%20film.mp4\n")
    result = env.upload(provider, env.job(plain, kind="url_pull", job_id=2, metadata=Metadata(title="plain")))
    assert env.vod.state.job(result.remote_id).title == "my film.mp4"


def test_register_an_object_url(env: Env) -> None:
    provider = env.provider()
    path = env.file("archive.mp4", 120 * KIB)
    uploaded = env.upload(provider, env.job(path))
    key = env.vod.state.media(uploaded.remote_id).object_key
    url, missing = env.oss.object_url(key), env.oss.object_url("archive/none.mp4")
    registered, failed = provider.register([url, missing], "from the archive")
    [(file_url, media_id)] = registered
    assert file_url == url and failed == [missing]
    entry = env.entry(media_id)
    assert (entry["kind"], entry["md5"], entry["title"]) == ("registered", md5_of(path), "from the archive")
    assert provider.media_status(media_id, "registered").state in ("pending", "ready")
    with pytest.raises(PermanentError, match="URL 1"):
        provider.register(["ftp://x/y.mp4"], None)


# ---- faults and credentials -----------------------------------------------------------


def test_duplicate_ids_are_returned_as_given(make_env: Callable[..., Env]) -> None:
    env = make_env(duplicate_ids=True)
    provider = env.provider()
    first = env.upload(provider, env.job(env.file("a.mp4", 100 * KIB, seed=1), job_id=1))
    second = env.upload(provider, env.job(env.file("b.mp4", 100 * KIB, seed=2), job_id=2))
    assert first.remote_id == second.remote_id  # the core's ledger detects this, not the provider
    assert [j.remote_ids for j in env.jobs] == [[(first.remote_id, "video")], [(first.remote_id, "video")]]


def test_wrong_secret_is_permanent_and_not_quoted(env: Env) -> None:
    wrong = "wrong-secret-value-123"
    provider = env.provider(secret=wrong)
    job = env.job(env.file("x.mp4", 10 * KIB))
    err = env.fails(PermanentError, lambda: env.upload(provider, job))
    assert "InvalidAccessKeySecret" in str(err) or "SignatureDoesNotMatch" in str(err)
    assert wrong not in str(err) and job.remote_ids == [] and env.timeline == []
    other = env.provider(access_key_id="LTAInobody")
    err = env.fails(PermanentError, lambda: other.media_status("x", "video"))
    assert "InvalidAccessKeyId.NotFound" in str(err)


def test_a_checkpoint_for_other_content_gives_its_video_up(env: Env) -> None:
    """A checkpoint dropped because it was made for other content (found by the fleet crash
    campaign: a restart that saw the job's content differently) must not leave its video
    "Uploading" on VOD nor its multipart upload open: the provider abandons them first."""
    path = env.file("changed.mp4", 8 * MIB)
    first = env.job(path, on_progress=lambda job, done: done >= 2 * MIB and job.cancel.set())
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    old = first.checkpoint.load()
    first.checkpoint.save({**old, "content": "md5:" + "0" * 32})  # as if made for other content
    second = env.job(path, checkpoint=first.checkpoint)
    result = env.upload(env.provider(), second)
    assert result.remote_id != old["media"]["id"]
    assert env.vod.open_uploads() == {"oss_multipart": [], "vod_uploading": []}


def test_a_checkpoint_made_unhashed_is_resumed_by_the_hashed_attempt(env: Env) -> None:
    """A file first sent unhashed (no twin possible then) and hashed on its next attempt (a
    same-size job appeared meanwhile, e.g. on another host of a fleet) is the same upload:
    the restart keeps the video and the parts already on OSS instead of starting over (the
    fleet crash campaign saw such restarts), and the content is still checked at completion."""
    from dataclasses import replace

    from vidupd.core.content import content_hash

    path = env.file("hashed-later.mp4", 8 * MIB)
    first = env.job(path, on_progress=lambda job, done: done >= 3 * MIB and job.cancel.set())
    first.request = replace(first.request, content=None)  # sent unhashed
    env.fails(UploadCancelled, lambda: env.upload(env.provider(), first))
    old = first.checkpoint.load()
    assert old["content"] == "" and old["media"]["id"]
    second = env.job(path, checkpoint=first.checkpoint)
    second.request = replace(second.request, content=content_hash(path, second.request.identity, "crc64"))
    result = env.upload(env.provider(), second)
    assert result.remote_id == old["media"]["id"]  # the same video, resumed
    assert not [n for n in second.notes if n[0] == "upload.restarted"], second.notes
    assert env.entry(result.remote_id)["md5"] == md5_of(path)
    assert env.vod.open_uploads() == {"oss_multipart": [], "vod_uploading": []}

"""Public OSS clients against the OSS sandbox over real HTTP on 127.0.0.1, unchanged but
for the endpoint: raw oss2 signing V4 and V1, the V4 SDK alibabacloud-oss-v2, and the stock
voduploadsdk (V1). Each checks that the sandbox really stored the object (MD5 and size),
for a simple and a multipart upload, and which signature versions it saw.

The sandbox's `oss_signature` decides what it accepts: "v4" (the default, what an account
opened since 2025-03 gets), "both" (an older account), "v1" (a gateway that knows V1 only).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import alibabacloud_oss_v2 as ossv2
import oss2
import pytest

from test_sandbox_vod import Sandboxes
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox

KB = 1024
SIMPLE = 300 * KB + 7
MULTI = 900 * KB + 5  # with 200 KiB parts: five parts, the last one short


def start_oss(data_dir: Path, mode: str) -> OssSandbox:
    sandbox = OssSandbox(data_dir, SandboxOptions(oss_signature=mode), UploadsJournal(data_dir / "uploads.jsonl"))
    sandbox.start()
    return sandbox


@pytest.fixture
def sandbox_in(tmp_path: Path):
    """A factory: an OSS sandbox accepting `mode` ("v4", "v1", "both"), shut down after the test."""
    started: list[OssSandbox] = []

    def make(mode: str) -> OssSandbox:
        started.append(start_oss(tmp_path / f"oss-{mode}-{len(started)}", mode))
        return started[-1]

    yield make
    for s in started:
        s.shutdown()


def oss2_bucket(sandbox: OssSandbox, version: str, region: str | None = None) -> oss2.Bucket:
    """Raw oss2 as its documentation shows it, V4 with the bucket's region or V1."""
    c = sandbox.issue_sts()
    auth = oss2.StsAuth(c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"], auth_version=version)
    if version == "v4":
        return oss2.Bucket(auth, sandbox.endpoint, sandbox.bucket, region=region or sandbox.region)
    return oss2.Bucket(auth, sandbox.endpoint, sandbox.bucket)


def received(sandbox: OssSandbox, key: str, data: bytes) -> bool:
    """Whether the sandbox holds exactly `data` under `key` (its own MD5 and size)."""
    info = sandbox.object_info(key)
    return info is not None and info.size == len(data) and info.md5 == hashlib.md5(data).hexdigest()


def upload_with_oss2(bucket: oss2.Bucket, tmp_path: Path) -> dict[str, bytes]:
    """PutObject and oss2.resumable_upload (multipart, three threads) of fresh random files."""
    simple, multi = os.urandom(SIMPLE), os.urandom(MULTI)
    bucket.put_object("interop/simple one.mp4", simple)
    path = tmp_path / "multi.mp4"
    path.write_bytes(multi)
    oss2.resumable_upload(bucket, "interop/multi+part ü.mp4", str(path),
                          store=oss2.ResumableStore(root=str(tmp_path / "rs")),
                          multipart_threshold=256 * KB, part_size=200 * KB, num_threads=3)
    return {"interop/simple one.mp4": simple, "interop/multi+part ü.mp4": multi}


# ---- raw oss2 ------------------------------------------------------------------------------


def test_oss2_v4_uploads_to_the_default_sandbox(tmp_path: Path) -> None:
    sandbox = start_oss(tmp_path / "oss", "v4")  # what SandboxOptions() and `vidupd sandbox` give
    try:
        assert SandboxOptions().oss_signature == "v4"
        for key, data in upload_with_oss2(oss2_bucket(sandbox, "v4"), tmp_path).items():
            assert received(sandbox, key, data), key
        assert sandbox.signatures["v4"] >= 7 and sandbox.signatures["v1"] == 0
    finally:
        sandbox.shutdown()


@pytest.mark.parametrize("mode", ["both", "v1"])
def test_oss2_v1_uploads_where_v1_is_still_accepted(sandbox_in: Callable[[str], OssSandbox], tmp_path: Path,
                                                    mode: str) -> None:
    sandbox = sandbox_in(mode)
    for key, data in upload_with_oss2(oss2_bucket(sandbox, "v1"), tmp_path).items():
        assert received(sandbox, key, data), key
    assert sandbox.signatures["v1"] >= 7 and sandbox.signatures["v4"] == 0


def test_oss2_v1_is_refused_by_a_v4_sandbox(sandbox_in: Callable[[str], OssSandbox]) -> None:
    sandbox = sandbox_in("v4")
    with pytest.raises(oss2.exceptions.AccessDenied) as err:
        oss2_bucket(sandbox, "v1").put_object("interop/v1.mp4", b"x" * KB)
    assert err.value.status == 403 and "V4" in err.value.message
    with pytest.raises(oss2.exceptions.AccessDenied):
        oss2_bucket(sandbox, "v1").init_multipart_upload("interop/v1.mp4")
    assert sandbox.object_info("interop/v1.mp4") is None and sandbox.signatures == {"v1": 0, "v4": 0}


def test_oss2_v4_is_refused_by_a_v1_only_sandbox(sandbox_in: Callable[[str], OssSandbox]) -> None:
    sandbox = sandbox_in("v1")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        oss2_bucket(sandbox, "v4").put_object("interop/v4.mp4", b"x" * KB)
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")
    assert sandbox.object_info("interop/v4.mp4") is None


def test_oss2_v4_scoped_to_another_region_is_refused(sandbox_in: Callable[[str], OssSandbox]) -> None:
    """The real OSS refuses a signature scoped to a region that is not the bucket's
    (EC 0002-00000228) even when the HMAC is right: so does the sandbox."""
    sandbox = sandbox_in("both")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        oss2_bucket(sandbox, "v4", region="cn-beijing").put_object("interop/wrong.mp4", b"x" * KB)
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")
    assert err.value.details.get("EC") == "0002-00000228"
    assert sandbox.object_info("interop/wrong.mp4") is None


# ---- alibabacloud-oss-v2 (V4 only) ----------------------------------------------------------


def ossv2_client(sandbox: OssSandbox, **config: Any) -> ossv2.Client:
    c = sandbox.issue_sts()
    cfg = ossv2.config.load_default()
    cfg.credentials_provider = ossv2.credentials.StaticCredentialsProvider(
        c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"])
    cfg.region, cfg.endpoint, cfg.use_path_style = sandbox.region, sandbox.endpoint, True  # an IP endpoint
    cfg.retry_max_attempts = 1
    for name, value in config.items():
        setattr(cfg, name, value)
    return ossv2.Client(cfg)


@pytest.mark.parametrize("additional", [None, ["content-length", "host"]])
def test_alibabacloud_oss_v2_uploads(sandbox_in: Callable[[str], OssSandbox], tmp_path: Path,
                                     additional: list[str] | None) -> None:
    """The V4-only SDK: PutObject and its uploader (multipart, three parts at a time), with and
    without AdditionalHeaders signed."""
    sandbox = sandbox_in("v4")
    client = ossv2_client(sandbox, additional_headers=additional)
    simple, multi = os.urandom(SIMPLE), os.urandom(MULTI)
    result = client.put_object(ossv2.PutObjectRequest(bucket=sandbox.bucket, key="v2/simple one.mp4", body=simple))
    assert result.status_code == 200
    path = tmp_path / "multi.mp4"
    path.write_bytes(multi)
    uploader = client.uploader(part_size=200 * KB, parallel_num=3)
    done = uploader.upload_file(ossv2.PutObjectRequest(bucket=sandbox.bucket, key="v2/multi+part ü.mp4"),
                                filepath=str(path))
    assert done.status_code == 200
    assert received(sandbox, "v2/simple one.mp4", simple) and received(sandbox, "v2/multi+part ü.mp4", multi)
    assert sandbox.object_info("v2/multi+part ü.mp4").etag.endswith("-5")  # really multipart
    got = client.get_object(ossv2.GetObjectRequest(bucket=sandbox.bucket, key="v2/simple one.mp4",
                                                   response_content_disposition='attachment; filename="ä b.mp4"'))
    assert got.body.read() == simple  # every query parameter is signed and checked
    assert sandbox.signatures["v4"] >= 9 and sandbox.signatures["v1"] == 0


# ---- the stock voduploadsdk (V1) ------------------------------------------------------------


@pytest.fixture
def stock_sdk_pointed_at(monkeypatch: pytest.MonkeyPatch):
    """Point the stock voduploadsdk at the sandbox through its own mechanisms.

    VOD: aliyunsdkcore's process-wide endpoint table (region_provider.add_endpoint), which
    every AcsClient consults first, including the one the uploader builds. The progress
    report goes to a hard-coded http://vod.cn-shanghai.aliyuncs.com with `requests`, which
    honours HTTP_PROXY: the VOD sandbox accepts absolute-form requests for *.aliyuncs.com
    hosts. NO_PROXY keeps oss2's loopback traffic direct (aliyunsdkcore ignores NO_PROXY,
    so its calls arrive at the sandbox through the same "proxy", which is the sandbox).
    """
    from aliyunsdkcore.endpoint.default_endpoint_resolver import DefaultEndpointResolver
    from aliyunsdkcore.profile import region_provider

    def point(sb: Sandboxes) -> None:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, f"http://{sb.vod.endpoint}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1,localhost")
        region_provider.add_endpoint("vod", sb.vod.region, sb.vod.endpoint)

    yield point
    DefaultEndpointResolver.predefined_endpoint_resolver.reset()


def test_stock_voduploadsdk_uploads_to_a_sandbox_taking_both(tmp_path: Path, stock_sdk_pointed_at,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """voduploadsdk 1.0.2 signs V1 only (oss2.StsAuth's default): an account that still has V1."""
    sb = Sandboxes(tmp_path / "sb", oss_signature="both")
    try:
        _stock_sdk_uploads(sb, tmp_path, stock_sdk_pointed_at)
    finally:
        sb.shutdown()
    capsys.readouterr()  # the SDK prints its progress; keep the test output clean


def _stock_sdk_uploads(sb: Sandboxes, tmp_path: Path, stock_sdk_pointed_at: Callable[[Sandboxes], None]) -> None:
    stock_sdk_pointed_at(sb)
    from voduploadsdk.AliyunVodUploader import AliyunVodUploader
    from voduploadsdk.UploadImageRequest import UploadImageRequest
    from voduploadsdk.UploadVideoRequest import UploadVideoRequest

    uploader = AliyunVodUploader(sb.vod.credentials["access_key_id"], sb.vod.credentials["access_key_secret"])
    uploader.setMultipartUpload(multipartThreshold=512 * KB, multipartPartSize=200 * KB, multipartThreadsNum=2)
    files = {"multipart.mp4": os.urandom(900 * KB + 5), "single.mp4": os.urandom(40 * KB)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        info = uploader.uploadLocalVideo(UploadVideoRequest(str(tmp_path / name), name))
        # The SDK's retry loop can return normally without an object: check the sandbox got the bytes.
        entry = next(e for e in sb.journal.entries() if e["remote_id"] == info["VideoId"])
        assert entry["md5"] == hashlib.md5(data).hexdigest() and entry["size"] == len(data)
        assert sb.vod.state.media(info["VideoId"]).reported_bytes == len(data)  # its progress report arrived
    image = tmp_path / "cover.png"
    image.write_bytes(b"\x89PNG" + os.urandom(2 * KB))
    image_id, image_url = uploader.uploadImage(UploadImageRequest(str(image), "cover"))
    entry = next(e for e in sb.journal.entries() if e["remote_id"] == image_id)
    assert entry["kind"] == "image" and entry["md5"] == hashlib.md5(image.read_bytes()).hexdigest()
    assert image_url.startswith(sb.oss.endpoint)
    assert sb.oss.signatures["v1"] > 0 and sb.oss.signatures["v4"] == 0

"""The VOD sandbox against aliyunsdkcore + aliyunsdkvod and oss2 (the stock voduploadsdk:
test_interop_oss.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import os
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import oss2
import pytest
import requests
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkvod.request.v20170321 import (CreateUploadAttachedMediaRequest, CreateUploadImageRequest,
                                            CreateUploadVideoRequest, DeleteVideoRequest, GetURLUploadInfosRequest, GetVideoInfoRequest,
                                            RefreshUploadVideoRequest, RegisterMediaRequest, UploadMediaByURLRequest)

from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox

KB = 1024


class Sandboxes:
    """OSS and VOD sandboxes sharing one data dir and journal."""

    def __init__(self, data_dir: Path, **options: Any):
        opts = SandboxOptions(**options)
        self.journal = UploadsJournal(data_dir / "uploads.jsonl")
        self.oss = OssSandbox(data_dir, opts, self.journal)
        self.oss.start()
        self.vod = VodSandbox(data_dir, opts, self.journal, self.oss, status_delays=(0.1, 0.2))
        self.vod.start()

    def client(self, secret: str | None = None) -> AcsClient:
        creds = self.vod.credentials
        client = AcsClient(creds["access_key_id"], secret or creds["access_key_secret"], self.vod.region,
                           auto_retry=False)
        client.add_endpoint(self.vod.region, "vod", self.vod.endpoint)
        return client

    def shutdown(self) -> None:
        self.vod.shutdown()
        self.oss.shutdown()


@pytest.fixture
def sb(tmp_path: Path):
    sandboxes = Sandboxes(tmp_path)
    yield sandboxes
    sandboxes.shutdown()


def call(client: AcsClient, request_class: type, **params: Any) -> dict[str, Any]:
    request = request_class()
    for name, value in params.items():
        getattr(request, f"set_{name}")(value)
    return json.loads(client.do_action_with_exception(request))


def server_error(fn: Callable[[], Any]) -> ServerException:
    with pytest.raises(ServerException) as err:
        fn()
    return err.value


def decode(b64: str) -> dict[str, str]:
    return json.loads(base64.b64decode(b64))


def sts_bucket(auth: dict[str, str], endpoint: str, bucket: str, **kw: Any) -> oss2.Bucket:
    """oss2 signing V4 (what the sandbox accepts by default) for UploadAuth's Region."""
    return oss2.Bucket(oss2.StsAuth(auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"],
                                    auth_version="v4"), endpoint, bucket, region=auth.get("Region", "cn-shanghai"), **kw)


def upload_with_oss2(answer: dict[str, Any], data: bytes, tmp_path: Path) -> None:
    address, auth = decode(answer["UploadAddress"]), decode(answer["UploadAuth"])
    bucket = sts_bucket(auth, address["Endpoint"], address["Bucket"], enable_crc=True)
    path = tmp_path / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(data)
    oss2.resumable_upload(bucket, address["FileName"], str(path), store=oss2.ResumableStore(root=str(tmp_path / "rs")),
                          multipart_threshold=256 * KB, part_size=128 * KB, num_threads=3)


def wait_for(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def rpc_params(sb: Sandboxes, action: str, **extra: str) -> dict[str, str]:
    """The test's own RPC signer (independent of the SDK and of the server)."""
    params = {"Action": action, "Version": "2017-03-21", "Format": "JSON", "RegionId": sb.vod.region,
              "AccessKeyId": sb.vod.credentials["access_key_id"], "SignatureMethod": "HMAC-SHA1",
              "SignatureVersion": "1.0", "SignatureNonce": uuid.uuid4().hex,
              "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    return params


def sign(sb: Sandboxes, params: dict[str, str], method: str = "POST") -> dict[str, str]:
    enc = partial(quote, safe="-_.~")
    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    text = f"{method}&%2F&{enc(canonical)}"
    key = (sb.vod.credentials["access_key_secret"] + "&").encode()
    return {**params, "Signature": base64.b64encode(hmac.new(key, text.encode(), hashlib.sha1).digest()).decode()}


def test_public_api_signatures() -> None:
    params = list(inspect.signature(VodSandbox.__init__).parameters)
    assert params[:7] == ["self", "data_dir", "options", "journal", "oss", "port", "region"]
    for name in ("start", "shutdown"):
        assert callable(getattr(VodSandbox, name))


def test_video_upload_reaches_normal_and_is_journaled_once(sb: Sandboxes, tmp_path: Path) -> None:
    client = sb.client()
    answer = call(client, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="标题 & title *~",
                  FileName="/srv/outbox/clip.MP4", Tags="a,b", CateId=7, Description="d")
    assert set(answer) >= {"VideoId", "UploadAddress", "UploadAuth", "RequestId"}
    address, auth = decode(answer["UploadAddress"]), decode(answer["UploadAuth"])
    assert address["Endpoint"] == sb.oss.endpoint and address["Bucket"] == sb.oss.bucket
    assert address["FileName"].endswith(".mp4")
    assert auth["Expiration"] == "3000" and auth["Region"] == "cn-shanghai" and auth["ExpireUTCTime"].endswith("Z")
    video = partial(call, client, GetVideoInfoRequest.GetVideoInfoRequest, VideoId=answer["VideoId"])
    assert video()["Video"]["Status"] == "Uploading"

    refreshed = call(client, RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=answer["VideoId"])
    assert decode(refreshed["UploadAddress"])["FileName"] == address["FileName"]
    assert decode(refreshed["UploadAuth"])["AccessKeyId"] != auth["AccessKeyId"]

    scoped = sts_bucket(auth, address["Endpoint"], address["Bucket"])
    with pytest.raises(oss2.exceptions.AccessDenied):  # the credentials reach this video's prefix only
        scoped.put_object("sv/someone-else.mp4", b"x")
    data = os.urandom(700 * KB)
    upload_with_oss2(answer, data, tmp_path)
    statuses: set[str] = set()

    def normal() -> dict[str, Any] | None:
        v = video()["Video"]
        statuses.add(v["Status"])
        return v if v["Status"] == "Normal" else None

    info = wait_for(normal)
    assert statuses <= {"UploadSucc", "Transcoding", "Normal"}
    assert info["Size"] == len(data) and info["Title"] == "标题 & title *~" and info["Duration"] > 0
    upload_with_oss2(refreshed, data, tmp_path)  # same object again: still one journal line
    lines = [e for e in sb.journal.entries() if e["remote_id"] == answer["VideoId"]]
    assert len(lines) == 1
    assert lines[0]["md5"] == hashlib.md5(data).hexdigest()
    assert lines[0]["kind"] == "video" and lines[0]["provider"] == "aliyun-vod" and lines[0]["size"] == len(data)


def test_create_validation_errors(sb: Sandboxes) -> None:
    client = sb.client()
    create = partial(call, client, CreateUploadVideoRequest.CreateUploadVideoRequest)
    cases = [
        (dict(FileName="a.mp4"), "MissingTitle"),
        (dict(Title="x" * 129, FileName="a.mp4"), "LengthExceededMax"),
        (dict(Title="ok", FileName="/srv/noext"), "InvalidFileName.Extension"),
        (dict(Title="smile \U0001F600", FileName="a.mp4"), "IllegalCharacters"),
        (dict(Title="ok", FileName="a.mp4", Tags=",".join(f"t{i}" for i in range(17))), "TagsExceededMax"),
    ]
    for params, code in cases:
        err = server_error(lambda: create(**params))
        assert (err.get_http_status(), err.get_error_code()) == (400, code)
    assert create(Title="x" * 128, FileName="a.mp4")["VideoId"]
    for request_class in (RefreshUploadVideoRequest.RefreshUploadVideoRequest, GetVideoInfoRequest.GetVideoInfoRequest):
        err = server_error(lambda: call(client, request_class, VideoId="0" * 32))
        assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidVideo.NotFound")


def test_wrong_credentials_are_refused(sb: Sandboxes) -> None:
    err = server_error(lambda: call(sb.client("wrong-secret"), GetVideoInfoRequest.GetVideoInfoRequest, VideoId="x"))
    # The SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret when our string to sign equals its own.
    assert err.get_http_status() == 400
    assert err.get_error_code() in ("SignatureDoesNotMatch", "InvalidAccessKeySecret")
    other = AcsClient("LTAInobody", "x", "cn-shanghai", auto_retry=False)
    other.add_endpoint("cn-shanghai", "vod", sb.vod.endpoint)
    err = server_error(lambda: call(other, GetVideoInfoRequest.GetVideoInfoRequest, VideoId="x"))
    assert (err.get_http_status(), err.get_error_code()) == (404, "InvalidAccessKeyId.NotFound")


def test_raw_rpc_timestamp_nonce_and_form_body(sb: Sandboxes) -> None:
    url = f"http://{sb.vod.endpoint}/"
    params = sign(sb, rpc_params(sb, "CreateUploadImage", ImageType="cover", ImageExt="jpg"))
    ok = requests.post(url, data=params, timeout=5)  # everything in a form body this time
    assert ok.status_code == 200 and ok.json()["ImageId"]
    replay = requests.post(url, params=params, timeout=5)
    assert (replay.status_code, replay.json()["Code"]) == (400, "SignatureNonceUsed")
    stale = rpc_params(sb, "CreateUploadImage", Timestamp="2020-01-01T00:00:00Z")
    answer = requests.post(url, params=sign(sb, stale), timeout=5)
    assert (answer.status_code, answer.json()["Code"]) == (400, "InvalidTimeStamp.Expired")
    assert set(answer.json()) == {"Code", "Message", "RequestId", "HostId"}
    tampered = {**sign(sb, rpc_params(sb, "CreateUploadImage")), "ImageExt": "gif"}
    answer = requests.post(url, params=tampered, timeout=5)
    assert (answer.status_code, answer.json()["Code"]) == (400, "SignatureDoesNotMatch")
    unknown = requests.post(url, params=sign(sb, rpc_params(sb, "DeleteEverything")), timeout=5)
    assert (unknown.status_code, unknown.json()["Code"]) == (404, "InvalidAction.NotFound")


def test_image_and_attached_media(sb: Sandboxes, tmp_path: Path) -> None:
    client = sb.client()
    image = call(client, CreateUploadImageRequest.CreateUploadImageRequest, ImageType="cover", ImageExt="jpg",
                 Title="cover")
    assert set(image) >= {"ImageId", "ImageURL", "FileURL", "UploadAddress", "UploadAuth"}
    attached = call(client, CreateUploadAttachedMediaRequest.CreateUploadAttachedMediaRequest,
                    BusinessType="subtitle", MediaExt="vtt", Title="subs")
    assert set(attached) >= {"MediaId", "MediaURL", "FileURL", "UploadAddress", "UploadAuth"}
    upload_with_oss2(image, b"\xff\xd8jpeg" * 100, tmp_path)
    upload_with_oss2(attached, b"WEBVTT\n", tmp_path)
    kinds = {e["remote_id"]: e["kind"] for e in sb.journal.entries()}
    assert kinds == {image["ImageId"]: "image", attached["MediaId"]: "attached"}
    assert requests.get(image["ImageURL"], timeout=5).status_code == 403  # private bucket, like OSS
    for params, code in (
        (dict(BusinessType="subtitle", MediaExt="mp4"), "InvalidParameter"),
        (dict(BusinessType="poster", MediaExt="png"), "InvalidParameter"),
        (dict(MediaExt="png"), "MissingBusinessType"),
    ):
        err = server_error(lambda: call(client, CreateUploadAttachedMediaRequest.CreateUploadAttachedMediaRequest,
                                        **params))
        assert err.get_error_code() == code
    err = server_error(lambda: call(client, CreateUploadImageRequest.CreateUploadImageRequest, ImageType="default",
                                    ImageExt="bmp"))
    assert err.get_error_code() == "InvalidParameter"


def test_upload_media_by_url(sb: Sandboxes, file_server: tuple[Path, str]) -> None:
    root, base = file_server
    data = os.urandom(300 * KB)
    (root / "clip one.mp4").write_bytes(data)
    good, missing, remote = f"{base}/clip one.mp4", f"{base}/absent.mp4", "http://example.com/clip.mp4"
    client = sb.client()
    urls = [quote(u) for u in (good, missing, remote)]
    answer = call(client, UploadMediaByURLRequest.UploadMediaByURLRequest, UploadURLs=",".join(urls),
                  UploadMetadatas=json.dumps([{"SourceURL": urls[0], "Title": "pulled"}]))
    jobs = {j["SourceURL"]: j["JobId"] for j in answer["UploadJobs"]}
    assert list(jobs) == urls

    def infos() -> dict[str, dict[str, Any]] | None:
        got = call(client, GetURLUploadInfosRequest.GetURLUploadInfosRequest, JobIds=",".join(jobs.values()))
        by_job = {i["JobId"]: i for i in got["URLUploadInfoList"]}
        done = all(i["Status"] in ("SUCCESS", "DOWNLOAD_FAIL") for i in by_job.values())
        return by_job if done else None

    result = wait_for(infos)
    ok, gone, far = (result[jobs[u]] for u in urls)
    assert ok["Status"] == "SUCCESS" and ok["FileSize"] == str(len(data)) and ok["MediaId"]
    assert gone["Status"] == "DOWNLOAD_FAIL" and gone["ErrorCode"] == "DownloadFailed"
    assert far["Status"] == "DOWNLOAD_FAIL" and far["ErrorCode"] == "InvalidURL.NotLoopback"
    entry = next(e for e in sb.journal.entries() if e["remote_id"] == ok["MediaId"])
    assert (entry["kind"], entry["md5"], entry["title"]) == ("url_pull", hashlib.md5(data).hexdigest(), "pulled")
    video = call(client, GetVideoInfoRequest.GetVideoInfoRequest, VideoId=ok["MediaId"])["Video"]
    assert video["Status"] in ("UploadSucc", "Transcoding", "Normal")
    assert video["Size"] == len(data)
    by_url = call(client, GetURLUploadInfosRequest.GetURLUploadInfosRequest,
                  UploadURLs=",".join([urls[0], quote(f"{base}/never.mp4")]))
    assert [i["JobId"] for i in by_url["URLUploadInfoList"]] == [jobs[urls[0]]]
    assert by_url["NonExists"] == [quote(f"{base}/never.mp4")]
    err = server_error(lambda: call(client, UploadMediaByURLRequest.UploadMediaByURLRequest,
                                    UploadURLs=",".join([urls[0]] * 21)))
    assert err.get_error_code() == "InvalidParameter"
    err = server_error(lambda: call(client, GetURLUploadInfosRequest.GetURLUploadInfosRequest,
                                    JobIds=",".join(["x"] * 11)))
    assert err.get_error_code() == "InvalidParameter"


def test_register_media(sb: Sandboxes) -> None:
    creds = sb.oss.issue_sts()
    bucket = sts_bucket(creds, sb.oss.endpoint, sb.oss.bucket)
    data = os.urandom(10 * KB)
    bucket.put_object("archive/old film.mp4", data)
    url = sb.oss.object_url("archive/old film.mp4")
    missing = sb.oss.object_url("archive/none.mp4")
    client = sb.client()
    register = partial(call, client, RegisterMediaRequest.RegisterMediaRequest)
    first = register(RegisterMetadatas=json.dumps([{"FileURL": url, "Title": "old"}, {"FileURL": missing}]))
    assert first["FailedFileURLs"] == [missing]
    [item] = first["RegisteredMediaList"]
    assert item["FileURL"] == url and item["NewRegister"] is True
    again = register(RegisterMetadatas=json.dumps([{"FileURL": url}]))
    assert again["RegisteredMediaList"] == [{"FileURL": url, "MediaId": item["MediaId"], "NewRegister": False}]
    assert call(client, GetVideoInfoRequest.GetVideoInfoRequest, VideoId=item["MediaId"])["Video"]["Size"] == len(data)
    lines = [e for e in sb.journal.entries() if e["kind"] == "registered"]
    assert [(e["remote_id"], e["md5"]) for e in lines] == [(item["MediaId"], hashlib.md5(data).hexdigest())]
    err = server_error(lambda: register(RegisterMetadatas=json.dumps([{"FileURL": url}] * 11)))
    assert err.get_error_code() == "InvalidParameter"


def test_duplicate_ids_hands_back_an_issued_id(tmp_path: Path) -> None:
    sandboxes = Sandboxes(tmp_path, duplicate_ids=True)
    try:
        client = sandboxes.client()
        create = partial(call, client, CreateUploadVideoRequest.CreateUploadVideoRequest)
        first, second = create(Title="one", FileName="1.mp4"), create(Title="two", FileName="2.mp4")
        assert first["VideoId"] == second["VideoId"]
        image = partial(call, client, CreateUploadImageRequest.CreateUploadImageRequest, ImageType="default")
        assert image()["ImageId"] == image()["ImageId"]
    finally:
        sandboxes.shutdown()


def test_fail_rate_gives_some_5xx(tmp_path: Path) -> None:
    sandboxes = Sandboxes(tmp_path, fail_rate=0.5, seed=11)
    try:
        client = sandboxes.client()
        outcomes = []
        for _ in range(30):
            try:
                call(client, CreateUploadImageRequest.CreateUploadImageRequest, ImageType="default")
                outcomes.append("ok")
            except ServerException as e:
                outcomes.append(e.get_http_status())
            except ClientException:
                outcomes.append("drop")
        assert "ok" in outcomes and "drop" in outcomes
        assert {o for o in outcomes if isinstance(o, int)} & {500, 503}
    finally:
        sandboxes.shutdown()


def test_token_ttl_option_sets_sts_lifetime(tmp_path: Path) -> None:
    sandboxes = Sandboxes(tmp_path, token_ttl=1)
    try:
        client = sandboxes.client()
        answer = call(client, CreateUploadVideoRequest.CreateUploadVideoRequest, Title="t", FileName="t.mp4")
        issued = time.time()
        address, auth = decode(answer["UploadAddress"]), decode(answer["UploadAuth"])
        assert auth["Expiration"] == "1"
        bucket = sts_bucket(auth, address["Endpoint"], address["Bucket"])
        time.sleep(max(0.0, issued + 1.05 - time.time()))
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket.put_object(address["FileName"], b"late")
        assert (err.value.status, err.value.code) == (403, "SecurityTokenExpired")
        refreshed = call(client, RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=answer["VideoId"])
        upload_with_oss2(refreshed, b"on time", tmp_path)
        assert [e["remote_id"] for e in sandboxes.journal.entries()] == [answer["VideoId"]]
    finally:
        sandboxes.shutdown()


def test_state_survives_restart(tmp_path: Path) -> None:
    first = Sandboxes(tmp_path)
    answer = call(first.client(), CreateUploadVideoRequest.CreateUploadVideoRequest, Title="kept", FileName="k.mp4")
    creds = first.vod.credentials
    first.shutdown()
    second = Sandboxes(tmp_path)
    try:
        assert second.vod.credentials == creds
        client = second.client()
        video = call(client, GetVideoInfoRequest.GetVideoInfoRequest, VideoId=answer["VideoId"])["Video"]
        assert (video["Title"], video["Status"]) == ("kept", "Uploading")
        refreshed = call(client, RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=answer["VideoId"])
        assert decode(refreshed["UploadAddress"])["FileName"] == decode(answer["UploadAddress"])["FileName"]
        assert decode(refreshed["UploadAddress"])["Endpoint"] == second.oss.endpoint
    finally:
        second.shutdown()


def test_delete_video_strict_like_the_service(sb: Sandboxes) -> None:
    """DeleteVideo takes VideoIds (comma-separated, 1 to 20); unknown ids come back in
    NonExistVideoIds; a deleted video is gone from GetVideoInfo and from the open uploads."""
    client = sb.client()
    ids = [call(client, CreateUploadVideoRequest.CreateUploadVideoRequest, Title=f"t{i}", FileName=f"{i}.mp4")["VideoId"]
           for i in range(2)]
    assert set(ids) <= set(sb.vod.open_uploads()["vod_uploading"])
    assert server_error(lambda: call(client, DeleteVideoRequest.DeleteVideoRequest)).get_error_code() == "MissingVideoIds"
    too_many = ",".join(f"v{i}" for i in range(21))
    assert server_error(lambda: call(client, DeleteVideoRequest.DeleteVideoRequest,
                                     VideoIds=too_many)).get_error_code() == "InvalidParameter"
    answer = call(client, DeleteVideoRequest.DeleteVideoRequest, VideoIds=f"{ids[0]},nosuchvideo,{ids[1]}")
    assert answer["NonExistVideoIds"] == ["nosuchvideo"] and answer["ForbiddenVideoIds"] == []
    assert not set(ids) & set(sb.vod.open_uploads()["vod_uploading"])
    err = server_error(lambda: call(client, GetVideoInfoRequest.GetVideoInfoRequest, VideoId=ids[0]))
    assert err.get_error_code() == "InvalidVideo.NotFound"
    assert call(client, DeleteVideoRequest.DeleteVideoRequest, VideoIds=ids[1])["NonExistVideoIds"] == [ids[1]]

"""The Youku sandbox's OSS-based flow (PROTOCOLS.md section 3) over real HTTP: create with
isnew=1, oss2 against the Youku bucket with the STS credentials, get_sts_inf, commit,
cancel, the --youku-protocol switch, restart. (The public youku-upload client's run is in
test_interop_youku.py.)"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oss2
import pytest
import requests

from helpers import FakeClock
from vidupd.sandbox.app import start_sandbox
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox
from vidupd.sandbox.youku_oss import DEFAULT_STS_TTL, YOUKU_BUCKET, YOUKU_REGION
from vidupd.sandbox.youku_state import (ALREADY_COMMITTED, FILE_MD5_MISMATCH, FILE_SIZE_MISMATCH,
                                        UPLOAD_INCOMPLETE, UPLOAD_TOKEN_EXPIRED, upload_server_ip)

KIB = 1024
PART = 100 * KIB  # OSS's smallest non-last part (youku-upload uses exactly this)
CREATE_KEYS = {"upload_token", "endpoint", "oss_bucket", "oss_object", "temp_access_id", "temp_access_secret",
               "security_token", "expire_time"}
STS_KEYS = {"endpoint", "security_token", "temp_access_id", "temp_access_secret", "expire_time"}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def options(**kw: Any) -> SandboxOptions:
    """oss2 signs V1 here; once the OSS sandbox has --oss-signature (default v4) run "both"."""
    if "oss_signature" in {f.name for f in dataclasses.fields(SandboxOptions)}:
        kw.setdefault("oss_signature", "both")
    return SandboxOptions(**kw)


def assert_error(r: requests.Response, code: int, status: int = 400) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


class Box:
    def __init__(self, sb: YoukuSandbox, journal: UploadsJournal):
        self.sb = sb
        self.journal = journal
        self.http = requests.Session()

    def api(self, method: str, path: str, **params: Any) -> requests.Response:
        creds = self.sb.credentials
        merged = {"client_id": creds["client_id"], "access_token": creds["access_token"], **params}
        merged = {k: v for k, v in merged.items() if v is not None}
        url = f"{self.sb.api_base}/{path}"
        if method == "GET":
            return self.http.get(url, params=merged, timeout=10)
        return self.http.post(url, data=merged, timeout=10)

    def create(self, content: bytes, method: str = "GET", **extra: Any) -> dict[str, Any]:
        fields = {"title": "oss clip", "tags": "vidupd,oss", "file_name": "clip.mp4", "file_size": len(content),
                  "file_md5": md5(content), "isnew": 1, **extra}
        r = self.api(method, "uploads/create.json", **fields)
        assert r.status_code == 201, r.text
        return r.json()

    def renew(self, created: dict[str, Any], **override: Any) -> requests.Response:
        fields = {k: created[k] for k in ("upload_token", "oss_bucket", "oss_object")}
        return self.api("GET", "uploads/get_sts_inf.json", **{**fields, **override})

    def commit(self, token: str) -> requests.Response:
        return self.api("POST", "uploads/commit.json", upload_token=token)


def bucket(answer: dict[str, Any], name: str | None = None) -> oss2.Bucket:
    auth = oss2.StsAuth(answer["temp_access_id"], answer["temp_access_secret"], answer["security_token"])
    return oss2.Bucket(auth, answer["endpoint"], name or answer["oss_bucket"])


def multipart(b: oss2.Bucket, key: str, content: bytes) -> None:
    upload_id = b.init_multipart_upload(key).upload_id
    parts = []
    for n, start in enumerate(range(0, len(content), PART), 1):
        r = b.upload_part(key, upload_id, n, content[start:start + PART])
        parts.append(oss2.models.PartInfo(n, r.etag))
    b.complete_multipart_upload(key, upload_id, parts)


@pytest.fixture
def make_box(tmp_path: Path) -> Iterator[Any]:
    started: list[Box] = []

    def make(data_dir: Path | None = None, clock: Any = time.time, **kw: Any) -> Box:
        d = data_dir or tmp_path / "sandbox"
        d.mkdir(exist_ok=True)
        journal = UploadsJournal(d / "uploads.jsonl")
        sb = YoukuSandbox(d, options(**kw), journal, encode_seconds=0, clock=clock)
        sb.start()
        started.append(Box(sb, journal))
        return started[-1]

    yield make
    for box in started:
        box.http.close()
        box.sb.shutdown()


@pytest.fixture
def box(make_box: Any) -> Box:
    return make_box()


def test_create_answers_oss_credentials_for_get_and_post(box: Box) -> None:
    content = os.urandom(1000)
    for method in ("GET", "POST"):  # youku-upload sends GET; the documentation says POST
        created = box.create(content, method=method)
        assert set(created) == CREATE_KEYS
        assert created["endpoint"] == box.sb.oss.endpoint and created["endpoint"].startswith("http://127.0.0.1:")
        assert created["oss_bucket"] == YOUKU_BUCKET == box.sb.oss.bucket and box.sb.oss.region == YOUKU_REGION
        assert created["oss_object"].endswith(f"/{created['upload_token']}.mp4")
        expires = calendar.timegm(time.strptime(created["expire_time"], "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(expires - (time.time() + DEFAULT_STS_TTL)) < 60  # UTC, 3,000 s ahead
    assert box.sb.counters()["open_oss"] == 2 and box.sb.counters()["sts_issued"] == 2


def test_multipart_upload_commit_once(box: Box) -> None:
    content = os.urandom(5 * PART + 777)
    created = box.create(content)
    token, key = created["upload_token"], created["oss_object"]
    assert_error(box.commit(token), UPLOAD_INCOMPLETE)  # nothing uploaded yet
    multipart(bucket(created), key, content)
    r = box.commit(token)
    assert r.status_code == 200, r.text
    video_id = r.json()["video_id"]
    assert video_id.startswith("X") and r.json() == {"video_id": video_id}
    assert [box.commit(token).json()["video_id"] for _ in range(2)] == [video_id, video_id]
    [entry] = box.journal.entries()
    assert (entry["provider"], entry["remote_id"], entry["md5"], entry["size"], entry["flow"], entry["oss_object"]) \
        == ("youku", video_id, md5(content), len(content), "oss", key)
    assert box.sb.oss.object_path(key).read_bytes() == content
    c = box.sb.counters()
    assert (c["oss_parts_received"], c["oss_bytes_received"], c["committed_oss"], c["open_oss"]) == (6, len(content), 1, 0)
    show = box.http.get(f"{box.sb.api_base}/videos/show.json",
                        params={"client_id": box.sb.credentials["client_id"], "video_id": video_id}, timeout=10)
    assert show.json()["title"] == "oss clip" and show.json()["state"] == "normal"


def test_commit_checks_size_and_md5_of_the_object(box: Box) -> None:
    content = os.urandom(3000)
    created = box.create(content)
    b = bucket(created)
    b.put_object(created["oss_object"], content[:-1])
    assert_error(box.commit(created["upload_token"]), FILE_SIZE_MISMATCH)
    b.put_object(created["oss_object"], os.urandom(3000))
    assert_error(box.commit(created["upload_token"]), FILE_MD5_MISMATCH)
    b.put_object(created["oss_object"], content)
    assert box.commit(created["upload_token"]).status_code == 200
    assert [e["md5"] for e in box.journal.entries()] == [md5(content)]
    assert box.sb.counters()["oss_bytes_received"] == 3 * 3000 - 1  # PutObject bodies count too


def test_sts_reaches_only_the_uploads_object(box: Box) -> None:
    content = os.urandom(500)
    created = box.create(content)
    other = box.create(content)
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket(created).put_object(other["oss_object"], content)
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket(created).put_object("videos/elsewhere.mp4", content)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket(created, "vidupd-sandbox").put_object(created["oss_object"], content)


def test_renewed_credentials_continue_the_same_multipart_upload(make_box: Any) -> None:
    box = make_box(token_ttl=1, clock=FakeClock())  # STS lives 1 s; Youku's clock stands still
    content = os.urandom(3 * PART)
    created = box.create(content)
    key = created["oss_object"]
    old = bucket(created)
    upload_id = old.init_multipart_upload(key).upload_id
    first = old.upload_part(key, upload_id, 1, content[:PART])
    time.sleep(1.2)
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        old.upload_part(key, upload_id, 2, content[PART:2 * PART])
    assert caught.value.code == "SecurityTokenExpired"
    r = box.renew(created)
    assert r.status_code == 200 and set(r.json()) == STS_KEYS, r.text
    fresh = {**created, **r.json()}
    assert fresh["temp_access_id"] != created["temp_access_id"]
    new = bucket(fresh)
    listed = new.list_parts(key, upload_id).parts  # the same upload, seen with the new credentials
    assert [(p.part_number, p.etag) for p in listed] == [(1, first.etag)]
    parts = [oss2.models.PartInfo(1, first.etag)]
    for n in (2, 3):
        parts.append(oss2.models.PartInfo(n, new.upload_part(key, upload_id, n, content[(n - 1) * PART:n * PART]).etag))
    new.complete_multipart_upload(key, upload_id, parts)
    assert box.commit(created["upload_token"]).status_code == 200
    assert box.sb.counters()["sts_renewed"] == 1


def test_get_sts_inf_checks_its_parameters(box: Box) -> None:
    content = os.urandom(100)
    created = box.create(content)
    assert_error(box.renew(created, oss_bucket="other"), 1013)
    assert_error(box.renew(created, oss_object="videos/x.mp4"), 1013)
    assert_error(box.renew(created, oss_object=None), 1012)
    assert_error(box.renew(created, access_token="bogus"), 1008)
    assert_error(box.renew(created, upload_token="nope"), UPLOAD_TOKEN_EXPIRED)
    legacy = box.api("GET", "uploads/create.json", title="legacy", tags="vidupd,oss", file_name="a.mp4",
                     file_size=100, file_md5=md5(content)).json()  # no isnew: the six steps
    assert "upload_server_uri" in legacy
    assert_error(box.renew({**created, "upload_token": legacy["upload_token"]}), 1013)
    upload_server = f"http://{box.sb.upload_server}/gupload"
    assert_error(box.http.get(f"{upload_server}/check", params={"upload_token": created["upload_token"]},
                              timeout=10), 1013)  # the upload server does not take OSS tokens
    bucket(created).put_object(created["oss_object"], content)
    assert box.commit(created["upload_token"]).status_code == 200
    assert_error(box.renew(created), ALREADY_COMMITTED)


def test_cancel_kills_the_token_and_drops_the_bytes(box: Box) -> None:
    content = os.urandom(2 * PART)
    created = box.create(content)
    token, key = created["upload_token"], created["oss_object"]
    b = bucket(created)
    upload_id = b.init_multipart_upload(key).upload_id
    b.upload_part(key, upload_id, 1, content[:PART])
    r = box.api("GET", "uploads/cancel.json", upload_token=token)
    assert r.status_code == 200 and r.json() == {"upload_token": token}
    assert_error(box.renew(created), UPLOAD_TOKEN_EXPIRED)
    assert_error(box.commit(token), UPLOAD_TOKEN_EXPIRED)
    assert list(box.sb.oss.store.incomplete_uploads()) == []
    c = box.sb.counters()
    assert (c["cancelled_oss"], c["open_oss"]) == (1, 0)
    done = box.create(content)
    bucket(done).put_object(done["oss_object"], content)
    assert box.commit(done["upload_token"]).status_code == 200
    assert_error(box.api("POST", "uploads/cancel.json", upload_token=done["upload_token"]), ALREADY_COMMITTED)
    assert box.sb.oss.object_info(done["oss_object"]) is not None  # a committed video keeps its object


def test_expired_oss_upload_token(box: Box) -> None:
    created = box.create(b"x" * 100)
    box.sb.expire_upload_token(created["upload_token"])
    assert_error(box.renew(created), UPLOAD_TOKEN_EXPIRED)
    assert_error(box.commit(created["upload_token"]), UPLOAD_TOKEN_EXPIRED)
    assert box.sb.counters()["expired_oss"] == 1


def test_protocol_switch(make_box: Any, tmp_path: Path) -> None:
    content = os.urandom(100)
    plain = {"title": "legacy", "tags": "vidupd,oss", "file_name": "a.mp4", "file_size": 100, "file_md5": md5(content)}
    both = make_box(data_dir=tmp_path / "both")
    assert set(both.create(content)) == CREATE_KEYS
    assert set(both.api("GET", "uploads/create.json", **plain).json()) == {"upload_token", "upload_server_uri",
                                                                           "instant_upload_ok"}
    slices = make_box(data_dir=tmp_path / "slices", youku_protocol="slices")
    for isnew in ("1", None):
        r = slices.api("POST", "uploads/create.json", **plain, isnew=isnew)
        assert r.status_code == 201 and "upload_server_uri" in r.json() and "oss_object" not in r.json()
    oss = make_box(data_dir=tmp_path / "oss", youku_protocol="oss")
    assert set(oss.create(content)) == CREATE_KEYS
    r = oss.api("GET", "uploads/create.json", **plain)
    assert_error(r, 1013)
    assert "isnew" in r.json()["error"]["description"]


def test_restart_keeps_oss_uploads_and_the_bucket_port(make_box: Any, tmp_path: Path) -> None:
    d = tmp_path / "restart"
    d.mkdir()
    clock = FakeClock()
    box = make_box(data_dir=d, clock=clock)
    content = os.urandom(2 * PART + 1)
    created = box.create(content)
    endpoint = box.sb.oss.endpoint
    b = bucket(created)
    upload_id = b.init_multipart_upload(created["oss_object"]).upload_id
    etag = b.upload_part(created["oss_object"], upload_id, 1, content[:PART]).etag
    box.sb.shutdown()
    again = make_box(data_dir=d, clock=clock)
    assert again.sb.oss.endpoint == endpoint
    assert json.loads((d / "youku" / "ports.json").read_text())[2] == int(endpoint.rsplit(":", 1)[1])
    b = bucket(created)  # the old credentials still hold after the restart
    parts = [oss2.models.PartInfo(1, etag)]
    for n in (2, 3):
        body = content[(n - 1) * PART:n * PART]
        parts.append(oss2.models.PartInfo(n, b.upload_part(created["oss_object"], upload_id, n, body).etag))
    b.complete_multipart_upload(created["oss_object"], upload_id, parts)
    video_id = again.commit(created["upload_token"]).json()["video_id"]
    again.sb.shutdown()
    third = make_box(data_dir=d, clock=clock)
    assert third.commit(created["upload_token"]).json()["video_id"] == video_id  # idempotent across restarts
    assert [e["remote_id"] for e in third.journal.entries()] == [video_id]


def test_oss_commit_needs_no_upload_server_ip(box: Box) -> None:
    """An OSS commit carries no upload_server_ip (one sent anyway is ignored)."""
    content = os.urandom(100)
    created = box.create(content)
    bucket(created).put_object(created["oss_object"], content)
    r = box.api("POST", "uploads/commit.json", upload_token=created["upload_token"],
                upload_server_ip=upload_server_ip("other"))
    assert r.status_code == 200, r.text


def test_app_wires_the_youku_bucket(tmp_path: Path) -> None:
    box = start_sandbox(tmp_path / "app", options())
    try:
        ports = json.loads((tmp_path / "app" / "ports.json").read_text())
        assert ports["youku_oss"] == int(box.youku_oss.endpoint.rsplit(":", 1)[1])
        assert box.youku_oss is box.youku.oss and box.youku_oss.endpoint != box.oss.endpoint
        assert box.youku_oss.bucket == YOUKU_BUCKET and box.oss.bucket != YOUKU_BUCKET
    finally:
        box.shutdown()


def test_hash_only_mode_checks_what_oss_knows(make_box: Any) -> None:
    """hash_only keeps no bytes: a multipart object has only its size to check (OSS keeps
    part digests), a PutObject object its MD5 too."""
    box = make_box(hash_only=True)
    content = os.urandom(3 * PART)
    created = box.create(content)
    multipart(bucket(created), created["oss_object"], content)
    assert box.commit(created["upload_token"]).status_code == 200
    small = box.create(b"y" * 10)
    bucket(small).put_object(small["oss_object"], b"z" * 10)
    assert_error(box.commit(small["upload_token"]), FILE_MD5_MISMATCH)


def test_cli_switches_reach_the_options() -> None:
    from vidupd.cli.main import build_parser
    from vidupd.sandbox.app import options_from

    args = build_parser().parse_args(["sandbox", "--dir", "d", "--youku-protocol", "oss",
                                      "--youku-slice-length", "12345"])
    opts = options_from(args)
    assert (opts.youku_protocol, opts.youku_slice_length) == ("oss", 12345)
    default = options_from(build_parser().parse_args(["sandbox", "--dir", "d"]))
    assert (default.youku_protocol, default.youku_slice_length) == ("both", 0)

"""The public Youku clients upload to the sandbox unchanged, only pointed at it.

- `youku-upload` 0.1.2 (module `youku_upload`): the OSS flow (create with isnew=1, oss2
  multipart with STS credentials, get_sts_inf, commit, cancel).
- `youku` 0.1.1: the six-step slice flow against the realistic upload server (slice
  lengths the server decides, an upload_server_ip in `check` that is not the address the
  client resolved).

How they are pointed at the sandbox: both hard-code "https://api.youku.com/..." as string
literals inside their methods and call `requests.get/post` through their module's
`requests` attribute, so that attribute is replaced by a stand-in that rewrites only the
scheme-and-host part of the URL to the sandbox's API base and calls the real `requests`
(no transport adapter; the path, query, form and every other argument go through as the
client built them). youku 0.1.1 resolves `upload_server_uri` with socket.gethostbyname,
which cannot keep the sandbox's ":port": its module's `socket` attribute is replaced by one
that resolves the host and keeps the port. Everything else (oss2, the upload server's
address, the OSS endpoint from create/get_sts_inf) is the clients' own code path.

In every test the sandbox checks what the client sent: uploads.jsonl gets a line only
after commit verified the whole file's MD5 (the assembled slices, or the OSS object).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import FakeClock
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox

MIB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def options(**kw: Any) -> SandboxOptions:
    """youku-upload signs OSS requests V1 (plain oss2.StsAuth): an older account, "both"."""
    kw.setdefault("oss_signature", "both")
    return SandboxOptions(**kw)


class _RedirectRequests:
    """`requests` as the client module sees it, with https://api.youku.com meaning the sandbox."""

    def __init__(self, api_base: str):
        self._api_base = api_base

    def __getattr__(self, name: str) -> Any:
        call = getattr(requests, name)

        def redirected(url: str, *args: Any, **kwargs: Any) -> Any:
            return call(url.replace("https://api.youku.com", self._api_base, 1), *args, **kwargs)

        return redirected


class _PortAwareSocket:
    """`socket` as youku 0.1.1 sees it: gethostbyname("127.0.0.1:PORT") keeps the port,
    since the client resolves upload_server_uri once and builds http://{ip}/gupload/..."""

    def gethostbyname(self, host_port: str) -> str:
        host, _, port = host_port.partition(":")
        ip = socket.gethostbyname(host)
        return f"{ip}:{port}" if port else ip


@pytest.fixture
def make_sb(tmp_path: Path) -> Iterator[Any]:
    started: list[YoukuSandbox] = []

    def make(data_dir: Path | None = None, clock: Any = time.time, **kw: Any) -> YoukuSandbox:
        d = data_dir or tmp_path / "sandbox"
        d.mkdir(exist_ok=True)
        sb = YoukuSandbox(d, options(**kw), UploadsJournal(d / "uploads.jsonl"), encode_seconds=0, clock=clock)
        sb.start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.shutdown()


def journal(sb: YoukuSandbox) -> list[dict[str, Any]]:
    return UploadsJournal(sb.store.root.parent / "uploads.jsonl").entries()


# ---- youku-upload 0.1.2: the OSS flow ----


@pytest.fixture
def oss_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    module = pytest.importorskip("youku_upload.youku_upload")
    home = tmp_path / "home"  # oss2.resumable_upload keeps its checkpoints under ~/.py-oss-upload
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))

    def point_at(sb: YoukuSandbox) -> Any:
        monkeypatch.setattr(module, "requests", _RedirectRequests(sb.api_base))
        return module.YoukuUpload

    return point_at


def test_youku_upload_0_1_2_uploads_through_oss(make_sb: Any, oss_client: Any, tmp_path: Path) -> None:
    sb = make_sb()
    YoukuUpload = oss_client(sb)
    video = tmp_path / "videos" / "holiday.mp4"
    video.parent.mkdir()
    content = os.urandom(MIB + 4321)  # 100 KB parts: 11 of them, in parallel
    video.write_bytes(content)
    creds = sb.credentials
    client = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    video_id = client.upload(title="holiday", tags="vidupd,interop", description="假期" * 100)
    [entry] = journal(sb)
    assert (entry["remote_id"], entry["md5"], entry["size"], entry["flow"]) == (
        video_id, md5(content), len(content), "oss")
    key = entry["oss_object"]
    info = sb.oss.object_info(key)
    assert info is not None and info.md5 == md5(content) and "-" in info.etag  # multipart, verified at commit
    assert sb.oss.object_path(key).read_bytes() == content
    counters = sb.counters()
    assert counters["oss_parts_received"] == 11 and counters["oss_bytes_received"] == len(content)
    assert counters["committed_oss"] == 1 and counters["open_oss"] == 0
    assert not Path(f"{video}.upload").exists()
    show = requests.get(f"{sb.api_base}/videos/show.json",
                        params={"client_id": creds["client_id"], "video_id": video_id}, timeout=10)
    assert show.json()["title"] == "holiday"


def test_youku_upload_0_1_2_small_file_and_renewal(make_sb: Any, oss_client: Any, tmp_path: Path) -> None:
    """A file under 100 KB goes up with one PutObject; get_sts_inf renews the credentials
    for the same object (the client calls it when resuming past expire_time)."""
    sb = make_sb()
    YoukuUpload = oss_client(sb)
    video = tmp_path / "tiny.mov"
    content = os.urandom(5000)
    video.write_bytes(content)
    creds = sb.credentials
    client = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    client.create(client.prepare_video_params(title="tiny"))
    client.create_file()
    first = client.temp_access_id
    client.get_sts_info()
    assert client.temp_access_id != first and sb.counters()["sts_renewed"] == 1
    time.strptime(client.expire_time, "%Y-%m-%dT%H:%M:%SZ")
    video_id = client.upload()  # resumes from tiny.mov.upload: same token, the renewed credentials
    [entry] = journal(sb)
    assert (entry["remote_id"], entry["md5"], entry["flow"]) == (video_id, md5(content), "oss")
    assert sb.counters()["oss_bytes_received"] == len(content)


def test_youku_upload_0_1_2_commit_checks_the_md5(make_sb: Any, oss_client: Any, tmp_path: Path) -> None:
    """The client hashes the file at create; if different bytes reach OSS, commit refuses."""
    sb = make_sb()
    YoukuUpload = oss_client(sb)
    module = pytest.importorskip("youku_upload")
    video = tmp_path / "changed.mp4"
    video.write_bytes(os.urandom(300 * 1024))
    creds = sb.credentials
    client = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    client.create(client.prepare_video_params(title="changed"))
    client.create_file()
    video.write_bytes(os.urandom(300 * 1024))  # the file changes after its MD5 was sent
    with pytest.raises(module.YoukuError) as caught:
        client.upload()
    assert caught.value.code == 120010228 and journal(sb) == []


def test_youku_upload_0_1_2_cancel(make_sb: Any, oss_client: Any, tmp_path: Path) -> None:
    sb = make_sb()
    YoukuUpload = oss_client(sb)
    module = pytest.importorskip("youku_upload")
    video = tmp_path / "dropped.mp4"
    video.write_bytes(os.urandom(1000))
    creds = sb.credentials
    client = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    client.create(client.prepare_video_params(title="dropped"))
    token = client.upload_token
    assert client.cancel() == token
    with pytest.raises(module.YoukuError) as caught:
        client.get_sts_info()
    assert caught.value.code == 120010223
    assert sb.counters()["cancelled_oss"] == 1 and sb.counters()["open_oss"] == 0


# ---- youku 0.1.1: the six steps against the realistic upload server ----


@pytest.fixture
def slice_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = pytest.importorskip("youku.youku_upload")

    def point_at(sb: YoukuSandbox) -> Any:
        monkeypatch.setattr(module, "requests", _RedirectRequests(sb.api_base))
        monkeypatch.setattr(module, "socket", _PortAwareSocket())
        return module.YoukuUpload

    return point_at


def test_youku_0_1_1_uploads_slices(make_sb: Any, slice_client: Any, tmp_path: Path) -> None:
    sb = make_sb()
    YoukuUpload = slice_client(sb)
    video = tmp_path / "videos" / "holiday.mp4"
    video.parent.mkdir()
    content = os.urandom(5 * MIB + 321)  # the client asks for 2048 KB slices; the server grants less
    video.write_bytes(content)
    creds = sb.credentials
    video_id = YoukuUpload(creds["client_id"], creds["access_token"], str(video)).upload({"title": "holiday"})
    [entry] = journal(sb)
    assert (entry["remote_id"], entry["md5"], entry["size"], entry["title"], entry["flow"]) == (
        video_id, md5(content), len(content), "holiday", "slices")
    assert sb.counters()["slice_bytes_received"] == len(content)
    assert not Path(f"{video}.upload").exists()  # the client cleaned its state file up
    token = entry["upload_token"]
    assert (sb.store.files / f"{token}.mp4").read_bytes() == content


def test_youku_0_1_1_resumes(make_sb: Any, slice_client: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    sb = make_sb(slice_task_timeout=30, clock=clock)
    YoukuUpload = slice_client(sb)
    video = tmp_path / "resume.mp4"
    content = os.urandom(5 * MIB)
    video.write_bytes(content)
    creds = sb.credentials
    first = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    first.create(first.prepare_video_params(title="resume"))
    first.create_file()
    first.new_slice()
    first.upload_slice()  # then the process "dies" holding the second task
    assert Path(f"{video}.upload").exists()
    clock.advance(30)
    second = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    assert second.upload_token == first.upload_token
    video_id = second.upload()
    assert [(e["remote_id"], e["md5"]) for e in journal(sb)] == [(video_id, md5(content))]


def test_youku_0_1_1_sees_expired_token(make_sb: Any, slice_client: Any, tmp_path: Path) -> None:
    sb = make_sb()
    YoukuUpload = slice_client(sb)
    video = tmp_path / "stale.mp4"
    video.write_bytes(os.urandom(1000))
    creds = sb.credentials
    first = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    first.create(first.prepare_video_params())
    first.create_file()
    sb.expire_upload_token(first.upload_token)
    second = YoukuUpload(creds["client_id"], creds["access_token"], str(video))
    assert second.upload_token is None  # it saw 120010223 and dropped its state file
    assert second.upload({"title": "fresh"}).startswith("X")

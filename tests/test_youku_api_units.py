"""Youku's API layer without the sandbox: create as a POST with a form body, error 1001,
the OSS grant and its expire_time, the create limits and sidecar extras, the watch
password kept out of every message, the OSS-flow checkpoint, and the flow chosen by
`upload_protocol` (a local capture server stands in for the API host)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from provider_harness import make_job

from vidupd.core.errors import PermanentError, TransientError
from vidupd.core.model import Metadata
from vidupd.core.secrets import Secret
from vidupd.ledger import Ledger, LedgerShared
from vidupd.providers.features import features
from vidupd.providers.youku.api import OssGrant, YoukuApi, expire_epoch, parse_grant
from vidupd.providers.youku.oss_flow import OssCheckpoint, credentials, with_scheme
from vidupd.providers.youku.params import DESCRIPTION_MAX, clean_tags, clean_title, create_params, sidecar_extras
from vidupd.providers.youku.provider import YoukuProvider
from vidupd.providers.youku.slices import Checkpoint
from vidupd.providers.youku.wire import _decode, _translate

GRANT = {"upload_token": "tok-1", "endpoint": "http://127.0.0.1:9", "oss_bucket": "bk", "oss_object": "o/k.mp4",
         "temp_access_id": "STS.id", "temp_access_secret": "sts-secret-xyz", "security_token": "sts-token-xyz",
         "expire_time": "2026-12-02T05:00:00Z"}


class Capture:
    """A local API host: records every request (method, path, query, form) and answers
    from `answers` by path (status, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode()) if length else {}
                capture.requests.append({"method": self.command, "path": url.path, "line": self.requestline,
                                         "query": parse_qs(url.query), "form": form})
                status, body = capture.answers.get(url.path, (404, {"error": {"code": 1013}}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host() -> Iterator[Capture]:
    c = Capture()
    yield c
    c.close()


def test_create_is_a_post_with_the_metadata_in_the_form_body(host: Capture) -> None:
    host.answers["/uploads/create.json"] = (201, GRANT)
    api = YoukuApi(host.base, "cid", timeout=5)
    description = "描述" * 1000  # 2,000 characters: 18 KB once percent-encoded
    answer = api.create("acc-tok", {"title": "标题", "description": description}, isnew=True)
    api.close()
    (req,) = host.requests
    assert req["method"] == "POST" and req["query"] == {} and len(req["line"]) < 200
    assert req["form"]["description"] == [description] and req["form"]["isnew"] == ["1"]
    assert req["form"]["access_token"] == ["acc-tok"] and req["form"]["client_id"] == ["cid"]
    assert isinstance(answer, OssGrant) and answer.bucket == "bk" and answer.key == "o/k.mp4"
    assert "sts-secret-xyz" not in repr(answer) and "sts-token-xyz" not in repr(answer)


def test_create_answer_decides_the_flow(host: Capture) -> None:
    host.answers["/uploads/create.json"] = (201, {"upload_token": "t", "upload_server_uri": "up.example:80"})
    api = YoukuApi(host.base, "cid", timeout=5)
    legacy = api.create("a", {"title": "xx"}, isnew=True)
    plain = api.create("a", {"title": "xx"})
    api.close()
    assert legacy.upload_server_uri == "up.example:80" and plain.upload_token == "t"  # type: ignore[union-attr]
    assert "isnew" in host.requests[0]["form"] and "isnew" not in host.requests[1]["form"]


def test_get_sts_inf_and_commit_without_upload_server_ip(host: Capture) -> None:
    host.answers["/uploads/get_sts_inf.json"] = (200, {k: v for k, v in GRANT.items()
                                                      if k not in ("upload_token", "oss_bucket", "oss_object")})
    host.answers["/uploads/commit.json"] = (200, {"video_id": "XV1"})
    api = YoukuApi(host.base, "cid", timeout=5)
    grant = api.get_sts_inf("a", "tok-1", "bk", "o/k.mp4")
    assert (grant.bucket, grant.key, grant.access_key_id) == ("bk", "o/k.mp4", "STS.id")
    assert api.commit("a", "tok-1") == "XV1"
    api.close()
    sts, commit = host.requests
    assert sts["query"]["oss_bucket"] == ["bk"] and sts["query"]["oss_object"] == ["o/k.mp4"]
    assert commit["method"] == "POST" and "upload_server_ip" not in commit["form"]


def test_error_1001_is_transient() -> None:
    body = '{"error": {"code": 1001, "type": "SystemException", "description": "Service temporarily unavailable"}}'
    error = _translate("create", 400, {}, (_decode(body) or {}).get("error"), ())
    assert type(error) is TransientError


def test_expire_time_is_utc_and_grant_needs_every_field() -> None:
    assert expire_epoch("1970-01-01T01:00:00Z", 0) == 3600.0
    assert expire_epoch("garbage", 100.0) > 100.0
    grant = parse_grant("create", dict(GRANT, expire_time=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                        time.gmtime(time.time() + 600))))
    assert 590 <= grant.lifetime <= 601
    with pytest.raises(TransientError):
        parse_grant("create", {k: v for k, v in GRANT.items() if k != "security_token"})


def test_credentials_sign_with_the_endpoints_region_else_the_option() -> None:
    grant = parse_grant("create", GRANT)
    assert credentials(grant, "", "bk", "k", "cn-beijing").region == "cn-beijing"  # 127.0.0.1 tells none
    named = parse_grant("create", dict(GRANT, endpoint="oss-cn-hangzhou.aliyuncs.com"))
    creds = credentials(named, "", "bk", "k", "cn-beijing")
    assert creds.region == "cn-hangzhou" and creds.endpoint == "https://oss-cn-hangzhou.aliyuncs.com"
    assert with_scheme("http://127.0.0.1:5") == "http://127.0.0.1:5"


def test_title_tags_description_limits() -> None:
    long = "优酷视频上传测试标题" * 20  # 200 characters
    assert clean_title(long, "stem", "stem.mp4") == long[:50]
    assert clean_title("A", "clip", "clip.mp4") == "clip"  # too short: the stem instead
    assert clean_title(" ", "x", "x.mp4") == "x.mp4"
    assert len(clean_tags([f"tag{i}" for i in range(15)])) == 10
    assert clean_tags(["a", "ok", "x" * 30]) == ["ok", "x" * 20]
    params = create_params(Metadata(title=long, description="说" * 2500), "v.mp4", "v", 10, "0" * 32, ["vidupd"],
                           None, "original", "all")
    assert len(params["title"]) == 50 and len(params["description"]) == DESCRIPTION_MAX < 2000
    assert params["tags"] == "vidupd"


def test_sidecar_extras() -> None:
    extras = sidecar_extras({"thumbnail": "https://img.example/t.jpg", "latitude": 31.2, "longitude": "121.5",
                             "shoot_time": 0})
    assert extras == {"thumbnail": "https://img.example/t.jpg", "latitude": 31.2, "longitude": 121.5}
    assert sidecar_extras({"latitude": 95, "longitude": 1, "thumbnail": "file:///x"}) == {}
    assert sidecar_extras({"shoot_time": 86400})["shoot_time"] == "1970-01-02 00:00:00"
    assert sidecar_extras({"shoot_time": "2026-01-01 10:00:00"})["shoot_time"] == "2026-01-01 10:00:00"


def test_oss_checkpoint_round_trip_names_its_flow_and_holds_no_credentials() -> None:
    cp = OssCheckpoint("tok", "http://e", "bk", "o/k", "0" * 32, 5, 1.0)
    data = cp.to_json()
    assert data["protocol"] == "oss" and OssCheckpoint.from_json(data) == cp
    assert Checkpoint.from_json(data) is None  # never read as a slice-flow checkpoint
    assert not any(k in json.dumps(data) for k in ("secret", "security_token", "temp_access"))
    slices = Checkpoint("tok", "1.2.3.4:80", "0" * 32, 5, {}, 1.0).to_json()
    assert slices["protocol"] == "slices" and OssCheckpoint.from_json(slices) is None


def _provider(tmp_path: Path, base: str, **settings: Any) -> tuple[YoukuProvider, Ledger]:
    ledger = Ledger(tmp_path / "state")
    p = YoukuProvider("yk", {"client_id": "cid", "access_token": Secret("acc-tok-1234"), "api_base": base,
                             "request_timeout": 5, **settings}, tmp_path, LedgerShared(ledger))
    return p, ledger


@pytest.mark.parametrize("protocol", ["auto", "oss", "slices"])
def test_hashing_pass_takes_the_file_md5_alone(tmp_path: Path, protocol: str) -> None:
    # The server decides slice lengths (not 2 MiB on a realistic one): piece MD5s taken in the
    # hashing pass would be wasted, and every slice is hashed once as it is sent anyway.
    p, ledger = _provider(tmp_path, "http://127.0.0.1:9", upload_protocol=protocol)
    assert p.piece_size is None and features(p).abandon
    p.close()
    ledger.close()


def test_oss_protocol_refuses_an_upload_server_and_cancels_it(host: Capture, tmp_path: Path) -> None:
    host.answers["/uploads/create.json"] = (201, {"upload_token": "t-legacy", "upload_server_uri": "127.0.0.1:9"})
    host.answers["/uploads/cancel.json"] = (200, {"upload_token": "t-legacy"})
    p, ledger = _provider(tmp_path, host.base, upload_protocol="oss")
    path = tmp_path / "v.mp4"
    path.write_bytes(b"v" * 1000)
    job = make_job(path, tmp_path, Metadata(title="clip"))
    with pytest.raises(PermanentError, match="upload_protocol"):
        p.upload(job.request, job.ctx)
    p.close()
    ledger.close()
    assert [r["path"] for r in host.requests] == ["/uploads/create.json", "/uploads/cancel.json"]
    assert host.requests[0]["form"]["isnew"] == ["1"] and not job.checkpoint.load()


def test_watch_password_is_sent_and_never_shown(host: Capture, tmp_path: Path) -> None:
    password = "watch-pw-S3cret"
    host.answers["/uploads/create.json"] = (400, {"error": {"code": 1013, "type": "SystemException",
                                                            "description": f"bad watch_password {password}"}})
    p, ledger = _provider(tmp_path, host.base, public_type="password", watch_password=Secret(password))
    path = tmp_path / "v.mp4"
    path.write_bytes(b"v" * 1000)
    job = make_job(path, tmp_path, Metadata(title="clip"))
    with pytest.raises(PermanentError) as info:
        p.upload(job.request, job.ctx)
    p.close()
    ledger.close()
    assert host.requests[0]["form"]["watch_password"] == [password]
    assert host.requests[0]["form"]["public_type"] == ["password"]
    assert password not in str(info.value) and password not in repr(p.config)
    assert password not in json.dumps([list(n) for n in job.notes], default=str)

"""The OSS sandbox against the public `oss2` client, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import http.client
import inspect
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import oss2
import pytest
import requests
from oss2.models import PartInfo

from oss_signers import signed_headers
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.oss_crc import crc64, crc64_combine
from vidupd.sandbox.oss_store import Digest, OssStore
from vidupd.sandbox.oss_xml import OssError

KB = 1024


def start_oss(data_dir: Path, **options) -> OssSandbox:
    sandbox = OssSandbox(data_dir, SandboxOptions(**options), UploadsJournal(data_dir / "uploads.jsonl"))
    sandbox.start()
    return sandbox


@pytest.fixture
def oss(tmp_path: Path):
    sandbox = start_oss(tmp_path)
    yield sandbox
    sandbox.shutdown()


def bucket_for(sandbox: OssSandbox, creds: dict[str, str] | None = None, version: str = "v4", **kw) -> oss2.Bucket:
    """oss2 signing V4 (the sandbox's default) for the sandbox's region, or V1."""
    creds = creds or sandbox.issue_sts()
    auth = oss2.StsAuth(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"], auth_version=version)
    region = sandbox.region if version == "v4" else None
    return oss2.Bucket(auth, sandbox.endpoint, sandbox.bucket, enable_crc=True, region=region, **kw)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_public_api_signatures() -> None:
    params = list(inspect.signature(OssSandbox.__init__).parameters)
    assert params[:5] == ["self", "data_dir", "options", "journal", "port"]
    assert list(inspect.signature(OssSandbox.issue_sts).parameters)[:2] == ["self", "ttl"]
    for name in ("start", "shutdown", "object_path", "add_completion_hook"):
        assert callable(getattr(OssSandbox, name))


def test_server_code_imports_no_client_code() -> None:
    """The sandbox checks signatures itself: no SDK and no vidupd client module in server code."""
    import ast

    import vidupd.sandbox as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        if not path.name.startswith(("oss", "vod")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("oss2", "aliyunsdk", "voduploadsdk")), (path.name, name)
                assert not name.startswith("vidupd") or name.startswith("vidupd.sandbox"), (path.name, name)


def test_put_head_get_and_range(oss: OssSandbox) -> None:
    seen = []
    oss.add_completion_hook(seen.append)
    b = bucket_for(oss)
    data = os.urandom(300 * KB + 7)
    content_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    result = b.put_object("dir/a b+c.mp4", data, headers={"Content-MD5": content_md5})
    assert result.etag == md5_hex(data).upper()
    assert result.crc == crc64(data)  # oss2 also checked it against its own CRC
    head = b.head_object("dir/a b+c.mp4")
    assert head.content_length == len(data) and head.etag == md5_hex(data).upper()
    assert b.get_object_meta("dir/a b+c.mp4").content_length == len(data)
    assert b.get_object("dir/a b+c.mp4").read() == data  # whole-object CRC checked by oss2
    assert b.get_object("dir/a b+c.mp4", byte_range=(100, 199)).read() == data[100:200]
    assert oss.object_path("dir/a b+c.mp4").read_bytes() == data
    assert [(i.key, i.size, i.md5) for i in seen] == [("dir/a b+c.mp4", len(data), md5_hex(data))]
    with pytest.raises(oss2.exceptions.NoSuchKey):
        b.get_object("missing")
    with pytest.raises(oss2.exceptions.NotFound):
        b.head_object("missing")
    b.delete_object("dir/a b+c.mp4")
    assert not b.object_exists("dir/a b+c.mp4")


def test_content_md5_mismatch_is_invalid_digest(oss: OssSandbox) -> None:
    b = bucket_for(oss)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.put_object("k", b"payload", headers={"Content-MD5": wrong})
    assert (err.value.status, err.value.code) == (400, "InvalidDigest")
    assert oss.object_info("k") is None
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.put_object("k", b"payload", headers={"x-oss-hash-crc64ecma": str(crc64(b"other"))})
    assert (err.value.status, err.value.code) == (400, "InvalidDigest")
    b.put_object("k", b"payload", headers={"x-oss-hash-crc64ecma": str(crc64(b"payload"))})
    assert oss.object_info("k").size == 7  # the connection is still usable after the errors


def test_chunked_body_is_accepted(oss: OssSandbox) -> None:
    b = bucket_for(oss)
    pieces = [os.urandom(70 * KB) for _ in range(3)]
    b.put_object("chunked.bin", iter(pieces))  # oss2 sends an iterator with Transfer-Encoding: chunked
    assert oss.object_path("chunked.bin").read_bytes() == b"".join(pieces)


def test_multipart_by_hand(oss: OssSandbox) -> None:
    b = bucket_for(oss)
    parts_data = [os.urandom(100 * KB), os.urandom(150 * KB), os.urandom(3 * KB)]
    upload_id = b.init_multipart_upload("mp/video.mp4").upload_id
    infos = []
    for n, data in enumerate(parts_data, 1):
        r = b.upload_part("mp/video.mp4", upload_id, n, data)
        assert r.etag == md5_hex(data).upper() and r.crc == crc64(data)
        infos.append(PartInfo(n, r.etag, size=len(data), part_crc=r.crc))
    listed = b.list_parts("mp/video.mp4", upload_id)
    assert [(p.part_number, p.etag, p.size) for p in listed.parts] == [(i.part_number, i.etag, i.size) for i in infos]
    assert listed.parts[0].last_modified > time.time() - 60
    with pytest.raises(oss2.exceptions.ServerError) as err:  # a client-sent whole-object CRC is checked
        b.complete_multipart_upload("mp/video.mp4", upload_id, infos, headers={"x-oss-hash-crc64ecma": "1"})
    assert (err.value.status, err.value.code) == (400, "InvalidDigest")
    result = b.complete_multipart_upload("mp/video.mp4", upload_id, infos)  # oss2 checks the combined CRC
    whole = b"".join(parts_data)
    assert result.crc == crc64(whole)
    assert result.etag.endswith("-3")
    assert md5_hex(oss.object_path("mp/video.mp4").read_bytes()) == md5_hex(whole)
    assert oss.object_info("mp/video.mp4").md5 == md5_hex(whole)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        b.list_parts("mp/video.mp4", upload_id)


def test_list_parts_pages(oss: OssSandbox) -> None:
    b = bucket_for(oss)
    upload_id = b.init_multipart_upload("pages").upload_id
    for n in range(1, 8):
        b.upload_part("pages", upload_id, n, bytes([n]) * 10)
    page = b.list_parts("pages", upload_id, max_parts=3)
    assert [p.part_number for p in page.parts] == [1, 2, 3]
    assert page.is_truncated and page.next_marker == "3"
    page = b.list_parts("pages", upload_id, marker="6", max_parts=3)
    assert [p.part_number for p in page.parts] == [7] and not page.is_truncated
    every = list(oss2.PartIterator(b, "pages", upload_id, max_parts=2))
    assert [p.part_number for p in every] == list(range(1, 8))
    creds = oss.issue_sts()  # more than 1000 asked: capped to 1000
    sub = f"?uploadId={upload_id}&max-parts=5000"  # V4 signs every query parameter
    raw = requests.get(f"{oss.endpoint}/{oss.bucket}/pages{sub}", timeout=5,
                       headers=signed_headers(creds, "GET", oss.bucket, "pages", sub))
    assert raw.status_code == 200 and "<MaxParts>1000</MaxParts>" in raw.text and "xmlns" not in raw.text


def test_complete_rejects_wrong_etag_small_part_and_abort(oss: OssSandbox) -> None:
    b = bucket_for(oss)
    upload_id = b.init_multipart_upload("bad").upload_id
    r1 = b.upload_part("bad", upload_id, 1, b"x" * (50 * KB))
    r2 = b.upload_part("bad", upload_id, 2, b"y" * 10)
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.complete_multipart_upload("bad", upload_id, [PartInfo(1, "0" * 32), PartInfo(2, r2.etag)])
    assert (err.value.status, err.value.code) == (400, "InvalidPart")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.complete_multipart_upload("bad", upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
    assert (err.value.status, err.value.code) == (400, "EntityTooSmall")
    b.abort_multipart_upload("bad", upload_id)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        b.upload_part("bad", upload_id, 3, b"z")
    assert oss.object_info("bad") is None


def test_part_order_checked(tmp_path: Path) -> None:
    store = OssStore(tmp_path, hash_only=True)
    upload_id = store.initiate("k", "video/mp4")
    for n in (1, 2):
        store.commit_part(upload_id, "k", n, store.stage(), Digest(200 * KB, md5_hex(bytes([n])), n))
    etags = {p.number: p.etag for p in store.list_parts(upload_id, "k")}
    with pytest.raises(OssError) as err:
        store.complete(upload_id, "k", [(2, etags[2]), (1, etags[1])])
    assert err.value.code == "InvalidPartOrder"
    info = store.complete(upload_id, "k", [(1, etags[1]), (2, etags[2])])
    assert info.crc64 == crc64_combine(1, 2, 200 * KB) and info.size == 400 * KB and info.md5 is None


def test_signature_and_credential_errors(oss: OssSandbox) -> None:
    creds = oss.issue_sts()
    cases = [
        ({**creds, "AccessKeySecret": "wrong"}, 403, "SignatureDoesNotMatch"),
        ({**creds, "AccessKeyId": "STS.unknown"}, 403, "InvalidAccessKeyId"),
        ({**creds, "SecurityToken": "CAISforged"}, 403, "InvalidSecurityToken"),
    ]
    for bad, status, code in cases:
        with pytest.raises(oss2.exceptions.OssError) as err:
            bucket_for(oss, bad).put_object("k", b"data" * 1000)
        assert (err.value.status, err.value.code) == (status, code)
    other = oss2.Bucket(oss2.StsAuth(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"],
                                     auth_version="v4"), oss.endpoint, "another-bucket", region=oss.region)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.put_object("k", b"x")
    assert requests.get(f"{oss.endpoint}/{oss.bucket}/k", timeout=5).status_code == 403  # anonymous


def test_expired_sts_credentials(oss: OssSandbox) -> None:
    creds = oss.issue_sts(ttl=1.5)
    expires_by = time.time() + 1.5
    assert creds["Expiration"] == "1.5"
    b = bucket_for(oss, creds)
    upload_id = b.init_multipart_upload("late").upload_id
    r1 = b.upload_part("late", upload_id, 1, b"a" * (100 * KB))
    time.sleep(max(0.0, expires_by + 0.05 - time.time()))
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.upload_part("late", upload_id, 2, b"b" * 10)
    assert (err.value.status, err.value.code) == (403, "SecurityTokenExpired")
    fresh = bucket_for(oss)  # refreshed credentials continue the same multipart upload
    r2 = fresh.upload_part("late", upload_id, 2, b"b" * 10)
    fresh.complete_multipart_upload("late", upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
    assert oss.object_info("late").size == 100 * KB + 10


def test_resumable_upload_matches_md5(oss: OssSandbox, tmp_path: Path) -> None:
    b = bucket_for(oss)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(2 * 1024 * KB + 123))
    small = tmp_path / "small.mp4"
    small.write_bytes(os.urandom(50 * KB))
    for path in (big, small):
        oss2.resumable_upload(b, f"r/{path.name}", str(path), store=oss2.ResumableStore(root=str(tmp_path / "rs")),
                              multipart_threshold=256 * KB, part_size=200 * KB, num_threads=4)
        assert md5_hex(oss.object_path(f"r/{path.name}").read_bytes()) == md5_hex(path.read_bytes())
    out = tmp_path / "down.mp4"
    oss2.resumable_download(b, "r/big.mp4", str(out), store=oss2.ResumableDownloadStore(root=str(tmp_path / "rd")),
                            multiget_threshold=512 * KB, part_size=300 * KB, num_threads=3)
    assert out.read_bytes() == big.read_bytes()


def test_parts_of_one_upload_are_received_concurrently(oss: OssSandbox) -> None:
    """Part 1 stalls half-sent on its own connection while part 2 goes through."""
    creds = oss.issue_sts()
    b = bucket_for(oss, creds)
    upload_id = b.init_multipart_upload("conc").upload_id
    part1 = os.urandom(200 * KB)
    sub = f"?partNumber=1&uploadId={upload_id}"
    conn = http.client.HTTPConnection(urlsplit(oss.endpoint).netloc, timeout=10)
    conn.putrequest("PUT", f"/{oss.bucket}/conc{sub}")
    for k, v in {**signed_headers(creds, "PUT", oss.bucket, "conc", sub), "Content-Length": str(len(part1))}.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(part1[: len(part1) // 2])
    done = threading.Event()
    threading.Thread(target=lambda: (b.upload_part("conc", upload_id, 2, b"tail"), done.set()), daemon=True).start()
    assert done.wait(5), "part 2 waited for part 1"
    conn.send(part1[len(part1) // 2:])
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("ETag") == f'"{md5_hex(part1).upper()}"'
    conn.close()
    assert [p.part_number for p in b.list_parts("conc", upload_id).parts] == [1, 2]


def test_multipart_survives_restart(tmp_path: Path) -> None:
    first = start_oss(tmp_path)
    creds = first.issue_sts()
    b = bucket_for(first, creds)
    upload_id = b.init_multipart_upload("resume").upload_id
    data = os.urandom(100 * KB), os.urandom(20 * KB)
    r1 = b.upload_part("resume", upload_id, 1, data[0])
    first.shutdown()
    second = start_oss(tmp_path)
    try:
        b = bucket_for(second, creds)  # same credentials, new port
        assert [p.etag for p in b.list_parts("resume", upload_id).parts] == [r1.etag]
        r2 = b.upload_part("resume", upload_id, 2, data[1])
        b.complete_multipart_upload("resume", upload_id, [PartInfo(1, r1.etag), PartInfo(2, r2.etag)])
        assert second.object_path("resume").read_bytes() == b"".join(data)
    finally:
        second.shutdown()


def test_hash_only_keeps_digests_not_bytes(tmp_path: Path) -> None:
    sandbox = start_oss(tmp_path, hash_only=True)
    try:
        b = bucket_for(sandbox)
        data = os.urandom(128 * KB)
        assert b.put_object("h", data).etag == md5_hex(data).upper()
        assert sandbox.object_info("h").md5 == md5_hex(data)
        assert not sandbox.object_path("h").exists()
        assert b.head_object("h").content_length == len(data)
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.get_object("h")
        assert err.value.status == 501
        assert not any((tmp_path / "oss" / "objects").glob("*.data"))
    finally:
        sandbox.shutdown()


def test_fail_rate_injects_5xx_and_drops(tmp_path: Path) -> None:
    sandbox = start_oss(tmp_path, fail_rate=0.5, seed=3)
    try:
        b = bucket_for(sandbox)
        outcomes = []
        for i in range(24):
            try:
                b.put_object(f"f{i}", b"z" * 2000)
                outcomes.append("ok")
            except oss2.exceptions.ServerError as e:
                outcomes.append(e.status)
            except oss2.exceptions.RequestError:
                outcomes.append("drop")
        assert "ok" in outcomes and "drop" in outcomes
        assert {s for s in outcomes if isinstance(s, int)} & {500, 503}
    finally:
        sandbox.shutdown()


def test_max_rate_caps_upload_bandwidth(tmp_path: Path) -> None:
    sandbox = start_oss(tmp_path, max_rate=4 * 1024 * KB)
    try:
        b = bucket_for(sandbox)
        start = time.monotonic()
        b.put_object("slow", os.urandom(3 * 1024 * KB))  # the first 1 MiB block passes at once
        assert time.monotonic() - start >= 0.45
    finally:
        sandbox.shutdown()


def test_bucket_info_and_url_keys(oss: OssSandbox) -> None:
    info = bucket_for(oss).get_bucket_info()
    assert info.name == oss.bucket
    url = oss.object_url("sv/a b.mp4")
    assert url == f"{oss.endpoint}/{oss.bucket}/{quote('sv/a b.mp4')}"
    assert oss.key_from_url(url) == "sv/a b.mp4"
    assert oss.key_from_url(f"https://{oss.bucket}.oss-cn-shanghai.aliyuncs.com/sv/x.mp4") == "sv/x.mp4"
    assert oss.key_from_url("http://example.com/other/x.mp4") is None

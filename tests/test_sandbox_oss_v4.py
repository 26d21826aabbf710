"""The OSS sandbox's V4 signature checks, over real HTTP on 127.0.0.1, with requests oss2
cannot be made to send (the tests' own signer, tests/oss_signers.py) and with oss2 itself;
and the PutObject size limit."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import oss2
import pytest
import requests
from oss_signers import signed_headers, signed_headers_v1

from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import PUT_OBJECT_MAX, OssSandbox
from vidupd.sandbox.oss_auth_v4 import canonical_request, uri_encode

KB = 1024


@pytest.fixture
def oss(tmp_path: Path):
    sandbox = OssSandbox(tmp_path, SandboxOptions(), UploadsJournal(tmp_path / "uploads.jsonl"))
    sandbox.start()
    yield sandbox
    sandbox.shutdown()


def put(oss: OssSandbox, key: str, headers: dict[str, str], body: bytes = b"data", sub: str = "") -> requests.Response:
    return requests.put(f"{oss.endpoint}/{oss.bucket}/{quote(key)}{sub}", data=body, headers=headers, timeout=10)


def error_of(resp: requests.Response) -> tuple[int, str]:
    code = resp.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in resp.text else ""
    return resp.status_code, code


def test_hand_signed_v4_with_awkward_keys_and_queries(oss: OssSandbox) -> None:
    """Keys and query values with spaces, '+', '/', '=' and non-ASCII are percent-encoded
    by the rules of the official page; the sandbox recomputes the same canonical request."""
    creds = oss.issue_sts()
    key = "dir/a b+c=d/é.mp4"
    resp = put(oss, key, signed_headers(creds, "PUT", oss.bucket, key))
    assert resp.status_code == 200, resp.text
    sub = "?response-content-disposition=" + quote('attachment; filename="ä b/c+d.mp4"', safe="")
    got = requests.get(f"{oss.endpoint}/{oss.bucket}/{quote(key)}{sub}", timeout=10,
                       headers=signed_headers(creds, "GET", oss.bucket, key, sub))
    assert got.status_code == 200 and got.content == b"data"
    assert oss.signatures == {"v1": 0, "v4": 2}


def test_the_canonical_request_of_the_official_rules() -> None:
    assert uri_encode("/b/a b+c/é~_.-", True) == "/b/a%20b%2Bc/%C3%A9~_.-"
    assert uri_encode("a/b", False) == "a%2Fb"
    text = canonical_request("PUT", "b", "k 1", {"uploadId": "X/Y", "partNumber": "2", "uploads": ""},
                             {"X-OSS-Date": "20261202T000000Z", "Content-Type": "video/mp4", "Host": "h",
                              "x-oss-content-sha256": "UNSIGNED-PAYLOAD"}, ["host"])
    assert text == ("PUT\n/b/k%201\npartNumber=2&uploadId=X%2FY&uploads\n"
                    "content-type:video/mp4\nhost:h\nx-oss-content-sha256:UNSIGNED-PAYLOAD\n"
                    "x-oss-date:20261202T000000Z\n\nhost\nUNSIGNED-PAYLOAD")


def test_v4_refusals_as_the_real_service(oss: OssSandbox) -> None:
    creds = oss.issue_sts()
    good = signed_headers(creds, "PUT", oss.bucket, "k")
    cases = [
        # scoped to another region than the bucket's, even with a right HMAC (EC 0002-00000228)
        (signed_headers(creds, "PUT", oss.bucket, "k", region="cn-beijing"), (400, "InvalidArgument"), "0002-00000228"),
        (signed_headers(creds, "PUT", oss.bucket, "k", when=time.time() - 20 * 60), (403, "RequestTimeTooSkewed"), ""),
        ({**good, "x-oss-date": "20200101T000000Z"}, (400, "InvalidArgument"), ""),  # date not the scope's
        ({**good, "x-oss-date": "2026-12-02T00:00:00Z"}, (400, "InvalidArgument"), ""),
        ({k: v for k, v in good.items() if k != "x-oss-content-sha256"}, (400, "InvalidArgument"), ""),
        ({**good, "x-oss-content-sha256": "0" * 64}, (400, "InvalidArgument"), ""),
        ({**good, "Authorization": good["Authorization"].replace("/oss/", "/s3/")}, (400, "InvalidArgument"),
         "0002-00000213"),
        ({**good, "Authorization": good["Authorization"].replace(", Signature", ",AdditionalHeaders=,Signature")},
         (400, "InvalidArgument"), "0002-00000209"),
        ({**good, "Authorization": good["Authorization"].split(", Signature")[0]}, (400, "InvalidArgument"),
         "0002-00000209"),
        ({**good, "x-oss-meta-added": "after signing"}, (403, "SignatureDoesNotMatch"), ""),  # x-oss-* are signed
        ({**good, "Content-Type": "text/plain"}, (403, "SignatureDoesNotMatch"), ""),  # so is Content-Type
        ({**good, "x-oss-security-token": "CAISforged"}, (403, "InvalidSecurityToken"), ""),
        (signed_headers({**creds, "AccessKeyId": "STS.unknown"}, "PUT", oss.bucket, "k"),
         (403, "InvalidAccessKeyId"), ""),
        (signed_headers({**creds, "AccessKeySecret": "wrong"}, "PUT", oss.bucket, "k"),
         (403, "SignatureDoesNotMatch"), ""),
        (signed_headers_v1(creds, "PUT", oss.bucket, "k"), (403, "AccessDenied"), ""),  # V1: not for this account
    ]
    for headers, expected, ec in cases:
        resp = put(oss, "k", headers)
        assert error_of(resp) == expected, (headers, resp.text)
        assert not ec or f"<EC>{ec}</EC>" in resp.text, resp.text
    mismatch = put(oss, "k", {**good, "x-oss-meta-added": "x"})
    assert "<CanonicalRequest>" in mismatch.text and "<StringToSign>OSS4-HMAC-SHA256" in mismatch.text
    sub = "?acl"  # every query parameter is signed, not only sub-resources
    assert error_of(put(oss, "k", good, sub=sub)) == (403, "SignatureDoesNotMatch")
    assert oss.object_info("k") is None and oss.signatures == {"v1": 0, "v4": 0}
    assert put(oss, "k", good).status_code == 200  # the same headers, untouched: accepted
    assert oss.signatures == {"v1": 0, "v4": 1}


def test_additional_headers_are_signed(oss: OssSandbox) -> None:
    """A header named in AdditionalHeaders is part of the signature; unnamed, it is not."""
    creds = oss.issue_sts()
    named = signed_headers(creds, "PUT", oss.bucket, "k", additional={"Content-Disposition": "inline"})
    assert "AdditionalHeaders=content-disposition" in named["Authorization"]
    assert error_of(put(oss, "k", {**named, "content-disposition": "attachment"})) == (403, "SignatureDoesNotMatch")
    assert put(oss, "k", named).status_code == 200
    plain = signed_headers(creds, "PUT", oss.bucket, "k2")
    assert put(oss, "k2", {**plain, "Content-Disposition": "attachment"}).status_code == 200


def test_expired_credentials_under_v4(oss: OssSandbox) -> None:
    creds = oss.issue_sts(ttl=0.5)
    time.sleep(0.6)
    b = oss2.Bucket(oss2.StsAuth(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"],
                                 auth_version="v4"), oss.endpoint, oss.bucket, region=oss.region)
    with pytest.raises(oss2.exceptions.ServerError) as err:
        b.put_object("late", b"x")
    assert (err.value.status, err.value.code) == (403, "SecurityTokenExpired")


def _announce(oss: OssSandbox, key: str, sub: str, length: int, headers: dict[str, str]) -> bytes:
    """Send a PUT's headers announcing `length` bytes and the first 1 KiB of its body; the answer."""
    host = urlsplit(oss.endpoint).netloc
    with socket.create_connection((host.split(":")[0], int(host.split(":")[1])), timeout=10) as s:
        lines = [f"PUT /{oss.bucket}/{key}{sub} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        s.sendall(b"x" * KB)  # the first bytes of a body that will never be read
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_put_object_and_parts_over_5_gb_are_refused_before_their_body(oss: OssSandbox) -> None:
    """EntityTooLarge from the Content-Length alone: the sandbox answers without waiting for
    (or reading) the body, then closes the connection."""
    creds = oss.issue_sts()
    answer = _announce(oss, "huge.mp4", "", PUT_OBJECT_MAX + 1, signed_headers(creds, "PUT", oss.bucket, "huge.mp4"))
    assert answer.startswith(b"HTTP/1.1 400") and b"<Code>EntityTooLarge</Code>" in answer
    assert b"<MaxSizeAllowed>5368709120</MaxSizeAllowed>" in answer
    assert oss.object_info("huge.mp4") is None
    b = oss2.Bucket(oss2.StsAuth(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"],
                                 auth_version="v4"), oss.endpoint, oss.bucket, region=oss.region)
    upload_id = b.init_multipart_upload("huge.mp4").upload_id
    sub = f"?partNumber=1&uploadId={upload_id}"
    answer = _announce(oss, "huge.mp4", sub, PUT_OBJECT_MAX + 1,
                       signed_headers(creds, "PUT", oss.bucket, "huge.mp4", sub))
    assert answer.startswith(b"HTTP/1.1 400") and b"<Code>EntityTooLarge</Code>" in answer
    assert b.list_parts("huge.mp4", upload_id).parts == []
    assert put(oss, "ok.mp4", signed_headers(creds, "PUT", oss.bucket, "ok.mp4")).status_code == 200  # still serving


def test_the_sandbox_switch() -> None:
    """`vidupd sandbox --oss-signature v4|v1|both`, v4 when not given, reaches SandboxOptions."""
    from vidupd.cli.main import build_parser
    from vidupd.sandbox.app import options_from

    parser = build_parser()
    assert options_from(parser.parse_args(["sandbox", "--dir", "x"])).oss_signature == "v4"
    for mode in ("v4", "v1", "both"):
        assert options_from(parser.parse_args(["sandbox", "--dir", "x", "--oss-signature", mode])).oss_signature == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["sandbox", "--dir", "x", "--oss-signature", "v2"])
    with pytest.raises(ValueError):
        OssSandbox(Path("/nonexistent"), SandboxOptions(oss_signature="v2"), UploadsJournal(Path("/nonexistent/j")))


def test_upload_auth_names_the_buckets_region(tmp_path: Path) -> None:
    """VOD's UploadAuth carries the Region of the bucket (not of the VOD endpoint): a V4
    signature scoped to it is accepted by that bucket's OSS."""
    import base64
    import json

    from vidupd.sandbox.vod import VodSandbox

    from aliyunsdkcore.client import AcsClient
    from aliyunsdkvod.request.v20170321 import CreateUploadVideoRequest

    journal = UploadsJournal(tmp_path / "uploads.jsonl")
    bucket_side = OssSandbox(tmp_path, SandboxOptions(), journal, region="cn-beijing")
    vod = VodSandbox(tmp_path, SandboxOptions(), journal, bucket_side, region="cn-shanghai")
    bucket_side.start()
    vod.start()
    try:
        client = AcsClient(vod.credentials["access_key_id"], vod.credentials["access_key_secret"], vod.region,
                           auto_retry=False)
        client.add_endpoint(vod.region, "vod", vod.endpoint)
        request = CreateUploadVideoRequest.CreateUploadVideoRequest()
        request.set_Title("t")
        request.set_FileName("t.mp4")
        answer = json.loads(client.do_action_with_exception(request))
        auth = json.loads(base64.b64decode(answer["UploadAuth"]))
        key = json.loads(base64.b64decode(answer["UploadAddress"]))["FileName"]
        assert auth["Region"] == "cn-beijing"
        b = oss2.Bucket(oss2.StsAuth(auth["AccessKeyId"], auth["AccessKeySecret"], auth["SecurityToken"],
                                     auth_version="v4"), bucket_side.endpoint, bucket_side.bucket, region=auth["Region"])
        b.put_object(key, b"data")
        assert bucket_side.object_info(key).size == 4
    finally:
        vod.shutdown()
        bucket_side.shutdown()

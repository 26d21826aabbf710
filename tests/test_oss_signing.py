"""How vidupd signs OSS requests (providers/oss/signing.py): V4 by default with the bucket's
region (UploadAuth's Region, else the endpoint's, else the target's), V1 on request, one
factory for every oss2.Bucket; and the VOD options that go with it (oss_signature, the 5 GB
bound of multipart_threshold), refused by check-config as by run."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import oss2
import pytest
from helpers import vidupd

from vidupd.config import ConfigError, load
from vidupd.core.errors import PermanentError
from vidupd.core.secrets import Secret
from vidupd.providers.aliyun_vod.rpc import decode_ticket
from vidupd.providers.oss.credentials import StsCredentials, StsKeeper
from vidupd.providers.oss.signing import SIGNATURES, make_bucket, region_from_endpoint


def creds(endpoint: str = "http://127.0.0.1:9", region: str = "", token: str = "tok") -> StsCredentials:
    return StsCredentials("STS.id", Secret("sec-" + token), Secret(token), time.time() + 3600, 3600.0, endpoint,
                          "bucket1", "k", region)


@pytest.mark.parametrize("endpoint, region", [
    ("oss-cn-shanghai.aliyuncs.com", "cn-shanghai"),
    ("https://oss-cn-shanghai.aliyuncs.com", "cn-shanghai"),
    ("http://oss-cn-hangzhou-internal.aliyuncs.com/", "cn-hangzhou"),
    ("https://bucket-1.oss-ap-southeast-1.aliyuncs.com", "ap-southeast-1"),
    ("https://b.oss-us-west-1-internal.aliyuncs.com:443", "us-west-1"),
    ("cn-beijing.oss.aliyuncs.com", "cn-beijing"),
    ("https://oss-accelerate.aliyuncs.com", None),  # global acceleration: no region in the name
    ("http://127.0.0.1:8080", None),
    ("[::1]:9000", None),
    ("localhost:9000", None),
    ("https://storage.example.com", None),
    ("", None),
])
def test_region_from_endpoint(endpoint: str, region: str | None) -> None:
    assert region_from_endpoint(endpoint) == region


def _version(bucket: oss2.Bucket) -> str:
    return bucket.auth.auth_version()


def test_make_bucket_signs_v4_by_default_with_the_region() -> None:
    assert SIGNATURES == ("v4", "v1")
    b = make_bucket(creds(region="cn-shanghai"))
    assert (_version(b), b.region, b.enable_crc) == ("v4", "cn-shanghai", False)
    b = make_bucket(creds("https://oss-cn-beijing.aliyuncs.com"))  # no region granted: the endpoint's
    assert (_version(b), b.region) == ("v4", "cn-beijing")
    b = make_bucket(creds(), "v1")  # V1 needs no region
    assert (_version(b), b.region) == ("v1", None)
    with pytest.raises(PermanentError) as err:
        make_bucket(creds(), "v4", region_setting="oss_region")
    assert "oss_region" in str(err.value) and "V4" in str(err.value) and "sec-" not in str(err.value)
    with pytest.raises(PermanentError):
        make_bucket(creds(region="cn-shanghai"), "v2")


def test_keeper_builds_its_buckets_through_the_factory() -> None:
    fresh = creds(region="cn-shanghai", token="two")
    keeper = StsKeeper(creds(region="cn-shanghai"), lambda: fresh, oss2.Session(), (1.0, 1.0), lambda *a, **k: None)
    _, bucket = keeper.bucket()
    assert (_version(bucket), bucket.region) == ("v4", "cn-shanghai")  # the default
    keeper.renew(keeper.credentials, "SecurityTokenExpired")
    _, bucket = keeper.bucket()
    assert keeper.credentials is fresh and (_version(bucket), bucket.region) == ("v4", "cn-shanghai")
    old = StsKeeper(creds(), None, oss2.Session(), (1.0, 1.0), lambda *a, **k: None, signature="v1")
    assert _version(old.bucket()[1]) == "v1"
    with pytest.raises(PermanentError):  # V4 on an IP endpoint with no region anywhere
        StsKeeper(creds(), None, oss2.Session(), (1.0, 1.0), lambda *a, **k: None)


def _answer(endpoint: str, region: str | None) -> dict[str, str]:
    auth = {"AccessKeyId": "STS.a", "AccessKeySecret": "s3cr3t-value", "SecurityToken": "tok-value",
            "Expiration": "3000"}
    if region is not None:
        auth["Region"] = region
    address = {"Endpoint": endpoint, "Bucket": "b", "FileName": "sv/x.mp4"}
    return {"VideoId": "v1", "UploadAuth": base64.b64encode(json.dumps(auth).encode()).decode(),
            "UploadAddress": base64.b64encode(json.dumps(address).encode()).decode()}


def test_the_vod_ticket_carries_the_buckets_region() -> None:
    got = decode_ticket(_answer("https://oss-cn-beijing.aliyuncs.com", "cn-hangzhou"), "VideoId", True,
                        region="cn-shanghai")
    assert got.credentials.region == "cn-hangzhou"  # UploadAuth's Region first
    got = decode_ticket(_answer("https://oss-cn-beijing.aliyuncs.com", None), "VideoId", True, region="cn-shanghai")
    assert got.credentials.region == "cn-beijing"  # then the endpoint's
    got = decode_ticket(_answer("http://127.0.0.1:9", ""), "VideoId", False, region="cn-shanghai")
    assert got.credentials.region == "cn-shanghai"  # then the target's


def _vod_config(root: Path, extra: str) -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    cfg = root / "vod.toml"
    cfg.write_text(f'state_dir = "{root}/state"\n[log]\nevents = "{root}/events.jsonl"\n'
                   f'[targets.vod]\nprovider = "aliyun-vod"\naccess_key_id = "ak"\naccess_key_secret = "sk-9876"\n'
                   f'endpoint = "127.0.0.1:9"\n{extra}\n[[watch]]\npath = "{root}/outbox"\ntargets = ["vod"]\n')
    return cfg


def test_vod_options_oss_signature_and_the_put_object_bound(tmp_path: Path) -> None:
    load(_vod_config(tmp_path, f'oss_signature = "v1"\nmultipart_threshold = {5 << 30}\n'))  # both at the edge: fine
    with pytest.raises(ConfigError) as err:
        load(_vod_config(tmp_path, f'oss_signature = "v2"\nmultipart_threshold = {(5 << 30) + 1}\n'))
    problems = {p.key: p.message for p in err.value.problems if not p.warning}
    assert problems["targets.vod.oss_signature"] == "must be one of v4, v1, not 'v2'"
    assert "multipart_threshold" in " ".join(problems) and str(5 << 30) in problems["targets.vod.multipart_threshold"]
    out = vidupd("check-config", "-c", str(_vod_config(tmp_path, f"multipart_threshold = {6 << 30}\n")))
    assert out.returncode != 0 and "multipart_threshold" in out.stdout + out.stderr

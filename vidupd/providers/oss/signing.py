"""How vidupd signs its OSS requests: the ONE place that builds an oss2 auth and Bucket.

Alibaba Cloud stopped offering OSS V1 signatures to new accounts on 2025-03-01 and to new
buckets on 2025-09-01 (PROTOCOLS.md section 3), so V4 (OSS4-HMAC-SHA256) is the default;
"v1" stays for old set-ups that still accept it. A V4 signature covers the bucket's region
(the credential scope DATE/REGION/oss/aliyun_v4_request), so the region must be known: the
platform's grant (VOD's UploadAuth `Region`), else what the endpoint's host name says
(oss-cn-shanghai.aliyuncs.com, ...). Without one, V4 fails before any request with a
PermanentError that names the setting to fix.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import oss2

from ...core.errors import PermanentError
from ...core.secrets import reveal

if TYPE_CHECKING:  # credentials imports this module; the value type is only needed for hints
    from .credentials import StsCredentials

SIGNATURES = ("v4", "v1")
DEFAULT_SIGNATURE = "v4"

# oss-cn-shanghai.aliyuncs.com, oss-cn-shanghai-internal.aliyuncs.com, bucket.oss-... (virtual host),
# and the newer cn-shanghai.oss.aliyuncs.com spelling; not oss-accelerate (global, no region).
_OSS_HOST = re.compile(r"(?:^|\.)oss-(?P<region>[a-z]{2,}-[a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_OSS_HOST_NEW = re.compile(r"(?:^|\.)(?P<region>[a-z]{2,}-[a-z0-9-]+?)(?:-internal)?\.oss\.aliyuncs\.com$")
_NOT_REGIONS = ("accelerate",)


def region_from_endpoint(endpoint: str) -> str | None:
    """The OSS region ID an endpoint's host name carries ("cn-shanghai"); None for IP
    addresses, loopback names and hosts that are not OSS's."""
    text = (endpoint or "").strip()
    if not text:
        return None
    host = (urlsplit(text if "://" in text else "//" + text).hostname or "").lower()
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    for pattern in (_OSS_HOST, _OSS_HOST_NEW):
        match = pattern.search(host)
        if match and not match.group("region").startswith(_NOT_REGIONS):
            return match.group("region")
    return None


def check_signature(signature: str) -> str:
    """`signature` if it is one vidupd can send, else a PermanentError."""
    if signature not in SIGNATURES:
        raise PermanentError(f"unknown OSS signature version {signature!r} (choose one of {', '.join(SIGNATURES)})")
    return signature


def signing_region(creds: "StsCredentials", signature: str, region_setting: str = "region") -> str | None:
    """The region a request for `creds` is signed for: None for V1 (not part of it); for V4
    the credentials' region, else the endpoint's. `region_setting` names the config key a
    user sets when neither is known (it goes into the error)."""
    if check_signature(signature) == "v1":
        return None
    region = creds.region or region_from_endpoint(creds.endpoint)
    if not region:
        raise PermanentError(f"OSS V4 signatures need the bucket's region, which neither the upload credentials nor "
                             f"the endpoint {urlsplit(creds.endpoint).netloc or creds.endpoint!r} tell: set the "
                             f"target's `{region_setting}` option (or oss_signature = \"v1\" for an old set-up)")
    return region


def make_auth(creds: "StsCredentials", signature: str) -> oss2.StsAuth:
    """oss2's STS auth for `creds`, signing with `signature` ("v4" or "v1")."""
    version = oss2.AUTH_VERSION_4 if check_signature(signature) == "v4" else oss2.AUTH_VERSION_1
    return oss2.StsAuth(creds.access_key_id, reveal(creds.access_key_secret), reveal(creds.security_token),
                        auth_version=version)


def make_bucket(creds: "StsCredentials", signature: str = DEFAULT_SIGNATURE, *, session: oss2.Session | None = None,
                timeout: float | tuple[float, float] | None = None, enable_crc: bool = False,
                region_setting: str = "region") -> oss2.Bucket:
    """The oss2.Bucket for `creds` signed with `signature`. enable_crc is off by default:
    vidupd takes the CRC-64 itself while streaming (fastcrc) and checks OSS's answer."""
    region = signing_region(creds, signature, region_setting)
    return oss2.Bucket(make_auth(creds, signature), creds.endpoint, creds.bucket, session=session,
                       connect_timeout=timeout, enable_crc=enable_crc, region=region)

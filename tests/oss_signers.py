"""The tests' own OSS request signers (V1 and V4), written from the official pages rather
than from oss2, for requests oss2 cannot be made to send (half-sent bodies, raw queries,
wrong clocks, wrong regions)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import time
from urllib.parse import quote, unquote


def signed_headers_v1(creds: dict[str, str], method: str, bucket: str, key: str, sub: str = "",
                      content_type: str = "") -> dict[str, str]:
    """The test's own V1 signer, for requests oss2 cannot be made to send."""
    date = email.utils.formatdate(usegmt=True)
    text = (f"{method}\n\n{content_type}\n{date}\nx-oss-security-token:{creds['SecurityToken']}\n"
            f"/{bucket}/{key}{sub}")
    sig = base64.b64encode(hmac.new(creds["AccessKeySecret"].encode(), text.encode(), hashlib.sha1).digest()).decode()
    headers = {"Date": date, "x-oss-security-token": creds["SecurityToken"],
               "Authorization": f"OSS {creds['AccessKeyId']}:{sig}"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def signed_headers(creds: dict[str, str], method: str, bucket: str, key: str, sub: str = "",
                   region: str = "cn-shanghai", when: float | None = None,
                   additional: dict[str, str] | None = None) -> dict[str, str]:
    """The test's own V4 signer (written from the official page, not from oss2), for requests
    oss2 cannot be made to send; `sub` is the query string ("?a=1&b") as sent, `additional`
    headers are signed and named in AdditionalHeaders."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    extra = {k.lower(): v for k, v in (additional or {}).items()}
    headers = {"x-oss-date": stamp, "x-oss-content-sha256": "UNSIGNED-PAYLOAD",
               "x-oss-security-token": creds["SecurityToken"], **extra}
    pairs = sorted(tuple(quote(unquote(x), safe="") for x in (p.partition("=")[0], p.partition("=")[2]))
                   for p in sub.lstrip("?").split("&") if p)
    query = "&".join(f"{k}={v}" if v else k for k, v in pairs)
    canon = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    names = ";".join(sorted(extra))
    request = f"{method}\n{quote(f'/{bucket}/{key}', safe='/')}\n{query}\n{canon}\n{names}\nUNSIGNED-PAYLOAD"
    scope = f"{stamp[:8]}/{region}/oss/aliyun_v4_request"
    text = f"OSS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
    key_ = ("aliyun_v4" + creds["AccessKeySecret"]).encode()
    for part in (stamp[:8], region, "oss", "aliyun_v4_request"):
        key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key_, text.encode(), hashlib.sha256).hexdigest()
    listed = f", AdditionalHeaders={names}" if names else ""
    headers["Authorization"] = f"OSS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/{scope}{listed}, Signature={sig}"
    return headers

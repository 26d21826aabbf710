"""OSS side of authentication: temporary (STS) credentials and the V1 header signature
(V4 is `oss_auth_v4`, which also chooses between the two).

The signature is recomputed here from the request as received (never with oss2), so a
client that signs the wrong bytes is refused the way the real service refuses it.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from .common import write_atomic
from .oss_xml import OssError

MAX_CLOCK_SKEW = 15 * 60  # seconds between the client's Date and ours
_KEEP_EXPIRED = 24 * 3600  # expired credentials are remembered this long (SecurityTokenExpired, not unknown)

# Query parameters that are part of the canonicalized resource (the protocol's list of
# sub-resources; other parameters such as max-parts are not signed).
SUBRESOURCES = frozenset(
    """acl uploads uploadId partNumber objectMeta bucketInfo security-token location stat
    append position delete symlink tagging versionId versions x-oss-process restore logging
    website cors lifecycle referer policy encryption sequential callback callback-var
    x-oss-traffic-limit continuation-token response-content-type response-content-language
    response-expires response-cache-control response-content-disposition
    response-content-encoding""".split()
)


@dataclass(frozen=True)
class StsCredential:
    """One set of temporary credentials as VOD hands them out in UploadAuth."""

    access_key_id: str
    access_key_secret: str
    security_token: str
    issued_at: float
    expires_at: float
    prefix: str = ""  # object keys these credentials may touch ("" = the whole bucket)

    def allows(self, key: str) -> bool:
        return not key or key.startswith(self.prefix)

    def as_upload_auth(self) -> dict[str, str]:
        """The UploadAuth / STS answer shape (Expiration is the lifetime in seconds)."""
        return {
            "AccessKeyId": self.access_key_id,
            "AccessKeySecret": self.access_key_secret,
            "SecurityToken": self.security_token,
            "Expiration": f"{self.expires_at - self.issued_at:g}",
            "ExpireUTCTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at)),
        }


class StsStore:
    """Issued credentials, persisted so a restarted sandbox still honours them."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self._creds: dict[str, StsCredential] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._creds = {k: StsCredential(**v) for k, v in raw.items()}
        except FileNotFoundError:
            pass

    def issue(self, ttl: float, prefix: str = "") -> StsCredential:
        now = time.time()
        cred = StsCredential(
            access_key_id="STS.N" + secrets.token_hex(13).upper(),
            access_key_secret=secrets.token_urlsafe(33),
            security_token="CAIS" + base64.b64encode(secrets.token_bytes(240)).decode("ascii"),
            issued_at=now,
            expires_at=now + ttl,
            prefix=prefix,
        )
        with self._lock:
            self._creds = {k: c for k, c in self._creds.items() if c.expires_at > now - _KEEP_EXPIRED}
            self._creds[cred.access_key_id] = cred
            data = json.dumps({k: asdict(c) for k, c in self._creds.items()}).encode("utf-8")
            write_atomic(self._path, data)
        return cred

    def get(self, access_key_id: str) -> StsCredential | None:
        with self._lock:
            return self._creds.get(access_key_id)


def canonical_resource(bucket: str, key: str, params: Mapping[str, str]) -> str:
    """`/bucket/key` (decoded key) plus the sorted sub-resources, values not encoded."""
    subs = sorted((k, v) for k, v in params.items() if k in SUBRESOURCES)
    query = "&".join(f"{k}={v}" if v else k for k, v in subs)
    return f"/{bucket}/{key}" + (f"?{query}" if query else "")


def _wire_text(value: str) -> str:
    """http.server decodes header bytes as Latin-1; clients sign the UTF-8 text."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def string_to_sign(method: str, headers: Mapping[str, str], resource: str) -> str:
    """VERB, Content-MD5, Content-Type, Date, the sorted x-oss-* headers, the resource."""
    oss_headers = sorted(
        (k.lower(), _wire_text(v.strip())) for k, v in headers.items() if k.lower().startswith("x-oss-")
    )
    date = headers.get("x-oss-date") or headers.get("Date") or ""
    lines = [method, headers.get("Content-MD5", ""), headers.get("Content-Type", ""), date]
    return "\n".join(lines) + "\n" + "".join(f"{k}:{v}\n" for k, v in oss_headers) + resource


def sign(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_credential(store: StsStore, ak: str, headers: Mapping[str, str], now: float) -> StsCredential:
    """The live STS credentials `ak` names, with the token the request carries (V1 and V4 alike)."""
    cred = store.get(ak)
    if cred is None:
        raise OssError(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.",
                       OSSAccessKeyId=ak)
    token = headers.get("x-oss-security-token", "")
    if not hmac.compare_digest(token.encode("utf-8"), cred.security_token.encode("utf-8")):
        raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
    if now >= cred.expires_at:
        raise OssError(403, "SecurityTokenExpired", "The security token you provided has expired.",
                       ExpireTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cred.expires_at)))
    return cred


def verify_request(
    store: StsStore, method: str, headers: Mapping[str, str], resource: str, now: float | None = None
) -> StsCredential:
    """Check the Authorization header; raise the OSS error the real service would give."""
    now = time.time() if now is None else now
    auth = headers.get("Authorization")
    if not auth:
        raise OssError(403, "AccessDenied", "You have no right to access this object: anonymous access is refused.")
    scheme, _, rest = auth.partition(" ")
    ak, sep, signature = rest.strip().rpartition(":")
    if scheme != "OSS" or not sep or not ak:
        raise OssError(400, "InvalidArgument",
                       "Authorization header is invalid (expected 'OSS AccessKeyId:Signature').")
    cred = check_credential(store, ak, headers, now)
    date = headers.get("x-oss-date") or headers.get("Date")
    if not date:
        raise OssError(403, "AccessDenied", "The request carries no Date header.")
    try:
        sent = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        raise OssError(403, "AccessDenied", f"Invalid date format: {date!r}") from None
    if abs(now - sent) > MAX_CLOCK_SKEW:
        raise OssError(403, "RequestTimeTooSkewed",
                       "The difference between the request time and the current time is too large.")
    text = string_to_sign(method, headers, resource)
    if not hmac.compare_digest(sign(cred.access_key_secret, text), signature):
        raise OssError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                       "signature you provided. Check your key and signing method.",
                       StringToSign=text, OSSAccessKeyId=ak)
    return cred

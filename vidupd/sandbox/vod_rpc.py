"""Alibaba Cloud RPC-style request checks: HMAC-SHA1 signature, timestamp, nonce.

Recomputed from the parameters as received (query string plus form body), the way the
gateway does, so a client that encodes or sorts differently is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from calendar import timegm
from typing import Mapping
from urllib.parse import quote

MAX_CLOCK_SKEW = 15 * 60  # seconds
API_VERSION = "2017-03-21"


class VodError(Exception):
    """An RPC error answer: HTTP status, Code and Message (sent as JSON)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def percent_encode(value: str) -> str:
    """RFC 3986: everything but A-Z a-z 0-9 - _ . ~ is %XX of its UTF-8 bytes."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def signature(secret: str, text: str) -> str:
    digest = hmac.new((secret + "&").encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class NonceCache:
    """SignatureNonce values seen within the timestamp window (a replay is refused)."""

    def __init__(self, window: float = 2 * MAX_CLOCK_SKEW):
        self._window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def use(self, nonce: str, now: float) -> bool:
        """True the first time `nonce` is presented."""
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {n: t for n, t in self._seen.items() if now - t < self._window}
            if nonce in self._seen and now - self._seen[nonce] < self._window:
                return False
            self._seen[nonce] = now
            return True


def _parse_timestamp(value: str) -> float:
    try:
        return float(timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        raise VodError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.") \
            from None


def verify(method: str, params: Mapping[str, str], access_key_id: str, access_key_secret: str,
           nonces: NonceCache, now: float | None = None) -> None:
    """Raise the gateway's error for a request that is unsigned, stale, replayed or mis-signed."""
    now = time.time() if now is None else now
    for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp",
                 "Action", "Version"):
        if not params.get(name):
            raise VodError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    if params["AccessKeyId"] != access_key_id:
        raise VodError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if params["SignatureMethod"] != "HMAC-SHA1":
        raise VodError(400, "InvalidSignatureMethod", "Specified signature method is not supported (use HMAC-SHA1).")
    if params["SignatureVersion"] != "1.0":
        raise VodError(400, "InvalidSignatureVersion", "Specified signature version is not supported (use 1.0).")
    if params["Version"] != API_VERSION:
        raise VodError(400, "InvalidVersion", f"Specified parameter Version is not valid (use {API_VERSION}).")
    if abs(now - _parse_timestamp(params["Timestamp"])) > MAX_CLOCK_SKEW:
        raise VodError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    text = string_to_sign(method, params)
    if not hmac.compare_digest(signature(access_key_secret, text), params["Signature"]):
        # The SDK compares the text after the colon with its own to tell a wrong secret.
        raise VodError(400, "SignatureDoesNotMatch",
                       f"Specified signature is not matched with our calculation. server string to sign is:{text}")
    if not nonces.use(params["SignatureNonce"], now):
        raise VodError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

"""ApsaraVideo VOD RPC client (API 2017-03-21, PROTOCOLS.md section 2) for the provider.

One `AcsClient` per target, the SDK's own retries off (they never cover VOD actions
anyway): pacing belongs to `vidupd.core.retry.call_with_retry` in the caller. Every
aliyunsdkcore exception is translated here into vidupd's error tree, carrying the
service's Code so callers can react to one (InvalidVideo.NotFound, ...). The decoded
UploadAuth (STS secret and token) only ever lives in an `oss.StsCredentials` value, whose
secrets are registered for redaction the moment they are decoded and never persisted.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.http import protocol_type
from aliyunsdkcore.request import RpcRequest

from ...core.errors import PermanentError, TransientError
from ...core.secrets import Secret, redact, register
from ..oss.credentials import StsCredentials
from ..oss.signing import region_from_endpoint

# Codes worth another try besides any 5xx (the service spells ServiceUnAvailable both ways).
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "ServiceUnAvailable", "ServiceBusy", "RequestTimeout",
    "SDK.HttpError", "SDK.ServerUnreachable", "LastResponseUnknown",
})
_MESSAGE_MAX = 400
_QUERY = re.compile(r"\?[^\s'\"]*")
_DIRECT = {"vidupd-no-proxy": ""}  # a proxy map no URL matches: aliyunsdkcore then connects directly


class VodError:
    """Mixin for translated VOD answers: the service's `code` and HTTP `status` (0 if none)."""

    code: str
    status: int


class VodTransientError(TransientError, VodError):
    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.code, self.status = code, status


class VodPermanentError(PermanentError, VodError):
    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class UploadAddress:
    """Where the object goes: decoded UploadAddress. Safe to persist."""

    endpoint: str
    bucket: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"Endpoint": self.endpoint, "Bucket": self.bucket, "FileName": self.key}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "UploadAddress":
        return cls(str(data["Endpoint"]), str(data["Bucket"]), str(data["FileName"]))


@dataclass(frozen=True)
class UploadTicket:
    """What a Create*/RefreshUploadVideo answer grants: a media id, and the OSS address with
    temporary credentials to send it to (the generic OSS value; secrets hidden)."""

    media_id: str
    credentials: StsCredentials = field(repr=False)
    urls: Mapping[str, str] = field(default_factory=dict)  # ImageURL / MediaURL / FileURL when given

    @property
    def address(self) -> UploadAddress:
        c = self.credentials
        return UploadAddress(c.endpoint, c.bucket, c.key)


def _b64json(value: Any, what: str) -> dict[str, Any]:
    try:
        decoded = json.loads(base64.b64decode(str(value), validate=False))
    except (binascii.Error, ValueError, TypeError):
        raise TransientError(f"VOD answered with an undecodable {what}") from None
    if not isinstance(decoded, dict):
        raise TransientError(f"VOD answered with an undecodable {what}")
    return decoded


def _parse_utc(text: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except (ValueError, TypeError):
            continue
    return None


def oss_endpoint(endpoint: str, force_https: bool) -> str:
    """The OSS endpoint to use: a scheme is always added; real (non-loopback) hosts get HTTPS."""
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if force_https and parts.scheme == "http" and host.endswith(".aliyuncs.com"):
        endpoint = "https://" + endpoint[len("http://"):]
    return endpoint.rstrip("/")


def decode_ticket(answer: Mapping[str, Any], id_field: str, force_https: bool,
                  received_at: float | None = None, region: str = "") -> UploadTicket:
    """Decode UploadAddress/UploadAuth of a Create*/Refresh answer; register the secrets first.
    The bucket's region (signed into OSS V4 requests) is UploadAuth's `Region`, else what the
    endpoint's host name says, else `region` (the target's)."""
    raw_auth = answer.get("UploadAuth")
    register(str(raw_auth or ""))  # the SDK's debug log shows the Base64 form
    auth = _b64json(raw_auth, "UploadAuth")
    for name in ("AccessKeySecret", "SecurityToken"):
        register(str(auth.get(name) or ""))
    address = _b64json(answer.get("UploadAddress"), "UploadAddress")
    media_id = str(answer.get(id_field) or "")
    if not media_id or not all(auth.get(k) for k in ("AccessKeyId", "AccessKeySecret", "SecurityToken")):
        raise TransientError(f"VOD answer lacks {id_field} or upload credentials")
    if not all(address.get(k) for k in ("Endpoint", "Bucket", "FileName")):
        raise TransientError("VOD answer lacks the upload address (Endpoint, Bucket, FileName)")
    now = time.time() if received_at is None else received_at
    try:
        lifetime = float(auth.get("Expiration") or 3000)
    except ValueError:
        lifetime = 3000.0
    expires_at = now + lifetime
    absolute = _parse_utc(str(auth.get("ExpireUTCTime") or ""))
    if absolute is not None:
        expires_at = min(expires_at, absolute)
    endpoint = oss_endpoint(str(address["Endpoint"]), force_https)
    bucket_region = str(auth.get("Region") or "") or region_from_endpoint(endpoint) or region
    creds = StsCredentials(str(auth["AccessKeyId"]), Secret(str(auth["AccessKeySecret"]), "sts"),
                           Secret(str(auth["SecurityToken"]), "sts"), expires_at, lifetime, endpoint,
                           str(address["Bucket"]), str(address["FileName"]), bucket_region)
    urls = {k: str(answer[k]) for k in ("ImageURL", "MediaURL", "FileURL") if answer.get(k)}
    return UploadTicket(media_id, creds, urls)


def _clean_message(text: str) -> str:
    """A service or SDK message fit for an event: no query strings, no secrets, bounded."""
    text = redact(_QUERY.sub("?...", str(text)))
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "..."


def translate(exc: Exception, action: str) -> TransientError | PermanentError:
    """aliyunsdkcore's ClientException/ServerException as vidupd's own error."""
    if isinstance(exc, ServerException):
        code, status = str(exc.get_error_code() or ""), int(exc.get_http_status() or 0)
        message = f"VOD {action}: {code} (HTTP {status}): {_clean_message(exc.get_error_msg())}"
        if code.startswith("Forbidden") or code.startswith("OperationDenied"):
            message += (" (the account or its RAM user may not do this: grant the AccessKey's RAM user the VOD "
                        "permission, e.g. AliyunVODFullAccess, and check that VOD is activated and paid up)")
        if exc.get_request_id():
            message += f" [RequestId {exc.get_request_id()}]"
        transient = status >= 500 or status == 429 or code in _TRANSIENT_CODES or code.startswith("Throttling")
        cls = VodTransientError if transient else VodPermanentError
        return cls(message, code=code, status=status)
    if isinstance(exc, ClientException):
        code = str(exc.get_error_code() or "")
        message = f"VOD {action}: {code}: {_clean_message(exc.get_error_msg())}"
        cls = VodTransientError if code in _TRANSIENT_CODES else VodPermanentError
        return cls(message, code=code, status=0)
    return VodTransientError(f"VOD {action}: {type(exc).__name__}: {_clean_message(str(exc))}", code="", status=0)


def endpoint_setting(endpoint: str | None, region: str) -> tuple[str, bool]:
    """(host, https) for the `endpoint` option: unset means HTTPS to vod.{region}.aliyuncs.com;
    "host:port" means plain HTTP to it (the sandbox); an explicit scheme is honoured."""
    if not endpoint:
        return f"vod.{region}.aliyuncs.com", True
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        host, https = parts.netloc, parts.scheme.lower() == "https"
    else:
        host, https = endpoint.strip().rstrip("/"), False
    # Alibaba Cloud's own hosts always get HTTPS: `endpoint = "vod.cn-shanghai.aliyuncs.com"`
    # must not send the STS secrets its answers carry over plain HTTP (as OSS endpoints too).
    name = urlsplit(f"//{host}").hostname or ""
    return host, https or name.endswith(".aliyuncs.com")


def _proxy_for(url: str) -> dict[str, str]:
    """aliyunsdkcore reads HTTP(S)_PROXY itself but ignores NO_PROXY: decide here instead."""
    host = urlsplit(url).hostname or ""
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    if not proxies or urllib.request.proxy_bypass(host):
        return dict(_DIRECT)
    return proxies


class VodRpc:
    """Signed RPC calls to one VOD endpoint; thread-safe (one shared connection pool)."""

    def __init__(self, access_key_id: str, access_key_secret: str, region: str, host: str, https: bool,
                 timeout: float, pool_size: int = 16):
        self.region = region
        self.host = host  # "vod.{region}.aliyuncs.com", or "host:port" of an override (the sandbox)
        self.https = https
        scheme = "https" if https else "http"
        self._client = AcsClient(access_key_id, access_key_secret, region, auto_retry=False,
                                 connect_timeout=min(10.0, timeout), timeout=timeout, pool_size=pool_size,
                                 proxy=_proxy_for(f"{scheme}://{host}/"))

    def call(self, request_class: type[RpcRequest], **params: Any) -> dict[str, Any]:
        """One action; None and "" parameters are left out. Raises VodTransientError/VodPermanentError."""
        request = request_class()
        action = request.get_action_name()
        for name, value in params.items():
            if value is None or value == "":
                continue
            setter = getattr(request, f"set_{name}", None)
            if setter is not None:
                setter(value)
            else:
                request.add_query_param(name, value)
        request.set_endpoint(self.host)
        if self.https:
            request.set_protocol_type(protocol_type.HTTPS)  # compared by identity in the SDK
        request.set_accept_format("JSON")
        try:
            body = self._client.do_action_with_exception(request)
        except (ClientException, ServerException) as e:
            raise translate(e, action) from None
        try:
            answer = json.loads(body)
        except (ValueError, TypeError):
            raise VodTransientError(f"VOD {action}: the answer is not JSON", code="", status=200) from None
        if not isinstance(answer, dict):
            raise VodTransientError(f"VOD {action}: the answer is not a JSON object", code="", status=200)
        return answer

    def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None:
            session.close()

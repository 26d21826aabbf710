"""Youku's wire conventions shared by every call: error codes, the error tree they map to,
answer decoding, and the keep-alive connections slices are posted on.

Every HTTP, JSON and connection failure becomes one of vidupd's errors here, so callers
decide on retries by type alone. No message carries a token: requests' own exceptions quote
URLs (tokens ride in query strings), so they are reported by type name only, never chained.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Mapping
from urllib.parse import parse_qs

from ...core.errors import ContentMismatch, CredentialsExpired, PermanentError, TransientError
from ...core.secrets import redact
from ..part_body import PartBody

CODE_UPLOAD_TOKEN_EXPIRED = 120010223
CODE_ACCESS_TOKEN_EXPIRED = 1009
CODE_ACCESS_TOKEN_INVALID = 1008
CODE_SERVICE_UNAVAILABLE = 1001  # "Service temporarily unavailable" (the PHP SDK documents it)
CODE_SERVICE_EXCEPTION = 1002  # Youku's generic "service exception": worth another try
TRANSIENT_CODES = frozenset({CODE_SERVICE_UNAVAILABLE, CODE_SERVICE_EXCEPTION})
# "The bytes differ from the MD5 you declared": a slice against its `hash`, the assembled file
# against create's `file_md5`. Youku does not publish its 1200102xx meanings (PROTOCOLS.md
# section 1); these are the codes the sandbox assigns, the only answers seen for it so far.
CODE_SLICE_HASH_MISMATCH = 120010226
CODE_FILE_MD5_MISMATCH = 120010228
CONTENT_MISMATCH_CODES = frozenset({CODE_SLICE_HASH_MISMATCH, CODE_FILE_MD5_MISMATCH})
SLICE_LENGTH_KB = 2048  # what every known client asks for; the server may hand out other lengths


class UploadTokenExpired(PermanentError):
    """Error 120010223: the saved upload is dead on the server; only a new `create` helps."""


class YoukuApiError(PermanentError):
    """A 4xx answer Youku explained with an error code; retrying the same call cannot help."""

    def __init__(self, message: str, *, code: int | None, http_status: int):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class AccessTokenInvalid(YoukuApiError):
    """Error 1008. Permanent for a token that is current; but a token replaced by a refresh
    meanwhile may be forgotten by the server and answer 1008 instead of 1009."""


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _answer(call: str, status: int, headers: Mapping[str, str], text: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    """The decoded JSON body of a success, else the matching vidupd error."""
    body = _decode(text)
    error = body.get("error") if isinstance(body, dict) else None
    if 200 <= status < 300 and not error:
        if not isinstance(body, dict):
            raise TransientError(f"youku {call}: HTTP {status} with an unreadable body")
        return body
    raise _translate(call, status, headers, error, tuple(s for s in secrets if s))


class _SliceConnections:
    """Keep-alive connections to upload servers, one per (thread, server)."""

    def __init__(self, timeout: float):
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _conn(self, server: str) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(server)
        if conn is None:
            host, _, port = server.rpartition(":") if ":" in server else (server, "", "80")
            conn = http.client.HTTPConnection(host, int(port or 80), timeout=self._timeout)
            conns[server] = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, server: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(server, None)
        if conn is not None:
            conn.close()

    def post(self, server: str, path: str, data: bytes | PartBody) -> tuple[int, Mapping[str, str], str]:
        failure = ""
        try:
            conn = self._conn(server)
            # Content-Length given: http.client would send an iterable body chunked otherwise.
            conn.request("POST", path, body=data, headers={"Content-Type": "application/octet-stream",
                                                           "Content-Length": str(len(data)),
                                                           "User-Agent": "vidupd-youku"})
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            if resp.will_close:
                self._drop(server)
            return resp.status, resp.headers, text
        except TimeoutError:
            failure = "timed out"
        except (OSError, http.client.HTTPException) as e:
            failure = f"connection failed ({type(e).__name__})"
        except BaseException:  # the body's read stopped (cancelled, file changed): half a request went out
            self._drop(server)
            raise
        self._drop(server)  # outside the except blocks: the error names no URL (token in the query)
        raise TransientError(f"youku upload_slice: {failure}")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _cause_name(error: BaseException) -> str:
    """The innermost exception type (e.g. ConnectionRefusedError): useful, and holds no URL."""
    seen = error
    for _ in range(6):  # requests wraps urllib3's MaxRetryError(reason=...) wraps the socket error
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in seen.args if isinstance(a, BaseException)), None) or seen.__cause__
        if inner is None:
            break
        seen = inner
    return type(seen).__name__


def _decode(text: str) -> Any:
    """JSON body, else a form-encoded one (Youku answers errors either way), else None."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    form = parse_qs(text) if "=" in text else {}
    if "code" in form:
        return {"error": {k: v[0] for k, v in form.items()}}
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        value = float(headers.get("Retry-After") or "")
    except ValueError:
        return None
    return value if value >= 0 else None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return redact(text)[:300]


def _translate(call: str, status: int, headers: Mapping[str, str], error: Any, secrets: tuple[str, ...]) -> Exception:
    """Map an HTTP status and Youku error body to TransientError/CredentialsExpired/PermanentError."""
    code: int | None = None
    desc = ""
    if isinstance(error, dict):
        code = _as_int(error.get("code"), 0) or None
        desc = _scrub(f"{error.get('type') or ''}: {error.get('description') or ''}".strip(": "), secrets)
    what = f"youku {call}: HTTP {status}" + (f", error {code}" if code else "") + (f" ({desc})" if desc else "")
    if code == CODE_UPLOAD_TOKEN_EXPIRED:
        return UploadTokenExpired(what)
    if code in CONTENT_MISMATCH_CODES:
        return ContentMismatch(what)
    if code == CODE_ACCESS_TOKEN_EXPIRED or status == 401:
        return CredentialsExpired(what)
    if status >= 500 or status in (408, 429) or code in TRANSIENT_CODES:
        return TransientError(what, retry_after=_retry_after(headers))
    if 200 <= status < 500:  # 4xx, or an error body under a success status: trust the body
        kind = AccessTokenInvalid if code == CODE_ACCESS_TOKEN_INVALID else YoukuApiError
        return kind(what, code=code, http_status=status)
    return TransientError(what)

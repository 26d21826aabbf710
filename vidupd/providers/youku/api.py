"""Youku open-platform wire client: one method per protocol call (PROTOCOLS.md section 1).

It knows URLs, parameters and response fields, and translates every HTTP, JSON and
connection failure into vidupd's error tree at this boundary, so the provider decides on
retries by type alone. It keeps no upload state and never retries: pacing belongs to
`vidupd.core.retry.call_with_retry` in the caller. No error message carries a token: requests'
own exceptions quote URLs (the access token travels in create's query string), so they
are reported by type name only and never chained.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlencode

import requests
from requests.adapters import HTTPAdapter

from ...core.errors import ContentMismatch, CredentialsExpired, PermanentError, TransientError
from ...core.secrets import redact
from ..part_body import PartBody

CODE_UPLOAD_TOKEN_EXPIRED = 120010223
CODE_ACCESS_TOKEN_EXPIRED = 1009
CODE_ACCESS_TOKEN_INVALID = 1008
CODE_SERVICE_EXCEPTION = 1002  # Youku's generic "service exception": worth another try
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


@dataclass(frozen=True)
class CreateResult:
    upload_token: str = field(repr=False)
    upload_server_uri: str
    instant_upload_ok: bool  # the server already holds content with this MD5


@dataclass(frozen=True)
class SliceTask:
    """A slice the server wants next; `slice_task_id == 0` means none left for this caller."""

    slice_task_id: int
    offset: int
    length: int
    transferred: int  # bytes the server holds for this upload so far
    finished: bool

    @property
    def none_left(self) -> bool:
        return self.slice_task_id == 0


@dataclass(frozen=True)
class CheckResult:
    status: int  # 1 complete, 2 all tasks handed out, 3 awaiting disk confirmation, 4 tasks left
    transferred_percent: int
    confirmed_percent: int
    empty_tasks: int
    finished: bool
    upload_server_ip: str


@dataclass(frozen=True)
class TokenPair:
    """An OAuth access/refresh pair; fields are hidden from repr so logs cannot leak them."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float | None = None


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


class YoukuApi:
    """Speaks to the API host (`api_base`) and to an upload server (`ip[:port]`, plain HTTP)."""

    def __init__(self, api_base: str, client_id: str, *, timeout: float = 60.0, pool_size: int = 10):
        self.api_base = api_base.rstrip("/")
        self.client_id = client_id
        self._timeout = (min(10.0, timeout), timeout)  # (connect, read)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "vidupd-youku"
        self._slices = _SliceConnections(timeout)

    def close(self) -> None:
        self._session.close()
        self._slices.close()

    # ---- API host -------------------------------------------------------------------

    def create(self, access_token: str, params: Mapping[str, Any]) -> CreateResult:
        """Step 1: register the upload; the access token rides in the query (clients use GET)."""
        query = dict(params, client_id=self.client_id, access_token=access_token)
        body = self._request("create", "GET", f"{self.api_base}/uploads/create.json",
                             params=query, secrets=(access_token,))
        token = str(body.get("upload_token") or "")
        uri = str(body.get("upload_server_uri") or "")
        if not token or not uri:
            raise TransientError("youku create: answer lacks upload_token or upload_server_uri")
        return CreateResult(token, uri, str(body.get("instant_upload_ok", "")).lower() == "yes")

    def commit(self, access_token: str, upload_token: str, upload_server_ip: str) -> str:
        """Step 6: turn the finished upload into a video; returns its video_id."""
        form = {"client_id": self.client_id, "access_token": access_token,
                "upload_token": upload_token, "upload_server_ip": upload_server_ip}
        body = self._request("commit", "POST", f"{self.api_base}/uploads/commit.json",
                             data=form, secrets=(access_token, upload_token))
        video_id = str(body.get("video_id") or "")
        if not video_id:
            raise TransientError("youku commit: answer lacks video_id")
        return video_id

    def cancel(self, access_token: str, upload_token: str) -> None:
        """Abandon an upload that will not be committed, so the server can drop its slices."""
        query = {"client_id": self.client_id, "access_token": access_token, "upload_token": upload_token}
        self._request("cancel", "GET", f"{self.api_base}/uploads/cancel.json", params=query,
                      secrets=(access_token, upload_token))

    def refresh(self, refresh_token: str, client_secret: str = "") -> TokenPair:
        """OAuth refresh; the pair rotates, so the caller must persist the answer."""
        form = {"client_id": self.client_id, "grant_type": "refresh_token", "refresh_token": refresh_token}
        if client_secret:
            form["client_secret"] = client_secret
        try:
            body = self._request("oauth2/token", "POST", f"{self.api_base}/oauth2/token.json",
                                 data=form, secrets=(refresh_token, client_secret))
        except CredentialsExpired:
            raise PermanentError("youku oauth2/token: the refresh token was rejected; re-authorise the app") from None
        access = str(body.get("access_token") or "")
        if not access:
            raise TransientError("youku oauth2/token: answer lacks access_token")
        expires = body.get("expires_in")
        try:
            expires_in = float(expires) if expires not in (None, "") else None
        except (TypeError, ValueError):
            expires_in = None
        # Some servers do not rotate: keep the old refresh token when none comes back.
        return TokenPair(access, str(body.get("refresh_token") or refresh_token), expires_in)

    def video_show(self, video_id: str) -> dict[str, Any]:
        """videos/show.json: the video's public record, `state` included."""
        return self._request("videos/show", "GET", f"{self.api_base}/videos/show.json",
                             params={"client_id": self.client_id, "video_id": video_id})

    # ---- upload server --------------------------------------------------------------

    def create_file(self, server: str, upload_token: str, file_size: int, ext: str) -> None:
        """Step 2: announce the file to the upload server."""
        form = {"upload_token": upload_token, "file_size": file_size, "ext": ext, "slice_length": SLICE_LENGTH_KB}
        self._request("create_file", "POST", f"http://{server}/gupload/create_file", data=form, secrets=(upload_token,))

    def new_slice(self, server: str, upload_token: str) -> SliceTask:
        """Step 3: ask for a slice task (the server picks offset and length)."""
        body = self._request("new_slice", "GET", f"http://{server}/gupload/new_slice",
                             params={"upload_token": upload_token}, secrets=(upload_token,))
        return self._slice_task("new_slice", body)

    def upload_slice(self, server: str, upload_token: str, task: SliceTask, data: bytes | PartBody,
                     digest: str) -> SliceTask:
        """Step 4: send one slice; the answer describes this caller's next task.

        The hot path: one keep-alive http.client connection per slice thread, the body sent
        as is (bytes, or a PartBody streamed from the file block by block; no copy, no
        per-request session machinery: that cost ~1.2 CPU-s/GiB)."""
        query = urlencode({"upload_token": upload_token, "slice_task_id": task.slice_task_id,
                           "offset": task.offset, "length": len(data), "hash": digest})
        status, headers, text = self._slices.post(server, f"/gupload/upload_slice?{query}", data)
        body = _answer("upload_slice", status, headers, text, (upload_token,))
        return self._slice_task("upload_slice", body)

    def check(self, server: str, upload_token: str) -> CheckResult:
        """Step 5: where the upload stands (see CheckResult.status)."""
        body = self._request("check", "GET", f"http://{server}/gupload/check",
                             params={"upload_token": upload_token}, secrets=(upload_token,))
        status = _as_int(body.get("status"), -1)
        if status not in (1, 2, 3, 4):
            raise TransientError(f"youku check: unexpected status {body.get('status')!r}")
        return CheckResult(
            status=status,
            transferred_percent=_as_int(body.get("transferred_percent")),
            confirmed_percent=_as_int(body.get("confirmed_percent")),
            empty_tasks=_as_int(body.get("empty_tasks")),
            finished=_as_bool(body.get("finished")),
            upload_server_ip=str(body.get("upload_server_ip") or ""),
        )

    # ---- plumbing -------------------------------------------------------------------

    @staticmethod
    def _slice_task(call: str, body: Mapping[str, Any]) -> SliceTask:
        if "slice_task_id" not in body:
            raise TransientError(f"youku {call}: answer lacks slice_task_id")
        return SliceTask(
            slice_task_id=_as_int(body.get("slice_task_id")),
            offset=_as_int(body.get("offset")),
            length=_as_int(body.get("length")),
            transferred=_as_int(body.get("transferred")),
            finished=_as_bool(body.get("finished")),
        )

    def _request(self, call: str, method: str, url: str, *, secrets: Iterable[str] = (), **kwargs: Any) -> dict[str, Any]:
        """One HTTP exchange, answered with the decoded JSON body or one of vidupd's errors."""
        # Failures are raised outside the `except` blocks: requests' exceptions quote the URL
        # (tokens included) and must not ride along even as a suppressed __context__.
        failure = ""
        try:
            resp = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.Timeout:
            failure = "timed out"
        except requests.ConnectionError as e:
            failure = f"connection failed ({_cause_name(e)})"
        except requests.RequestException as e:
            failure = f"request failed ({type(e).__name__})"
        if failure:
            raise TransientError(f"youku {call}: {failure}")
        with resp:
            try:
                text = resp.text
            except requests.RequestException as e:  # body cut short
                failure = f"answer cut short ({type(e).__name__})"
            if failure:
                raise TransientError(f"youku {call}: {failure}")
            return _answer(call, resp.status_code, resp.headers, text, tuple(secrets))


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
    if status >= 500 or status in (408, 429) or code == CODE_SERVICE_EXCEPTION:
        return TransientError(what, retry_after=_retry_after(headers))
    if 200 <= status < 500:  # 4xx, or an error body under a success status: trust the body
        kind = AccessTokenInvalid if code == CODE_ACCESS_TOKEN_INVALID else YoukuApiError
        return kind(what, code=code, http_status=status)
    return TransientError(what)

"""Youku open-platform wire client: one method per protocol call (PROTOCOLS.md sections 1
and 3): the API host's create/commit/cancel/get_sts_inf/oauth2/videos calls and the upload
server's slice calls.

It knows URLs, parameters and response fields; failures become vidupd's errors in `wire`, so
the provider decides on retries by type alone. It keeps no upload state and never retries:
pacing belongs to `vidupd.core.retry.call_with_retry` in the caller. `create` is a POST with
the metadata in the form body (as documented; a 2,000-character Chinese description in a
query string makes an 18 KB request line, which front ends refuse with 414).
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter

from ...core.errors import CredentialsExpired, PermanentError, TransientError
from ...core.secrets import Secret, register
from ..part_body import PartBody
from .wire import SLICE_LENGTH_KB, _answer, _as_bool, _as_int, _cause_name, _SliceConnections

EXPIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # expire_time of an OSS grant, UTC
DEFAULT_GRANT_LIFETIME = 900.0  # seconds assumed when a grant's expire_time cannot be read

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


@dataclass(frozen=True)
class OssGrant:
    """create (isnew=1) or get_sts_inf's answer: where the file goes on OSS and the STS
    credentials to send it with. Never persisted: the secret and token are Secrets."""

    upload_token: str = field(repr=False)  # "" for get_sts_inf (the caller knows it)
    endpoint: str
    bucket: str
    key: str
    access_key_id: str
    access_key_secret: Secret = field(repr=False)
    security_token: Secret = field(repr=False)
    expires_at: float  # local epoch seconds
    lifetime: float


def expire_epoch(value: Any, now: float) -> float:
    """`expire_time` (UTC `%Y-%m-%dT%H:%M:%SZ`; epoch seconds accepted too) as epoch seconds;
    unreadable: `now` + DEFAULT_GRANT_LIFETIME (OSS's SecurityTokenExpired renews them anyway)."""
    text = str(value or "").strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(calendar.timegm(time.strptime(text, EXPIRE_FORMAT)))
    except ValueError:
        return now + DEFAULT_GRANT_LIFETIME


def parse_grant(call: str, body: Mapping[str, Any], bucket: str = "", key: str = "") -> OssGrant:
    """The OSS grant of an answer; secrets registered for redaction before anything else."""
    secret, token = str(body.get("temp_access_secret") or ""), str(body.get("security_token") or "")
    register(secret)
    register(token)
    bucket = str(body.get("oss_bucket") or bucket)
    key = str(body.get("oss_object") or key)
    access_id, endpoint = str(body.get("temp_access_id") or ""), str(body.get("endpoint") or "")
    if not (access_id and secret and token and endpoint and bucket and key):
        raise TransientError(f"youku {call}: answer lacks part of the OSS grant (endpoint, oss_bucket, oss_object, "
                             "temp_access_id, temp_access_secret, security_token)")
    now = time.time()
    expires = expire_epoch(body.get("expire_time"), now)
    return OssGrant(str(body.get("upload_token") or ""), endpoint, bucket, key, access_id,
                    Secret(secret, "sts"), Secret(token, "sts"), expires, max(1.0, expires - now))


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

    def create(self, access_token: str, params: Mapping[str, Any], *, isnew: bool = False) -> CreateResult | OssGrant:
        """Register the upload (POST, form body). `isnew`: ask for the OSS-based upload; the
        answer is an OssGrant, or a CreateResult (upload server) from a server that only
        speaks the six-step flow."""
        form = dict(params, client_id=self.client_id, access_token=access_token)
        if isnew:
            form["isnew"] = 1
        body = self._request("create", "POST", f"{self.api_base}/uploads/create.json", data=form,
                             secrets=(access_token, str(params.get("watch_password") or "")))
        token = str(body.get("upload_token") or "")
        if not token:
            raise TransientError("youku create: answer lacks upload_token")
        uri = str(body.get("upload_server_uri") or "")
        if uri and not body.get("oss_bucket"):
            return CreateResult(token, uri, str(body.get("instant_upload_ok", "")).lower() == "yes")
        if not body.get("oss_bucket"):
            raise TransientError("youku create: answer names neither an upload server nor an OSS bucket")
        return parse_grant("create", body)

    def get_sts_inf(self, access_token: str, upload_token: str, bucket: str, key: str) -> OssGrant:
        """Fresh STS credentials for the OSS object of an upload (the same bucket and object)."""
        query = {"client_id": self.client_id, "access_token": access_token, "upload_token": upload_token,
                 "oss_bucket": bucket, "oss_object": key}
        body = self._request("get_sts_inf", "GET", f"{self.api_base}/uploads/get_sts_inf.json", params=query,
                             secrets=(access_token, upload_token))
        return parse_grant("get_sts_inf", body, bucket, key)

    def commit(self, access_token: str, upload_token: str, upload_server_ip: str = "") -> str:
        """Turn the finished upload into a video; returns its video_id. The slice flow sends
        the upload server's IP (from check); the OSS flow sends none."""
        form = {"client_id": self.client_id, "access_token": access_token, "upload_token": upload_token}
        if upload_server_ip:
            form["upload_server_ip"] = upload_server_ip
        body = self._request("commit", "POST", f"{self.api_base}/uploads/commit.json",
                             data=form, secrets=(access_token, upload_token))
        video_id = str(body.get("video_id") or "")
        if not video_id:
            raise TransientError("youku commit: answer lacks video_id")
        return video_id

    def cancel(self, access_token: str, upload_token: str) -> None:
        """Abandon an upload that will not be committed, so the server can drop what it holds."""
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


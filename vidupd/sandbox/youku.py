"""Emulated Youku open platform on 127.0.0.1: the API host (uploads/create, commit, cancel,
oauth2/token, videos/show) and the upload server (gupload/create_file, new_slice,
upload_slice, check), as PROTOCOLS.md section 1 describes them.

It checks what the real service checks (client id, access token, upload token, slice MD5,
task offsets, whole-file MD5 at commit), streams slices to disk, survives a restart, and can
misbehave on purpose (SandboxOptions) so clients can be tested against faults.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .common import (
    QuietHandler,
    Faults,
    RateLimiter,
    SandboxHTTPServer,
    SandboxOptions,
    UploadsJournal,
    drop_connection,
    receive_body,
    send_json,
    write_atomic,
)
from .youku_state import (
    ACCESS_TOKEN_EXPIRED,
    ACCESS_TOKEN_INVALID,
    CLIENT_ID_INVALID,
    PARAM_INVALID,
    PARAM_MISSING,
    SERVICE_EXCEPTION,
    SLICE_HASH_MISMATCH,
    SLICE_TASK_MISMATCH,
    SlicePlan,
    UploadMeta,
    UploadStore,
    YoukuError,
)

__all__ = ["YoukuSandbox", "YoukuError"]

_log = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL = 30 * 24 * 3600  # the FAQ: access tokens last about a month
VIDEO_EXTENSIONS = frozenset(
    {"mp4", "mov", "mkv", "flv", "avi", "wmv", "mpg", "mpeg", "m4v", "3gp", "rm", "rmvb", "vob"}
)
_MAX_FORM = 1 << 20
_MAX_SLICE = 64 << 20
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
Params = dict[str, str]


class _Auth:
    """The one app/user the sandbox knows; the token pair rotates on refresh (persisted)."""

    def __init__(self, path: Path, ttl: float, clock: Callable[[], float]):
        self._path = path
        self._clock = clock
        self.ttl = ttl if ttl > 0 else DEFAULT_TOKEN_TTL
        self._lock = threading.Lock()
        try:
            saved = json.loads(path.read_bytes())
        except FileNotFoundError:
            saved = {"client_id": secrets.token_hex(8), "client_secret": secrets.token_hex(16)}
            saved.update(access_tokens={secrets.token_hex(16): clock()}, refresh_token=secrets.token_hex(16))
        self.client_id: str = saved["client_id"]
        self.client_secret: str = saved["client_secret"]
        self._access: dict[str, float] = saved["access_tokens"]  # token -> issued at
        self._refresh: str = saved["refresh_token"]
        self._save()

    def credentials(self) -> dict[str, str]:
        with self._lock:
            newest = max(self._access, key=self._access.__getitem__)
            return {"client_id": self.client_id, "client_secret": self.client_secret,
                    "access_token": newest, "refresh_token": self._refresh}  # fmt: skip

    def check_client(self, params: Params) -> None:
        if _need(params, "client_id") != self.client_id:
            raise YoukuError(CLIENT_ID_INVALID, "Client id invalid", "SystemException")

    def check(self, params: Params) -> None:
        """Client id and access token of an API call (old tokens live until they expire)."""
        self.check_client(params)
        token = _need(params, "access_token")
        with self._lock:
            issued = self._access.get(token)
        if issued is None:
            raise YoukuError(ACCESS_TOKEN_INVALID, "Invalid token", "SystemException")
        if self._clock() - issued >= self.ttl:
            raise YoukuError(ACCESS_TOKEN_EXPIRED, "Expired token", "SystemException")

    def refresh(self, params: Params) -> dict[str, str]:
        self.check_client(params)
        if _need(params, "grant_type") != "refresh_token":
            raise YoukuError(PARAM_INVALID, "grant_type must be refresh_token", "SystemException")
        secret = params.get("client_secret")
        if secret is not None and secret != self.client_secret:
            raise YoukuError(CLIENT_ID_INVALID, "Client secret invalid", "SystemException")
        given = _need(params, "refresh_token")
        with self._lock:
            if given != self._refresh:
                raise YoukuError(ACCESS_TOKEN_INVALID, "Invalid refresh token", "SystemException")
            now = self._clock()
            access, self._refresh = secrets.token_hex(16), secrets.token_hex(16)
            self._access = {t: at for t, at in self._access.items() if now - at < self.ttl}
            self._access[access] = now
            refresh = self._refresh
            self._save()
        pair = {"access_token": access, "refresh_token": refresh}
        return {**pair, "expires_in": str(int(self.ttl)), "token_type": "bearer"}  # expires_in is a string on the wire

    def _save(self) -> None:
        data = {"client_id": self.client_id, "client_secret": self.client_secret,
                "access_tokens": self._access, "refresh_token": self._refresh}  # fmt: skip
        write_atomic(self._path, json.dumps(data).encode())


def _need(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise YoukuError(PARAM_MISSING, f"Necessary parameter missing: {name}", "SystemException")
    return value


def _int(params: Params, name: str, default: int | None = None, low: int = 0, high: int = 1 << 62) -> int:
    if default is not None and not params.get(name):
        return default
    raw = _need(params, name)
    try:
        value = int(raw)
    except ValueError:
        raise YoukuError(PARAM_INVALID, f"Invalid parameter: {name} must be an integer", "SystemException") from None
    if not low <= value <= high:
        raise YoukuError(PARAM_INVALID, f"Invalid parameter: {name} must be in {low}..{high}", "SystemException")
    return value


def _invalid(name: str, why: str) -> YoukuError:
    return YoukuError(PARAM_INVALID, f"Invalid parameter: {name} {why}", "SystemException")


def _upload_meta(params: Params, client_id: str) -> UploadMeta:
    """Validate create.json's video fields the way the documentation states them."""
    title = _need(params, "title")
    if len(title) > 60:
        raise _invalid("title", "is longer than 60 characters")
    tags = [t.strip() for t in _need(params, "tags").split(",")]
    if not 1 <= len(tags) <= 10 or any(not 2 <= len(t) <= 20 for t in tags):
        raise _invalid("tags", "must be 1-10 comma-separated tags of 2-20 characters")
    description = params.get("description", "")
    if len(description) > 2000:
        raise _invalid("description", "is longer than 2000 characters")
    copyright_type = params.get("copyright_type") or "original"
    if copyright_type not in ("original", "reproduced"):
        raise _invalid("copyright_type", "must be original or reproduced")
    public_type = params.get("public_type") or "all"
    if public_type not in ("all", "friend", "password"):
        raise _invalid("public_type", "must be all, friend or password")
    if public_type == "password":
        _need(params, "watch_password")
    file_name = _need(params, "file_name")
    if "." not in file_name or file_name.rsplit(".", 1)[1].lower() not in VIDEO_EXTENSIONS:
        raise _invalid("file_name", "has no supported video extension")
    file_md5 = _need(params, "file_md5")
    if not _HEX32.match(file_md5):
        raise _invalid("file_md5", "must be 32 hex digits")
    return UploadMeta(
        client_id=client_id,
        title=title,
        tags=",".join(tags),
        description=description,
        category=params.get("category", ""),
        copyright_type=copyright_type,
        public_type=public_type,
        file_name=file_name,
        file_size=_int(params, "file_size", low=1),
        file_md5=file_md5.lower(),
    )


class _Server(SandboxHTTPServer):
    app: YoukuSandbox


class _Handler(QuietHandler):
    """Shared plumbing: routing, parameters, faults, error bodies. Silent and keep-alive."""

    server: _Server
    routes: dict[tuple[str, str], str] = {}  # (method or "*", path) -> handler method name

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        name = self.routes.get((method, url.path)) or self.routes.get(("*", url.path))
        route: Callable[[Params], None] | None = getattr(self, name) if name else None
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = app.faults.roll()
        if fault == "drop":
            drop_connection(self)
            return
        try:
            if fault == "error" or route is None:
                self._drain_body()
                if route is None:
                    raise YoukuError(PARAM_INVALID, f"no such API: {method} {url.path}", "SystemException", 404)
                raise YoukuError(SERVICE_EXCEPTION, "Service exception", "SystemException", app.fault_status())
            route(params)
        except YoukuError as e:
            send_json(self, e.status, e.body())
        except ConnectionError:
            self.close_connection = True
        except Exception:  # a sandbox fault (disk full, bug): answer 500 like a broken server
            _log.exception("youku sandbox: %s %s failed", method, url.path)
            self.close_connection = True
            error = YoukuError(SERVICE_EXCEPTION, "Service exception", "SystemException", 500)
            send_json(self, 500, error.body(), {"Connection": "close"})

    def _form(self, params: Params) -> Params:
        """Query parameters plus a urlencoded form body (documented as POST, often GET)."""
        length = self._content_length() or 0
        if length > _MAX_FORM:
            self.close_connection = True
            raise _invalid("body", "is too large for a form")
        if length:
            body = self.rfile.read(length)
            if len(body) < length:
                raise ConnectionError("form body cut short")
            params = {**params, **dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))}
        return params

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            return max(int(raw), 0)
        except ValueError:
            self.close_connection = True  # cannot tell where the next request starts
            raise _invalid("Content-Length", "is not a number") from None

    def _drain_body(self) -> None:
        """Read and drop a body we refuse, so the client sees the answer, not a reset."""
        try:
            length = self._content_length() or 0
        except YoukuError:
            return
        if length > _MAX_SLICE:
            self.close_connection = True
            return
        while length > 0:
            got = self.rfile.read(min(length, 1 << 20))
            if not got:
                raise ConnectionError("client went away")
            length -= len(got)


class _ApiHandler(_Handler):
    """api.youku.com: needs client_id and (except for videos/show) a live access token."""

    def create(self, params: Params) -> None:
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        meta = _upload_meta(params, params["client_id"])
        token, instant = app.store.create(meta)
        answer = {"upload_token": token, "upload_server_uri": app.upload_server}
        send_json(self, 201, {**answer, "instant_upload_ok": "yes" if instant else "no"})

    def commit(self, params: Params) -> None:
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        ip = params.get("upload_server_ip")
        if ip and ip.split(":")[0] != "127.0.0.1":
            raise _invalid("upload_server_ip", "is not the server that took this upload")
        video_id = app.store.commit(_need(params, "upload_token"), params["client_id"])
        if app.faults.roll():  # committed, but the answer is lost: a retry must get the same id
            drop_connection(self)
            return
        send_json(self, 200, {"video_id": video_id})

    def cancel(self, params: Params) -> None:
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        token = _need(params, "upload_token")
        app.store.cancel(token, params["client_id"])
        send_json(self, 200, {"upload_token": token})

    def token(self, params: Params) -> None:
        app = self.server.app
        send_json(self, 200, app.auth.refresh(self._form(params)))

    def show(self, params: Params) -> None:
        app = self.server.app
        app.auth.check_client(params)
        send_json(self, 200, app.video_json(_need(params, "video_id")))

    routes = {
        ("*", "/uploads/create.json"): "create",
        ("*", "/uploads/commit.json"): "commit",
        ("*", "/uploads/cancel.json"): "cancel",
        ("POST", "/oauth2/token.json"): "token",
        ("GET", "/videos/show.json"): "show",
    }


class _UploadHandler(_Handler):
    """The upload server: only the upload token authorises a call."""

    def create_file(self, params: Params) -> None:
        params = self._form(params)
        ext = params.get("ext", "")
        self.server.app.store.create_file(
            _need(params, "upload_token"),
            _int(params, "file_size", low=1),
            ext,
            _int(params, "slice_length", default=2048, low=64, high=10 * 1024),
        )
        send_json(self, 201, {})

    def new_slice(self, params: Params) -> None:
        params = self._form(params)
        send_json(self, 201, self.server.app.store.next_task(_need(params, "upload_token")))

    def check(self, params: Params) -> None:
        params = self._form(params)
        send_json(self, 200, self.server.app.store.check(_need(params, "upload_token")))

    def upload_slice(self, params: Params) -> None:
        app = self.server.app
        try:
            token = _need(params, "upload_token")
            task_id = _int(params, "slice_task_id", low=1)
            offset, length = _int(params, "offset"), _int(params, "length", low=1)
            want_md5 = _need(params, "hash").lower()
            crc = params.get("crc") or None
            if crc is not None and not re.fullmatch(r"[0-9a-fA-F]{1,8}", crc):
                raise _invalid("crc", "must be a hex CRC32")
            body_length = self._content_length()
            if body_length is None:
                raise YoukuError(PARAM_MISSING, "upload_slice needs a Content-Length body", "SystemException", 411)
            if body_length != length:
                raise YoukuError(SLICE_TASK_MISMATCH, f"body is {body_length} bytes, length says {length}")
            plan = app.store.begin_slice(token, task_id, offset, length)
        except YoukuError:
            self._drain_body()
            raise
        try:
            md5, data = self._receive(plan, None if crc is None else int(crc, 16))
        except BaseException:
            app.store.abort_slice(plan)
            raise
        app.count_slice_bytes(plan.task.length)
        if md5 != want_md5:
            app.store.abort_slice(plan)
            raise YoukuError(SLICE_HASH_MISMATCH, f"slice MD5 {md5} differs from hash {want_md5}")
        late_fault = app.faults.roll()
        if late_fault:  # the body arrived but is not stored
            app.store.abort_slice(plan)
            if late_fault == "drop":
                drop_connection(self)
                return
            raise YoukuError(SERVICE_EXCEPTION, "Service exception", "SystemException", app.fault_status())
        send_json(self, 201, app.store.finish_slice(plan, md5, data))

    def _receive(self, plan: SlicePlan, want_crc: int | None) -> tuple[str, bytearray | None]:
        """Stream the body to its sink; returns (md5, the bytes if held in memory)."""
        crc = [0]
        digests = () if want_crc is None else (lambda b: crc.__setitem__(0, zlib.crc32(b, crc[0])),)
        sink: _PwriteSink | _MemorySink | None = None
        if plan.sink == "disk":
            sink = _PwriteSink(plan.path, plan.task.offset)
        elif plan.sink == "memory":
            sink = _MemorySink(plan.task.length)
        try:
            md5, _ = receive_body(self.rfile, plan.task.length, sink, self.server.app.limiter, digests)  # type: ignore[arg-type]
        finally:
            if isinstance(sink, _PwriteSink):
                sink.close()
        if want_crc is not None and want_crc != crc[0]:
            raise YoukuError(SLICE_HASH_MISMATCH, f"slice CRC32 {crc[0]:08x} differs from crc {want_crc:08x}")
        return md5, sink.buf if isinstance(sink, _MemorySink) else None

    routes = {
        ("POST", "/gupload/create_file"): "create_file",
        ("*", "/gupload/new_slice"): "new_slice",
        ("POST", "/gupload/upload_slice"): "upload_slice",
        ("*", "/gupload/check"): "check",
    }


class _PwriteSink:
    """Writes a slice at its offset of the .part file; the file is never held in memory."""

    def __init__(self, path: Path, offset: int):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._offset = offset

    def write(self, block: memoryview) -> None:
        view = memoryview(block)
        while view:
            n = os.pwrite(self._fd, view, self._offset)
            self._offset += n
            view = view[n:]

    def close(self) -> None:
        os.close(self._fd)


class _MemorySink:
    """Hash-only mode: a slice waits here until the whole-file MD5 reaches its offset."""

    def __init__(self, length: int):
        self.buf = bytearray(length)
        self._pos = 0

    def write(self, block: memoryview) -> None:
        self.buf[self._pos : self._pos + len(block)] = block
        self._pos += len(block)


class YoukuSandbox:
    """Both Youku hosts on loopback, sharing one upload store and one set of credentials."""

    def __init__(
        self,
        data_dir: Path,
        options: SandboxOptions,
        journal: UploadsJournal,
        api_port: int = 0,
        upload_port: int = 0,
        *,
        encode_seconds: float = 2.0,
        upload_token_ttl: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        """encode_seconds: how long videos/show says "encoding" after commit.
        upload_token_ttl: seconds an uncommitted upload lives. clock: wall-clock seconds;
        tests pass a fake one to step through timeouts without sleeping."""
        root = Path(data_dir) / "youku"
        root.mkdir(parents=True, exist_ok=True)
        self._ports_path = root / "ports.json"
        self.options = options
        self.encode_seconds = encode_seconds
        self.faults = Faults(options)
        self.limiter = RateLimiter(options.max_rate) if options.max_rate > 0 else None
        self._clock = clock
        self.auth = _Auth(root / "credentials.json", options.token_ttl, clock)
        self.store = UploadStore(root, options, journal, upload_token_ttl, clock)
        self._rng = random.Random(options.seed)
        self._ports = (api_port, upload_port)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()
        self.slice_bytes_received = 0  # complete slice bodies read, repeats included (tests count re-sends)

    def start(self) -> None:
        """Bind both servers and serve them from background threads.

        A port given as 0 means the one used last time if it is free: resuming clients
        remember the upload server's address, so a restart should not move it."""
        try:
            previous = json.loads(self._ports_path.read_bytes())
        except (FileNotFoundError, ValueError):
            previous = [0, 0]
        for handler, port, last in zip((_ApiHandler, _UploadHandler), self._ports, previous, strict=True):
            try:
                server = _Server(handler, port or last)
            except OSError:
                server = _Server(handler, port)
            server.app = self
            self._servers.append(server)
        write_atomic(self._ports_path, json.dumps([s.server_address[1] for s in self._servers]).encode())
        self._threads = [  # a short poll interval makes shutdown quick (tests start many sandboxes)
            threading.Thread(target=s.serve_forever, args=(0.05,), name=f"youku-{s.address}", daemon=True)
            for s in self._servers
        ]
        self._threads.append(threading.Thread(target=self.store.flush_loop, name="youku-state", daemon=True))
        self._threads.append(threading.Thread(target=self.store.resume_digests, name="youku-rehash", daemon=True))
        for t in self._threads:
            t.start()

    def shutdown(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self.store.stop()
        for t in self._threads:
            t.join(timeout=5)
        self._servers = []

    @property
    def api_base(self) -> str:
        """http://127.0.0.1:PORT of the API host (after start)."""
        return f"http://{self._server(0).address}"

    @property
    def upload_server(self) -> str:
        """127.0.0.1:PORT of the upload server, as create.json's upload_server_uri says."""
        return self._server(1).address

    def _server(self, i: int) -> _Server:
        if not self._servers:
            raise RuntimeError("YoukuSandbox.start() has not been called")
        return self._servers[i]

    @property
    def credentials(self) -> dict[str, str]:
        """client_id, client_secret and the newest access/refresh pair."""
        return self.auth.credentials()

    def count_slice_bytes(self, n: int) -> None:
        with self._stats_lock:
            self.slice_bytes_received += n

    def expire_upload_token(self, token: str) -> None:
        """Forget an upload now, as the service does after a day: calls answer 120010223."""
        self.store.expire(token)

    def fault_status(self) -> int:
        return self._rng.choice((500, 503))

    def video_json(self, video_id: str) -> dict[str, Any]:
        """videos/show.json: the seed's fields; "encoding" until encode_seconds have passed."""
        v = self.store.video(video_id)
        m = v.meta
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.committed_at))
        ready = self._clock() - v.committed_at >= self.encode_seconds
        return {
            "id": v.video_id,
            "title": m.title,
            "link": f"http://v.youku.com/v_show/id_{v.video_id}.html",
            "thumbnail": f"{self.api_base}/thumbnails/{v.video_id}.jpg",
            "duration": "0.00",
            "category": m.category,
            "state": "normal" if ready else "encoding",
            "created": stamp,
            "published": stamp if ready else "",
            "description": m.description,
            "player": f"http://player.youku.com/player.php/sid/{v.video_id}/v.swf",
            "public_type": m.public_type,
            "copyright_type": m.copyright_type,
            "user": {"id": 58011986, "name": "vidupd-sandbox", "link": "http://i.youku.com/u/UMjMyMDQ3OTQ0"},
            "tags": m.tags,
            "view_count": 0,
            "operation_limit": [],
            "streamtypes": ["hd2", "flvhd", "mp4", "3gp", "3gphd"] if ready else [],
        }

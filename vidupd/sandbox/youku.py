"""Emulated Youku open platform on 127.0.0.1: the API host (uploads/create, get_sts_inf,
commit, cancel, oauth2/token, videos/show), the upload server (gupload/create_file,
new_slice, upload_slice, check) and the Youku OSS bucket, as PROTOCOLS.md sections 1 and 3
describe them. `create` with isnew=1 starts the OSS flow (youku_oss.py), without it the six
steps; SandboxOptions.youku_protocol can allow only one of them.

It checks what the real service checks (client id, access token, upload token, the
documented metadata limits, slice MD5, task offsets, the upload_server_ip `check` named,
whole-file MD5 at commit), refuses request lines over 8 KB with 414 as common front ends
do, streams slices to disk, survives a restart, and can misbehave on purpose
(SandboxOptions) so clients can be tested against faults.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .common import (
    CannedAnswer,
    OPEN_UPLOADS_PATH,
    QuietHandler,
    Faults,
    Holds,
    RateLimiter,
    ReceiveMeter,
    SandboxHTTPServer,
    SandboxOptions,
    UploadsJournal,
    drop_connection,
    receive_body,
    send_json,
    write_atomic,
)
from .oss import OssSandbox
from .youku_auth import Auth
from .youku_oss import YoukuOssFlow
from .youku_params import Params, integer, invalid, need, upload_meta
from .youku_state import (
    PARAM_INVALID,
    PARAM_MISSING,
    SERVICE_EXCEPTION,
    SERVICE_UNAVAILABLE,
    SLICE_HASH_MISMATCH,
    SLICE_TASK_MISMATCH,
    SlicePlan,
    UploadStore,
    YoukuError,
)

__all__ = ["YoukuSandbox", "YoukuError"]

_log = logging.getLogger(__name__)

_MAX_FORM = 1 << 20
MAX_REQUEST_LINE = 8192  # bytes of "METHOD target HTTP/1.1"; longer ones get 414, as nginx's default
_MAX_SLICE = 64 << 20


def _port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


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

    def parse_request(self) -> bool:
        """Refuse request lines over 8 KB with 414 (and close), as common front ends do:
        a GET create with a 2,000-character Chinese description in its query is ~18 KB."""
        if not super().parse_request():
            return False
        if len(self.raw_requestline.rstrip(b"\r\n")) > MAX_REQUEST_LINE:
            self.send_error(414, "Request-URI Too Large")  # closes the connection (headers sent, body unread)
            return False
        return True

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        if method == "GET" and url.path == OPEN_UPLOADS_PATH and isinstance(self, _ApiHandler):  # no faults here
            send_json(self, 200, app.open_uploads())
            return
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
                raise app.injected_error(api=isinstance(self, _ApiHandler))
            if app.canned.serve(self, url.path, self._drain_body):
                return
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
            raise invalid("body", "is too large for a form")
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
            raise invalid("Content-Length", "is not a number") from None

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
        """GET with a query or POST with a form (both public clients exist); isnew=1 asks
        for the OSS flow."""
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        oss = app.wants_oss(params)
        meta = upload_meta(params, params["client_id"])
        if oss:
            answer = app.oss_flow.create(meta)
            app.holds.hold("create")
            send_json(self, 201, answer)
            return
        token, instant = app.store.create(meta)
        app.holds.hold("create")
        answer = {"upload_token": token, "upload_server_uri": app.upload_server}
        send_json(self, 201, {**answer, "instant_upload_ok": "yes" if instant else "no"})

    def commit(self, params: Params) -> None:
        """Six-step uploads send the upload_server_ip `check` answered; OSS ones send none."""
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        video_id = app.store.commit(need(params, "upload_token"), params["client_id"],
                                    params.get("upload_server_ip"), app.oss_flow.check_object)
        if app.faults.roll():  # committed, but the answer is lost: a retry must get the same id
            drop_connection(self)
            return
        app.holds.hold("commit")
        send_json(self, 200, {"video_id": video_id})

    def cancel(self, params: Params) -> None:
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        token = need(params, "upload_token")
        app.oss_flow.discard(app.store.cancel(token, params["client_id"]))
        send_json(self, 200, {"upload_token": token})

    def get_sts_inf(self, params: Params) -> None:
        app = self.server.app
        params = self._form(params)
        app.auth.check(params)
        for name in ("upload_token", "oss_bucket", "oss_object"):
            need(params, name)
        send_json(self, 200, app.oss_flow.renew(params))

    def token(self, params: Params) -> None:
        app = self.server.app
        send_json(self, 200, app.auth.refresh(self._form(params)))

    def show(self, params: Params) -> None:
        app = self.server.app
        app.auth.check_client(params)
        send_json(self, 200, app.video_json(need(params, "video_id")))

    routes = {
        ("*", "/uploads/create.json"): "create",
        ("*", "/uploads/commit.json"): "commit",
        ("*", "/uploads/cancel.json"): "cancel",
        ("*", "/uploads/get_sts_inf.json"): "get_sts_inf",
        ("POST", "/oauth2/token.json"): "token",
        ("GET", "/videos/show.json"): "show",
    }


class _UploadHandler(_Handler):
    """The upload server: only the upload token authorises a call."""

    def create_file(self, params: Params) -> None:
        params = self._form(params)
        ext = params.get("ext", "")
        self.server.app.store.create_file(
            need(params, "upload_token"),
            integer(params, "file_size", low=1),
            ext,
            integer(params, "slice_length", default=2048, low=64, high=10 * 1024),
        )
        self.server.app.holds.hold("create_file")
        send_json(self, 201, {})

    def new_slice(self, params: Params) -> None:
        params = self._form(params)
        send_json(self, 201, self.server.app.store.next_task(need(params, "upload_token")))

    def check(self, params: Params) -> None:
        params = self._form(params)
        send_json(self, 200, self.server.app.store.check(need(params, "upload_token")))

    def upload_slice(self, params: Params) -> None:
        app = self.server.app
        try:
            token = need(params, "upload_token")
            task_id = integer(params, "slice_task_id", low=1)
            offset, length = integer(params, "offset"), integer(params, "length", low=1)
            want_md5 = need(params, "hash").lower()
            crc = params.get("crc") or None
            if crc is not None and not re.fullmatch(r"[0-9a-fA-F]{1,8}", crc):
                raise invalid("crc", "must be a hex CRC32")
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
            md5, _ = receive_body(self.rfile, plan.task.length, sink, self.server.app.limiter, digests,  # type: ignore[arg-type]
                                  self.server.app.received)
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
        oss_port: int = 0,
    ):
        """encode_seconds: how long videos/show says "encoding" after commit.
        upload_token_ttl: seconds an uncommitted upload lives. clock: wall-clock seconds;
        tests pass a fake one to step through timeouts without sleeping. oss_port: the
        Youku bucket's port (0 = the one used last time if free, else any)."""
        root = Path(data_dir) / "youku"
        root.mkdir(parents=True, exist_ok=True)
        self._ports_path = root / "ports.json"
        self.options = options
        self.encode_seconds = encode_seconds
        self.faults = Faults(options)
        self.canned = CannedAnswer(options)
        self.holds = Holds(options.hold_answer)
        self.limiter = RateLimiter(options.max_rate) if options.max_rate > 0 else None
        self.received = ReceiveMeter("youku upload")  # slice bytes per second (the OSS flow: oss_flow's bucket)
        self._clock = clock
        self.auth = Auth(root / "credentials.json", options.token_ttl, clock)
        self.store = UploadStore(root, options, journal, upload_token_ttl, clock)
        self._rng = random.Random(options.seed)
        self._ports = (api_port, upload_port)
        try:
            previous = json.loads(self._ports_path.read_bytes())
        except (FileNotFoundError, ValueError):
            previous = []
        last_oss = previous[2] if len(previous) > 2 else 0
        self.oss_flow = YoukuOssFlow(root, options, journal, self.store, port=oss_port or last_oss)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()
        self.slice_bytes_received = 0  # complete slice bodies read, repeats included (tests count re-sends)

    def start(self) -> None:
        """Bind both servers and serve them from background threads.

        A port given as 0 means the one used last time if it is free: resuming clients
        remember the upload server's address, so a restart should not move it."""
        try:
            previous = json.loads(self._ports_path.read_bytes())[:2]
        except (FileNotFoundError, ValueError):
            previous = [0, 0]
        for handler, port, last in zip((_ApiHandler, _UploadHandler), self._ports, previous, strict=True):
            try:
                server = _Server(handler, port or last)
            except OSError:
                server = _Server(handler, port)
            server.app = self
            self._servers.append(server)
        self.oss_flow.start()
        ports = [s.server_address[1] for s in self._servers] + [_port_of(self.oss.endpoint)]
        write_atomic(self._ports_path, json.dumps(ports).encode())
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
        self.oss_flow.shutdown()
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
        self.oss_flow.discard(self.store.expire(token))

    @property
    def oss(self) -> OssSandbox:
        """The Youku bucket (an OssSandbox of its own: endpoint, bucket, region, counters)."""
        return self.oss_flow.oss

    def wants_oss(self, params: Params) -> bool:
        """Which flow a create asks for, under SandboxOptions.youku_protocol."""
        isnew = params.get("isnew", "") not in ("", "0")
        protocol = self.options.youku_protocol
        if protocol == "slices":
            return False  # an account still on upload servers: isnew is ignored
        if protocol == "oss" and not isnew:
            # An account whose upload servers are gone. 1013 (invalid parameter) because the
            # request is well-formed but asks for a flow this service no longer offers.
            raise YoukuError(PARAM_INVALID, "Invalid parameter: isnew; this service uploads through OSS only, "
                             "send isnew=1", "SystemException")
        return isnew

    def open_uploads(self) -> dict[str, Any]:
        """What Youku holds open: upload tokens (both flows) and the Youku bucket's multipart
        uploads (also served at OPEN_UPLOADS_PATH on the API host)."""
        return {"youku_tokens": self.store.open_tokens(), "oss_multipart": self.oss.open_multipart()}

    def counters(self) -> dict[str, int]:
        """What the e2e tests count, in one place:
        slice_bytes_received: complete slice bodies the upload server read (repeats included);
        oss_bytes_received: bytes the Youku bucket received (every UploadPart body, repeats
          included, plus objects completed by PutObject); oss_parts_received: UploadPart bodies;
        sts_issued / sts_renewed: OSS credentials handed out (create + get_sts_inf / get_sts_inf);
        open_oss / open_slices: uploads created and not yet committed, cancelled or expired;
        cancelled_oss / cancelled_slices, expired_*, committed_*: the same per end state."""
        counts = {f"{state}_{flow}": 0 for state in ("open", "cancelled", "expired", "committed")
                  for flow in ("oss", "slices")}
        counts.update(self.store.counts())
        return {
            "slice_bytes_received": self.slice_bytes_received,
            "oss_bytes_received": self.oss_flow.bytes_received,
            "oss_parts_received": self.oss.parts_received,
            "sts_issued": self.oss_flow.sts_issued,
            "sts_renewed": self.oss_flow.sts_renewed,
            **counts,
        }

    def fault_status(self) -> int:
        return self._rng.choice((500, 503))

    def injected_error(self, api: bool) -> YoukuError:
        """An injected failure (fail_rate): 1002 with 500/503, and on the API host also
        1001 "Service temporarily unavailable" (answered 503, what it means)."""
        if api and self._rng.random() < 0.5:
            return YoukuError(SERVICE_UNAVAILABLE, "Service temporarily unavailable", "SystemException", 503)
        return YoukuError(SERVICE_EXCEPTION, "Service exception", "SystemException", self.fault_status())

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

"""Pieces every emulated service shares: the threaded HTTP server, fault switches,
the server-side bandwidth cap, streamed request bodies and the uploads journal."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Callable

BLOCK = 1 << 20  # request bodies are read and written in 1 MiB blocks


@dataclass(frozen=True)
class SandboxOptions:
    """Fault and behaviour switches shared by all emulated services."""

    fail_rate: float = 0.0  # fraction of requests answered 5xx or dropped
    token_ttl: float = 0.0  # seconds an access token / STS credential lives; 0 = default
    confirm_delay: float = 0.0  # Youku: seconds `check` reports 2/3 after the last slice
    duplicate_ids: bool = False  # hand back an already issued id (the seed's bug)
    max_rate: int = 0  # bytes/s for request bodies, per server; 0 = unlimited
    hash_only: bool = False  # keep digests of received bytes, not the bytes (benchmarks)
    slice_task_timeout: float = 30.0  # Youku: a handed-out slice not uploaded is re-issued
    seed: int | None = None  # random seed for reproducible fault runs
    # VOD and OSS as the real services behave (issue 10):
    drop_create_answer: int = 0  # VOD: the first N CreateUploadVideo calls succeed, then lose their answer
    drop_complete_answer: int = 0  # OSS: the first N CompleteMultipartUpload calls complete, then drop the answer
    refresh_new_key: int = 0  # VOD: the Nth RefreshUploadVideo moves the video to a new object key
    refresh_new_endpoint: int = 0  # VOD: the Nth RefreshUploadVideo spells the OSS endpoint differently
    throttle_rate: float = 0.0  # VOD: fraction of RPC calls refused with 503 Throttling.User
    video_status: str = ""  # VOD: GetVideoInfo reports this status once the object is uploaded
    vod_forbidden: str = ""  # VOD: every signed call refused with 403 and this code (e.g. Forbidden.RAM)
    youku_protocol: str = "both"  # Youku create: "oss" (isnew=1 only), "slices" (isnew ignored) or "both"
    youku_slice_length: int = 0  # Youku: bytes per slice task; 0 = 12,345 bytes short of the request
    oss_signature: str = "v4"  # OSS: which signatures are accepted: v4 (a new account), v1, or both
    oss_endpoint: str = ""  # VOD: the OSS http://127.0.0.1:PORT handed out (a relay in front of the bucket); "" = its own
    # A hostile server (issue 14's bad-input corpus): the first `answer_times` calls named
    # `answer_call` (a VOD Action such as CreateUploadVideo, or a Youku path such as
    # /gupload/new_slice) get the raw HTTP response held in the file `answer_file`, verbatim.
    answer_call: str = ""
    answer_file: str = ""
    answer_times: int = 1
    # "NAME=SECONDS,...": the server acts on every request NAME (a VOD Action, an OSS operation
    # InitiateMultipartUpload / UploadPart / CompleteMultipartUpload, a Youku API create / commit /
    # create_file), then holds its answer that long: a crash test kills the client
    # while the answer is held (the server has acted, the client has not heard). See Holds.
    hold_answer: str = ""


# GET this path on the Youku API host or the VOD host: what that service holds open (JSON),
# for tests that check nothing was left behind (multipart uploads, upload tokens, videos
# still "Uploading"). A sandbox hook, not part of either platform's API; loopback only.
OPEN_UPLOADS_PATH = "/_sandbox/open-uploads"


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server bound to loopback only."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, host: str = "127.0.0.1"):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the sandbox binds to loopback only, not {host!r}")
        super().__init__((host, port), handler)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def start_background(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name=f"sandbox-{self.address}", daemon=True)
        t.start()
        return t


class QuietHandler(BaseHTTPRequestHandler):
    """Base of every emulated endpoint: HTTP/1.1 keep-alive, no Nagle delay between header
    and body, a bounded wait for silent clients, and no access log on the hot path."""

    protocol_version = "HTTP/1.1"
    timeout = 120
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class Faults:
    """Decides, per request, whether to inject a failure (reproducible with a seed)."""

    def __init__(self, options: SandboxOptions):
        self._rate = options.fail_rate
        self._rng = random.Random(options.seed)
        self._lock = threading.Lock()

    def roll(self) -> str | None:
        """None for a normal answer, else 'error' (HTTP 5xx) or 'drop' (connection closed)."""
        if self._rate <= 0:
            return None
        with self._lock:
            r = self._rng.random()
            if r >= self._rate:
                return None
            return "drop" if self._rng.random() < 0.5 else "error"


class RateLimiter:
    """Token bucket shared by all connections of one server (0 = unlimited)."""

    def __init__(self, rate: int):
        self._rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        if self._rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + n / self._rate
            delay = start - now
        if delay > 0:
            time.sleep(delay)


class ReceiveMeter:
    """Request-body bytes one server received, per wall-clock second (the last hour kept):
    what a client's bandwidth cap let through, as the far end saw it. Tests and benchmarks
    read `per_second()` (or DIR/received.json, which `vidupd sandbox` writes every second)."""

    KEEP = 3600  # seconds of history

    def __init__(self, name: str = "", clock: Callable[[], float] = time.time):
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds: dict[int, int] = {}
        self.total = 0

    def add(self, n: int) -> None:
        second = int(self._clock())
        with self._lock:
            self.total += n
            self._seconds[second] = self._seconds.get(second, 0) + n
            if len(self._seconds) > self.KEEP:
                for old in sorted(self._seconds)[:len(self._seconds) - self.KEEP]:
                    del self._seconds[old]

    def per_second(self) -> dict[int, int]:
        """{epoch second: bytes received in it}; seconds without traffic are absent."""
        with self._lock:
            return dict(self._seconds)

    def between(self, start: float, end: float) -> int:
        """Bytes received in the whole seconds from `start` to `end` (rounded inwards)."""
        with self._lock:
            return sum(n for s, n in self._seconds.items() if start <= s and s + 1 <= end)


class UploadsJournal:
    """DIR/uploads.jsonl: one line per media object the sandbox accepted as complete."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> None:
        fields.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        line = json.dumps(fields, sort_keys=True, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


def receive_body(
    rfile: BinaryIO,
    length: int,
    sink: BinaryIO | None,
    limiter: RateLimiter | None = None,
    digests: tuple[Callable[[bytes], None], ...] = (),
    meter: ReceiveMeter | None = None,
) -> tuple[str, int]:
    """Stream `length` bytes from the request into `sink` (None: hash only).

    Returns (hex md5, bytes read). hashlib releases the GIL on large buffers, so several
    connections hash in parallel. Raises ConnectionError if the client stops early.
    """
    md5 = hashlib.md5()
    left = length
    buf = bytearray(min(BLOCK, max(length, 1)))
    view = memoryview(buf)
    while left > 0:
        want = min(len(buf), left)
        # readinto1: what has arrived (one recv), not a whole block: the meter then sees bytes
        # when they come, not 1 MiB at a time
        into = getattr(rfile, "readinto1", None) or getattr(rfile, "readinto", None)
        got = into(view[:want]) if into is not None else None
        if got is None:
            chunk = rfile.read(want)
            got = len(chunk)
            view[:got] = chunk
        if not got:
            raise ConnectionError(f"client closed the connection with {left} of {length} bytes unsent")
        part = view[:got]
        md5.update(part)
        for d in digests:
            d(part)
        if sink is not None:
            sink.write(part)
        if limiter is not None:
            limiter.take(got)
        if meter is not None:
            meter.add(got)
        left -= got
    return md5.hexdigest(), length


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the socket without an answer, as a dying proxy would."""
    handler.close_connection = True
    try:
        handler.connection.shutdown(2)
    except OSError:
        pass


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename: readers see the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CannedAnswer:
    """Answers one chosen call with a chosen raw response (status line, headers, body, as
    bytes on the wire: truncated or lying bodies included), the first N times only."""

    def __init__(self, options: SandboxOptions):
        self._call = options.answer_call
        self._raw = Path(options.answer_file).read_bytes() if options.answer_call and options.answer_file else b""
        self._left = Countdown(options.answer_times if self._raw else 0)

    def serve(self, handler: BaseHTTPRequestHandler, call: str, drain: Callable[[], None] | None = None) -> bool:
        """Write the canned response if `call` is the chosen one (after `drain` reads the
        request's body) and close: True if it did."""
        if call != self._call or not self._left.take():
            return False
        if drain is not None:
            drain()
        handler.close_connection = True
        try:
            handler.wfile.write(self._raw)
            handler.wfile.flush()
        except OSError:
            pass
        return True
class Holds:
    """SandboxOptions.hold_answer: which answers are held after the server acted, and which are
    being held right now (a test polls `holding(name)` to kill the client at that moment)."""

    def __init__(self, spec: str):
        self.seconds: dict[str, float] = {}
        for item in filter(None, (x.strip() for x in spec.split(","))):
            name, _, value = item.partition("=")
            self.seconds[name.strip()] = float(value or 1.0)
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self.count: dict[str, int] = {}  # answers held so far, per name
        self.released: dict[str, float] = {}  # time.monotonic() the last held answer of each name was sent

    def hold(self, name: str) -> None:
        """Sleep the configured time if `name` is held (the caller has already acted)."""
        seconds = self.seconds.get(name)
        if not seconds:
            return
        with self._lock:
            self._active[name] = self._active.get(name, 0) + 1
            self.count[name] = self.count.get(name, 0) + 1
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._active[name] -= 1
                self.released[name] = time.monotonic()

    def just_released(self, name: str, within: float) -> bool:
        """Whether an answer of `name` was released less than `within` seconds ago (the
        client may have heard it and not yet recorded it)."""
        with self._lock:
            return time.monotonic() - self.released.get(name, float("-inf")) < within

    def holding(self, name: str) -> int:
        """How many answers of `name` are held at this moment."""
        with self._lock:
            return self._active.get(name, 0)


class Countdown:
    """A fault for the first `n` occasions only (thread-safe): `take()` is True n times."""

    def __init__(self, n: int):
        self._left = max(0, int(n))
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

"""Youku upload sessions on the server side: slice tasks, the whole-file MD5, committed
videos, all behind one lock and persisted under the sandbox's data directory.

No HTTP here: `youku.py` parses requests and streams bodies; this module decides what the
protocol allows. Every refusal is a `YoukuError` carrying the wire error's fields.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import BLOCK, SandboxOptions, UploadsJournal, write_atomic

# Published codes (PROTOCOLS.md sections 1 and 3).
SERVICE_UNAVAILABLE = 1001
SERVICE_EXCEPTION = 1002
CLIENT_ID_INVALID = 1005
ACCESS_TOKEN_INVALID = 1008
ACCESS_TOKEN_EXPIRED = 1009
PARAM_MISSING = 1012
PARAM_INVALID = 1013
UPLOAD_TOKEN_EXPIRED = 120010223
VIDEO_NOT_FOUND = 120020001
# Youku does not publish its other 1200102xx meanings; the sandbox assigns these.
FILE_NOT_CREATED = 120010224
SLICE_TASK_MISMATCH = 120010225
SLICE_HASH_MISMATCH = 120010226
UPLOAD_INCOMPLETE = 120010227
FILE_MD5_MISMATCH = 120010228
FILE_SIZE_MISMATCH = 120010229
ALREADY_COMMITTED = 120010230

_log = logging.getLogger(__name__)
HASH_ONLY_BUFFER_CAP = 256 << 20  # out-of-order slices kept in RAM in hash-only mode
_STATE_VERSION = 1


class YoukuError(Exception):
    """A protocol refusal, rendered as {"error": {"code", "type", "description"}}."""

    def __init__(self, code: int, description: str, type_: str = "UploadsException", status: int = 400):
        super().__init__(f"{code} {description}")
        self.code = code
        self.type = type_
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "type": self.type, "description": self.description}}


@dataclass(frozen=True)
class UploadMeta:
    """What `create` was told about the file; fixed for the upload's life."""

    client_id: str
    title: str
    tags: str
    description: str
    category: str
    copyright_type: str
    public_type: str
    file_name: str
    file_size: int
    file_md5: str


@dataclass(frozen=True)
class SliceTask:
    task_id: int
    offset: int
    length: int


@dataclass(frozen=True)
class ReceivedSlice:
    md5: str
    at: float


@dataclass(frozen=True)
class SlicePlan:
    """Where one upload_slice body goes: 'disk' (pwrite into path at offset), 'memory'
    (hash-only mode: held until the whole-file MD5 reaches it) or 'discard' (a duplicate)."""

    token: str
    task: SliceTask
    sink: str
    path: Path


@dataclass(frozen=True)
class Video:
    video_id: str
    meta: UploadMeta
    upload_token: str
    committed_at: float


class RunningMd5:
    """MD5 of the longest received prefix of a file whose slices arrive in any order.

    MD5 cannot be combined from parts, so a slice that arrives ahead of the prefix waits
    (its bytes in memory, or only its place in the .part file) until the gap fills. A
    short-lived background thread hashes what is contiguous, so no connection waits for it,
    outside the lock (hashlib frees the GIL on large buffers).
    """

    def __init__(self, size: int, read_at: Callable[[int, int], Iterator[bytes]], on_consumed: Callable[[int], None]):
        self.size = size
        self._read_at = read_at
        self._on_consumed = on_consumed
        self._md5 = hashlib.md5()
        self._frontier = 0
        self._pending: dict[int, tuple[int, bytes | bytearray | None]] = {}
        self._active = False
        self._failed = False
        self._cond = threading.Condition()

    @property
    def complete(self) -> bool:
        with self._cond:
            return self._frontier >= self.size and not self._active

    def hexdigest(self) -> str | None:
        with self._cond:
            return self._md5.hexdigest() if self._frontier >= self.size and not self._active else None

    def add(self, offset: int, length: int, data: bytes | bytearray | None, advance: bool = True) -> None:
        """Offer a stored slice (data None: read it back from disk when its turn comes)."""
        with self._cond:
            repeat = offset < self._frontier or offset in self._pending
            if not repeat:
                self._pending[offset] = (length, data)
        if repeat:  # callbacks run outside the condition: they take the store's lock
            if data is not None:
                self._on_consumed(length)
            return
        if advance:
            self.advance()

    def advance(self) -> None:
        """Hash in a background thread, so no connection waits for the prefix to catch up."""
        with self._cond:
            if self._active or self._failed or self._frontier not in self._pending:
                return
            self._active = True
        threading.Thread(target=self._drain, name="youku-md5", daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._cond:
                start = self._frontier
                entry = self._pending.pop(start, None)
                if entry is None:
                    self._active = False
                    self._cond.notify_all()
                    return
            length, data = entry
            try:
                if data is None:
                    for block in self._read_at(start, length):
                        self._md5.update(block)
                else:
                    self._md5.update(data)
            except OSError:
                _log.exception("youku sandbox: cannot re-read a slice; this upload can no longer commit")
                with self._cond:  # a partial update cannot be undone: the prefix is lost
                    self._failed = True
                    self._active = False
                    self._cond.notify_all()
                return
            if data is not None:
                self._on_consumed(length)
            with self._cond:
                self._frontier = start + length
                self._cond.notify_all()

    def wait_complete(self, timeout: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: (self._frontier >= self.size and not self._active) or self._failed, timeout)
            return self._frontier >= self.size and not self._active


@dataclass
class Session:
    """One upload, from create to commit (mutable; guarded by the store's lock)."""

    token: str
    meta: UploadMeta
    created_at: float
    instant: bool = False
    slice_length: int = 0  # bytes; 0 until create_file
    ext: str = ""
    next_offset: int = 0
    next_task_id: int = 1
    tasks: dict[int, SliceTask] = field(default_factory=dict)
    issued_at: dict[int, float] = field(default_factory=dict)  # handed out, not yet received
    received: dict[int, ReceivedSlice] = field(default_factory=dict)
    received_bytes: int = 0
    receiving: set[int] = field(default_factory=set)
    last_slice_at: float = 0.0
    video_id: str | None = None
    dead: str | None = None  # "expired" or "cancelled"
    digest: RunningMd5 | None = None
    oss_object: str = ""  # the OSS flow's object key (youku_oss.py); "" = the six-step flow

    @property
    def transferred(self) -> int:
        return self.meta.file_size if self.instant else self.received_bytes

    @property
    def all_received(self) -> bool:
        return self.instant or (self.next_offset >= self.meta.file_size and len(self.received) == len(self.tasks))

    @property
    def flow(self) -> str:
        return "oss" if self.oss_object else "slices"


def upload_server_ip(token: str) -> str:
    """The address `check` reports for an upload and commit must send back: an internal
    address of "the server that took it", never the one the client resolved (as the
    PHP SDK's fixtures show), so a client that sends its own resolved IP is caught."""
    h = hashlib.sha256(token.encode()).digest()
    return f"10.{h[0]}.{h[1]}.{h[2] % 254 + 1}"


def granted_slice_length(requested_kb: int, configured: int) -> int:
    """Bytes per slice task: the server decides (SandboxOptions.youku_slice_length), by
    default 12,345 bytes short of what was asked, so never a multiple of 1 KiB."""
    return configured if configured > 0 else max(requested_kb * 1024 - 12345, 1024)


def new_video_id() -> str:
    """Youku ids are "X" + base64 of a decimal number, e.g. XNDY5Njc0MTA4."""
    number = str(secrets.randbelow(9 * 10**9) + 10**9)
    return "X" + base64.b64encode(number.encode()).decode().rstrip("=")


class UploadStore:
    """Sessions, tasks and videos behind one lock; never held while a body is read."""

    def __init__(
        self,
        root: Path,
        options: SandboxOptions,
        journal: UploadsJournal,
        upload_token_ttl: float,
        clock: Callable[[], float] = time.time,
    ):
        self.root = root
        self._clock = clock
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._state_path = root / "uploads.json"  # live sessions (rewritten whole, so kept small)
        self._commits_path = root / "commits.jsonl"  # committed sessions, one appended line each
        self._options = options
        self._journal = journal
        self._token_ttl = upload_token_ttl
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._videos: dict[str, Video] = {}
        self._buffered = 0  # hash-only bytes held in memory
        self._save_lock = threading.Lock()
        self._version = 0
        self._saved_version = 0
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._load()

    # ---- create / create_file / tasks ----

    def create(self, meta: UploadMeta, oss_key: Callable[[str], str] | None = None) -> tuple[str, bool]:
        """A new upload; instant when a committed video already has this content.

        With `oss_key` (token -> object key) it is an OSS-flow upload: never instant, no
        upload-server calls, its bytes expected at that key of the Youku bucket."""
        token = secrets.token_hex(16)
        with self._lock:
            if oss_key is not None:
                instant, key = False, oss_key(token)
            else:
                instant, key = any(
                    v.meta.file_md5 == meta.file_md5 and v.meta.file_size == meta.file_size
                    for v in self._videos.values()
                ), ""
            self._sessions[token] = Session(token, meta, self._clock(), instant=instant, oss_object=key)
        self.save()
        return token, instant

    def oss_session(self, token: str, client_id: str) -> Session:
        """A live OSS-flow upload of this client (get_sts_inf); refuses six-step tokens."""
        with self._lock:
            s = self._live(token)
            if s.meta.client_id != client_id:
                raise YoukuError(CLIENT_ID_INVALID, "upload token belongs to another client", "SystemException")
            if not s.oss_object:
                raise YoukuError(PARAM_INVALID, "Invalid parameter: upload_token belongs to an upload-server "
                                 "(six-step) upload, not an OSS one", "SystemException")
            if s.video_id:
                raise YoukuError(ALREADY_COMMITTED, f"upload was committed as video {s.video_id}")
            return s

    def open_tokens(self) -> list[dict[str, str]]:
        """Upload tokens created and not yet committed, cancelled or expired."""
        with self._lock:
            return [{"upload_token": s.token, "flow": s.flow} for s in self._sessions.values()
                    if not s.video_id and not s.dead]

    def counts(self) -> dict[str, int]:
        """Uploads per state and flow, e.g. {"open_oss": 1, "cancelled_slices": 2}."""
        out: dict[str, int] = {}
        with self._lock:
            for s in self._sessions.values():
                state = "committed" if s.video_id else s.dead or "open"
                name = f"{state}_{s.flow}"
                out[name] = out.get(name, 0) + 1
        return out

    def create_file(self, token: str, file_size: int, ext: str, slice_kb: int) -> None:
        with self._lock:
            s = self._live_slices(token)
            if file_size != s.meta.file_size:
                raise YoukuError(
                    FILE_SIZE_MISMATCH, f"file_size {file_size} differs from {s.meta.file_size} given at create"
                )
            if s.slice_length or s.instant:
                return  # a resuming client may repeat create_file
            s.slice_length = granted_slice_length(slice_kb, self._options.youku_slice_length)
            s.ext = ext.lower() if re.fullmatch(r"[A-Za-z0-9]{1,8}", ext) else "bin"  # it names a file
            self._attach_digest(s)
        if not self._options.hash_only:
            fd = os.open(self._part(token), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, file_size)
            finally:
                os.close(fd)
        self.save()

    def next_task(self, token: str) -> dict[str, Any]:
        """Hand out a task: first one whose holder went quiet, else the next unassigned range."""
        with self._lock:
            s = self._live_slices(token)
            task = self._hand_out(s)
            self._dirty.set()
            return _task_fields(s, task)

    def _hand_out(self, s: Session) -> SliceTask | None:
        if s.instant or s.video_id:
            return None
        if not s.slice_length:
            raise YoukuError(FILE_NOT_CREATED, "create_file has not been called for this upload token")
        now = self._clock()
        for task_id, issued in s.issued_at.items():
            if now - issued >= self._options.slice_task_timeout and task_id not in s.receiving:
                s.issued_at[task_id] = now
                return s.tasks[task_id]
        if s.next_offset >= s.meta.file_size:
            return None
        task = SliceTask(s.next_task_id, s.next_offset, min(s.slice_length, s.meta.file_size - s.next_offset))
        s.next_task_id += 1
        s.next_offset += task.length
        s.tasks[task.task_id] = task
        s.issued_at[task.task_id] = now
        return task

    # ---- upload_slice ----

    def begin_slice(self, token: str, task_id: int, offset: int, length: int) -> SlicePlan:
        """Validate an upload_slice against the task handed out and claim it."""
        with self._lock:
            s = self._live_slices(token)
            task = s.tasks.get(task_id)
            if task is None:
                raise YoukuError(SLICE_TASK_MISMATCH, f"slice task {task_id} was not handed out")
            if (offset, length) != (task.offset, task.length):
                handed_out = f"slice task {task_id} is offset {task.offset} length {task.length}"
                raise YoukuError(SLICE_TASK_MISMATCH, f"{handed_out}, not offset {offset} length {length}")
            if task_id in s.received or task_id in s.receiving:
                # A repeat (or a second holder while the first still streams): checked and
                # answered, but never written over bytes already accepted or being written.
                sink = "discard"
            elif not self._options.hash_only:
                sink = "disk"
            elif self._buffered + length <= HASH_ONLY_BUFFER_CAP:
                sink = "memory"
                self._buffered += length
            else:
                sink = "disk"
            if sink != "discard":
                s.receiving.add(task_id)
            return SlicePlan(token, task, sink, self._part(token))

    def abort_slice(self, plan: SlicePlan) -> None:
        """The body never arrived intact: release the claim so the task can be re-issued."""
        with self._lock:
            s = self._sessions.get(plan.token)
            if s is not None and plan.sink != "discard":
                s.receiving.discard(plan.task.task_id)
            if plan.sink == "memory":
                self._buffered -= plan.task.length

    def finish_slice(self, plan: SlicePlan, md5: str, data: bytes | bytearray | None) -> dict[str, Any]:
        """Record a verified slice, feed the whole-file MD5, hand out the next task."""
        digest = None
        tid = plan.task.task_id
        with self._lock:
            s = self._sessions[plan.token]
            if plan.sink != "discard":
                s.receiving.discard(tid)
                if tid not in s.received and not s.dead:
                    s.received[tid] = ReceivedSlice(md5, self._clock())
                    s.received_bytes += plan.task.length
                    s.issued_at.pop(tid, None)
                    s.last_slice_at = self._clock()
                    digest = s.digest
            done = s.all_received
        if digest is not None:
            digest.add(plan.task.offset, plan.task.length, data)
        elif plan.sink == "memory":
            self._release(plan.task.length)
        if done and s.digest is not None:
            s.digest.wait_complete(30.0)  # so the answer to the last slice means "confirmed"
        self._dirty.set()
        return self.next_task(plan.token)

    def _release(self, n: int) -> None:
        with self._lock:
            self._buffered -= n

    # ---- check / commit / cancel / show ----

    def check(self, token: str) -> dict[str, Any]:
        with self._lock:
            s = self._live_slices(token)
            size = s.meta.file_size
            now = self._clock()
            transferred = s.transferred
            delay = self._options.confirm_delay
            confirmed = (
                size if s.instant else sum(s.tasks[t].length for t, r in s.received.items() if now - r.at >= delay)
            )
            timeout = self._options.slice_task_timeout
            stale = sum(1 for t, at in s.issued_at.items() if now - at >= timeout and t not in s.receiving)
            unassigned = -(-(size - s.next_offset) // s.slice_length) if s.slice_length else 1
            if s.instant or s.video_id:
                status = 1
            elif s.next_offset < size or stale:
                status = 4
            elif s.issued_at:
                status = 2
            elif confirmed < size or (s.digest is not None and not s.digest.complete):
                status = 3
            else:
                status = 1
        return {
            "status": status,
            "transferred_percent": transferred * 100 // size,
            "confirmed_percent": confirmed * 100 // size,
            "empty_tasks": (0 if s.instant or s.video_id else unassigned + stale),
            "finished": status == 1,
            "upload_server_ip": upload_server_ip(token),
        }

    def commit(self, token: str, client_id: str, server_ip: str | None = None,
               check_object: Callable[[Session], None] | None = None) -> str:
        """Idempotent: the same upload token always gets the same video id.

        A six-step upload needs `server_ip` equal to what `check` reported; an OSS-flow
        upload needs none, and `check_object` (youku_oss) verifies its object instead."""
        with self._lock:
            s = self._live(token)
            if s.meta.client_id != client_id:
                raise YoukuError(CLIENT_ID_INVALID, "upload token belongs to another client", "SystemException")
            if not s.oss_object:
                if not server_ip:
                    raise YoukuError(PARAM_MISSING, "Necessary parameter missing: upload_server_ip", "SystemException")
                if server_ip != upload_server_ip(token):
                    raise YoukuError(PARAM_INVALID, "Invalid parameter: upload_server_ip is not the server that took "
                                     "this upload (send the upload_server_ip `check` answered)", "SystemException")
            if s.video_id:
                return s.video_id
        if s.oss_object:
            if check_object is None:
                raise YoukuError(SERVICE_EXCEPTION, "Service exception: no OSS bucket", "SystemException", 500)
            check_object(s)
            return self._record_video(s)
        with self._lock:
            if not s.all_received:
                raise YoukuError(UPLOAD_INCOMPLETE, "upload is not complete; check until status is 1")
            if self._clock() - s.last_slice_at < self._options.confirm_delay:
                raise YoukuError(UPLOAD_INCOMPLETE, "slices are not yet confirmed; check until status is 1")
            digest = s.digest
        if not s.instant:
            assert digest is not None
            if not digest.wait_complete(30.0):
                raise YoukuError(UPLOAD_INCOMPLETE, "slices are not yet confirmed; check until status is 1")
            if digest.hexdigest() != s.meta.file_md5:
                raise YoukuError(
                    FILE_MD5_MISMATCH,
                    f"assembled file MD5 {digest.hexdigest()} differs from file_md5 {s.meta.file_md5}",
                )
        return self._record_video(s)

    def _record_video(self, s: Session) -> str:
        """The shared end of a commit: one video id, commits.jsonl, the uploads journal."""
        token = s.token
        with self._save_lock:  # commits.jsonl lines are appended in commit order
            with self._lock:
                if s.video_id:
                    return s.video_id
                if s.dead:  # cancelled while its object was being checked
                    raise YoukuError(UPLOAD_TOKEN_EXPIRED, "Expired upload token")
                duplicate = self._options.duplicate_ids and bool(self._videos)
                video_id = next(reversed(self._videos)) if duplicate else self._unused_video_id()
                s.video_id = video_id
                if not duplicate:
                    self._videos[video_id] = Video(video_id, s.meta, token, self._clock())
                line = self._commit_line(s, None if duplicate else self._videos[video_id])
            if s.oss_object:
                pass  # the bytes stay in the Youku bucket
            elif s.instant or self._options.hash_only:
                self._forget_part(token)  # hash-only mode may have spilled slices there
            else:
                os.replace(self._part(token), self.files / f"{token}.{s.ext}")
            self._append_commits([line])  # durable before the id is answered
        self._journal.record(
            provider="youku",
            remote_id=video_id,
            kind="video",
            size=s.meta.file_size,
            md5=s.meta.file_md5,
            title=s.meta.title,
            upload_token=token,
            flow=s.flow,
            **({"oss_object": s.oss_object} if s.oss_object else {}),
            **({"duplicate_id": True} if duplicate else {}),
        )
        return video_id

    def cancel(self, token: str, client_id: str) -> str:
        """Kill an upload token for good; returns its OSS object key ("" for six-step)."""
        with self._lock:
            s = self._live(token)
            if s.meta.client_id != client_id:
                raise YoukuError(CLIENT_ID_INVALID, "upload token belongs to another client", "SystemException")
            if s.video_id:
                raise YoukuError(
                    ALREADY_COMMITTED, f"upload was committed as video {s.video_id}; it cannot be cancelled"
                )
            s.dead = "cancelled"
        self._forget_part(token)
        self.save()
        return s.oss_object

    def expire(self, token: str) -> str:
        """Forget an upload as the real service does after a day (tests force 120010223);
        returns its OSS object key ("" for six-step or unknown tokens)."""
        with self._lock:
            s = self._sessions.get(token)
            if s is not None and s.video_id is None:
                s.dead = "expired"
        self._forget_part(token)
        self.save()
        return s.oss_object if s is not None and s.video_id is None else ""

    def video(self, video_id: str) -> Video:
        with self._lock:
            v = self._videos.get(video_id)
        if v is None:
            raise YoukuError(VIDEO_NOT_FOUND, "Video clip does not exist", "VideosException")
        return v

    # ---- helpers ----

    def _live(self, token: str) -> Session:
        s = self._sessions.get(token)
        if s is None or s.dead or (s.video_id is None and self._clock() - s.created_at > self._token_ttl):
            raise YoukuError(UPLOAD_TOKEN_EXPIRED, "Expired upload token")
        return s

    def _live_slices(self, token: str) -> Session:
        """A live upload the upload server may serve: an OSS-flow token is not one."""
        s = self._live(token)
        if s.oss_object:
            raise YoukuError(PARAM_INVALID, "Invalid parameter: upload_token belongs to an OSS upload; the upload "
                             "server does not take it", "SystemException")
        return s

    def _unused_video_id(self) -> str:
        while True:
            vid = new_video_id()
            if vid not in self._videos:
                return vid

    def _part(self, token: str) -> Path:
        return self.files / f"{token}.part"

    def _forget_part(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._part(token))

    def _attach_digest(self, s: Session) -> None:
        path = self._part(s.token)

        def read_at(offset: int, length: int) -> Iterator[bytes]:
            fd = os.open(path, os.O_RDONLY)
            try:
                end = offset + length
                while offset < end:
                    block = os.pread(fd, min(BLOCK, end - offset), offset)
                    if not block:
                        raise OSError(f"{path} is shorter than {end} bytes")
                    offset += len(block)
                    yield block
            finally:
                os.close(fd)

        s.digest = RunningMd5(s.meta.file_size, read_at, self._release)

    # ---- persistence ----

    def save(self) -> None:
        """Snapshot under the lock, write outside it; a newer snapshot is never overwritten."""
        with self._save_lock:
            with self._lock:
                self._version += 1
                version = self._version
                snapshot = self._snapshot()
            self._dirty.clear()
            data = json.dumps(snapshot, separators=(",", ":")).encode()
            if version > self._saved_version:
                write_atomic(self._state_path, data)
                self._saved_version = version

    def flush_loop(self, interval: float = 0.25) -> None:
        """Background writer: slice progress is saved within `interval`, not per slice."""
        while not self._stopping.is_set():
            if self._dirty.wait(interval) and not self._stopping.is_set():
                self._stopping.wait(interval)
                self.save()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self.save()

    @staticmethod
    def _commit_line(s: Session, video: Video | None) -> bytes:
        """One committed session (and the video it created, unless it reused an id)."""
        rec: dict[str, Any] = {"token": s.token, "meta": asdict(s.meta), "created_at": s.created_at,
                               "instant": s.instant, "video_id": s.video_id}
        if s.oss_object:
            rec["oss_object"] = s.oss_object
        if video is not None:
            rec["committed_at"] = video.committed_at
        return json.dumps(rec, separators=(",", ":")).encode() + b"\n"

    def _append_commits(self, lines: list[bytes]) -> None:
        """Append and fsync: O(1) per commit, however many videos the sandbox holds (the
        whole-state snapshot used to carry every video, which made each commit O(n))."""
        fd = os.open(self._commits_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _snapshot(self) -> dict[str, Any]:
        """Live sessions only: committed ones are in commits.jsonl."""
        keep_slices = not self._options.hash_only  # hash-only slices have no bytes to resume from
        sessions = {}
        for token, s in self._sessions.items():
            if s.dead or s.video_id:
                continue
            rec: dict[str, Any] = {
                "meta": asdict(s.meta),
                "created_at": s.created_at,
                "instant": s.instant,
                "video_id": s.video_id,
            }
            if s.oss_object:
                rec["oss_object"] = s.oss_object
            if s.video_id is None and s.slice_length:
                tasks = s.tasks.values() if keep_slices else ()
                rec.update(
                    slice_length=s.slice_length,
                    ext=s.ext,
                    next_offset=s.next_offset if keep_slices else 0,
                    next_task_id=s.next_task_id,
                    tasks=[[t.task_id, t.offset, t.length] for t in tasks],
                    received={str(t): [r.md5, r.at] for t, r in s.received.items()} if keep_slices else {},
                )
            sessions[token] = rec
        return {"version": _STATE_VERSION, "sessions": sessions}

    def _load(self) -> None:
        try:
            state = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            state = {}
        # A data dir written before commits.jsonl existed keeps videos in uploads.json: move them over.
        old = [(vid, Video(vid, UploadMeta(**v["meta"]), v["upload_token"], v["committed_at"]))
               for vid, v in state.get("videos", {}).items()]
        now = self._clock()
        for token, rec in state.get("sessions", {}).items():
            s = Session(
                token, UploadMeta(**rec["meta"]), rec["created_at"], instant=rec["instant"], video_id=rec["video_id"],
                oss_object=rec.get("oss_object", ""),
            )
            self._sessions[token] = s
            if s.video_id or not rec.get("slice_length"):
                continue
            s.slice_length, s.ext = rec["slice_length"], rec["ext"]
            s.next_offset, s.next_task_id = rec["next_offset"], rec["next_task_id"]
            s.tasks = {t[0]: SliceTask(*t) for t in rec["tasks"]}
            if self._part(token).exists():  # else the bytes are gone: every task goes out again
                s.received = {int(t): ReceivedSlice(*r) for t, r in rec["received"].items()}
            s.received_bytes = sum(s.tasks[t].length for t in s.received)
            s.issued_at = {t: now for t in s.tasks if t not in s.received}  # holders get a fresh timeout
            self._attach_digest(s)
            assert s.digest is not None
            for t in s.received:
                s.digest.add(s.tasks[t].offset, s.tasks[t].length, None, advance=False)
        self._load_commits(old)

    def _load_commits(self, old: list[tuple[str, Video]]) -> None:
        """Replay commits.jsonl over the loaded sessions; a torn last line (a crash while
        appending, so never answered) is ignored."""
        try:
            lines = self._commits_path.read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        seen: set[str] = set()
        for raw in lines:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            meta = UploadMeta(**rec["meta"])
            seen.add(rec["token"])
            self._sessions[rec["token"]] = Session(rec["token"], meta, rec["created_at"], instant=rec["instant"],
                                                   video_id=rec["video_id"], oss_object=rec.get("oss_object", ""))
            if "committed_at" in rec:
                self._videos[rec["video_id"]] = Video(rec["video_id"], meta, rec["token"], rec["committed_at"])
        for vid, v in old:
            self._videos.setdefault(vid, v)
            if v.upload_token not in self._sessions:
                self._sessions[v.upload_token] = Session(v.upload_token, v.meta, v.committed_at, video_id=vid)
        fresh = [self._commit_line(s, v if v is not None and v.upload_token == s.token else None)
                 for s in self._sessions.values() if s.video_id and s.token not in seen
                 for v in (self._videos.get(s.video_id),)]
        if fresh:
            self._append_commits(fresh)

    def resume_digests(self) -> None:
        """Re-hash what a previous run stored, so commits after a restart are checked too."""
        with self._lock:
            digests = [s.digest for s in self._sessions.values() if s.digest is not None and s.video_id is None]
        for d in digests:
            d.advance()


def _task_fields(s: Session, task: SliceTask | None) -> dict[str, Any]:
    if task is None:
        return {"slice_task_id": 0, "offset": 0, "length": 0, "transferred": s.transferred, "finished": s.all_received}
    return {
        "slice_task_id": task.task_id,
        "offset": task.offset,
        "length": task.length,
        "transferred": s.transferred,
        "finished": False,
    }

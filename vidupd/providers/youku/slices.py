"""The seed's six-step slice flow for one file, resumable across restarts.

create -> (checkpoint) -> create_file -> parallel new_slice/upload_slice (the shared chunk
engine; each slice streamed from the file) -> check until status 1 -> commit. The
checkpoint (upload token, the upload server's resolved IP, the file's MD5 and size, and
whether commit was attempted) is saved before the first byte is sent, so a restart resumes
the same upload instead of creating a second one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

from ...core.errors import CredentialsExpired, FileChanged, PermanentError, TransientError, UploadCancelled
from ...core.model import from_fields
from ...core.source import SourceFile
from ..base import UploadContext, UploadRequest, UploadResult
from ..part_body import PartBody, hash_range
from ..transfer import ForwardProgress, run_chunks
from .api import CheckResult, CreateResult, SliceTask
from .steps import retry_step, with_token
from .wire import SLICE_LENGTH_KB, UploadTokenExpired

if TYPE_CHECKING:
    from .provider import YoukuProvider

T = TypeVar("T")

CHECKPOINT_VERSION = 1


FIRST_CONFIRM_WAIT = 0.5  # seconds before the first re-check while Youku confirms slices


@dataclass(frozen=True)
class Checkpoint:
    """Resume state of one upload; JSON in the job's checkpoint store. Holds no OAuth token:
    the upload token is scoped to this one upload and is what resuming needs."""

    upload_token: str = field(repr=False)
    server: str  # the upload server resolved once: "ip[:port]" ("[v6]:port" for IPv6)
    md5: str
    size: int
    identity: Mapping[str, int]
    created: float
    file_created: bool = False
    instant: bool = False
    upload_server_ip: str = ""  # from the last `check`, needed by commit
    committing: bool = False  # commit was sent at least once: never `create` again silently
    video_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), version=CHECKPOINT_VERSION, provider="youku", protocol="slices")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Checkpoint | None":
        """None when the stored value is not a usable version-1 Youku checkpoint."""
        if data.get("version") != CHECKPOINT_VERSION or data.get("provider") != "youku":
            return None
        if data.get("protocol", "slices") != "slices":  # older checkpoints name none: all were slices
            return None
        cp = from_fields(cls, data)
        if cp is None:
            return None
        if not cp.upload_token or not cp.server or not isinstance(cp.size, int):
            return None
        return cp


def unless_none_left(task: SliceTask) -> SliceTask | None:
    """The task, or None when the server says no slice is left."""
    return None if task.none_left else task


class SliceUpload:
    """One pass over the protocol for one file; `state` mirrors the saved checkpoint."""

    def __init__(self, provider: "YoukuProvider", request: UploadRequest, ctx: UploadContext, src: SourceFile):
        self.p = provider
        self.api = provider.api
        self.cfg = provider.config
        self.request = request
        self.ctx = ctx
        self.src = src
        self.state: Checkpoint | None = None
        # True once a commit may have reached the server (an earlier run sent one, or a try
        # failed without an answer): an expired token then must not lead to a new create.
        self.commit_ambiguous = False
        self.recorded = False  # the upload token is in the shared checkpoint (another host can resume it)
        self._report = ForwardProgress(ctx.progress, request.size)  # parallel answers arrive in any order

    # ---- the flow -------------------------------------------------------------------

    def execute(self, created: CreateResult | None = None) -> UploadResult:
        """Resume the checkpointed upload, else start one (from `created`, the answer of a
        create the caller already made, if given)."""
        self.state = self._load()
        if self.state is not None and self.state.video_id:
            return self._done(self.state.video_id)  # committed before a crash: report, never redo
        if self.state is None:
            self._create(created)
        elif self.state.committing and self.state.upload_server_ip:
            return self._commit()  # the daemon died during commit: commit again, same token
        fresh = not self._st.file_created and not self._st.instant
        if fresh:
            self._create_file()
        self._wait_until_complete(send_first=fresh)
        return self._commit()

    def _load(self) -> Checkpoint | None:
        data = self.ctx.checkpoint.load()
        if not data:
            return None
        cp = Checkpoint.from_json(data)
        if cp is not None and cp.md5 == self.request.md5 and cp.size == self.request.size:
            return cp
        self.ctx.checkpoint.clear()
        self.ctx.note("upload.restarted", "checkpoint is for other content; starting over", reason="content changed")
        return None

    def _save(self, **changes: Any) -> None:
        assert self.state is not None
        self.state = dataclasses.replace(self.state, **changes)
        self.ctx.checkpoint.save(self.state.to_json())

    def _create(self, created: CreateResult | None = None) -> None:
        if created is None:
            params = self.p.create_params(self.request)
            answer = self._with_token("create", lambda at: self.api.create(at, params))
            if not isinstance(answer, CreateResult):
                raise PermanentError("youku create: the server answered a six-step create with an OSS grant")
            created = answer
        server = self._retry("resolve", lambda: resolve_upload_server(created.upload_server_uri))
        ident = self.request.identity
        self.state = Checkpoint(
            upload_token=created.upload_token, server=server, md5=self.request.md5, size=self.request.size,
            identity={"dev": ident.dev, "inode": ident.inode, "size": ident.size, "mtime_ns": ident.mtime_ns},
            created=time.time(), instant=created.instant_upload_ok)
        self.ctx.checkpoint.save(self.state.to_json())  # before any byte goes out
        self.recorded = True
        if created.instant_upload_ok:
            self.ctx.note("upload.instant", "Youku already holds this content; skipping the transfer")

    def _create_file(self) -> None:
        st = self._st
        ext = self.request.path.suffix.lstrip(".").lower()
        self._retry("create_file", lambda: self.api.create_file(st.server, st.upload_token, self.request.size, ext))
        self._save(file_created=True)

    def _wait_until_complete(self, send_first: bool = False) -> CheckResult:
        """check until status 1: send slices on 4, back off (bounded) on 2/3.

        `send_first`: the file was just created, so nothing can have been sent yet and the
        first check could only say 4; the slices go out at once (one round trip less)."""
        st = self._st
        deadline = time.monotonic() + self.cfg.confirm_timeout
        delay = min(FIRST_CONFIRM_WAIT, self.cfg.confirm_wait)
        if send_first:
            self._send_slices()
        while True:
            result = self._retry("check", lambda: self.api.check(st.server, st.upload_token))
            self._report(result.transferred_percent * self.request.size // 100)
            if result.status == 1:
                self._report(self.request.size)
                if result.upload_server_ip and result.upload_server_ip != self._st.upload_server_ip:
                    # kept in memory only: _commit saves it (with committing=True) before
                    # anything else happens; a restart in between checks again and learns it anew
                    self.state = dataclasses.replace(self._st, upload_server_ip=result.upload_server_ip)
                return result
            if result.status == 4:
                if not self._st.file_created:  # an "instant" upload the server wants bytes for after all
                    self._create_file()
                if self._send_slices():
                    delay = min(FIRST_CONFIRM_WAIT, self.cfg.confirm_wait)
                    continue
            self.ctx.note("upload.waiting", f"Youku has not confirmed the upload yet (status {result.status})",
                          status=result.status, transferred_percent=result.transferred_percent,
                          confirmed_percent=result.confirmed_percent, wait_seconds=round(delay, 3))
            if time.monotonic() + delay > deadline:
                raise TransientError(f"youku: upload not confirmed within {self.cfg.confirm_timeout:g}s "
                                     f"(status {result.status})")
            if self.ctx.cancel.wait(delay):
                raise UploadCancelled("stopping while Youku confirms the upload")
            delay = min(delay * 2, self.cfg.confirm_wait)

    def _commit(self) -> UploadResult:
        st = self._st
        ip = st.upload_server_ip or split_host_port(st.server)[0]
        self.commit_ambiguous = st.committing
        self._save(upload_server_ip=ip, committing=True)

        def commit(access_token: str) -> str:
            self.ctx.ensure_held()  # each try: the job may have been taken over since the save above
            try:
                return self.api.commit(access_token, st.upload_token, ip)
            except CredentialsExpired:
                raise  # rejected before anything happened
            except TransientError:
                self.commit_ambiguous = True
                raise

        return self._done(self._with_token("commit", commit))

    def _done(self, video_id: str) -> UploadResult:
        self.ctx.remote_id_known(video_id, "video")
        if self._st.video_id != video_id:
            self._save(video_id=video_id)
        self._report(self.request.size)
        link = self.p.link_for(video_id)
        return UploadResult(video_id, "video", {"link": link} if link else {})

    # ---- slices ---------------------------------------------------------------------

    def _send_slices(self) -> int:
        """Upload every slice the server hands out, `slice_concurrency` at a time (the
        transfer engine runs the workers); returns how many slices went out."""
        # No more workers than the file has slices: each one asks new_slice first, so idle
        # extra ones only cost round trips (a small file has one slice: no thread at all).
        return run_chunks(self._first_slice, self._send_slice, concurrency=self.cfg.slice_concurrency,
                          chunks=-(-self.request.size // (SLICE_LENGTH_KB * 1024)), cancel=self.ctx.cancel,
                          name=f"youku-{self.request.job_id}", unit="slices", restart=(UploadTokenExpired,))

    def _first_slice(self, stop: threading.Event) -> SliceTask | None:
        """A worker's first slice task, from new_slice (None: the server needs none)."""
        st = self._st
        return unless_none_left(self._retry("new_slice", lambda: self.api.new_slice(st.server, st.upload_token),
                                             stop))

    def _send_slice(self, task: SliceTask, stop: threading.Event) -> SliceTask | None:
        """Send one slice; the answer is the next slice task the server hands this worker."""
        st = self._st
        size = self.request.size
        if task.offset < 0 or task.length <= 0 or task.offset + task.length > size:
            raise PermanentError(f"youku new_slice: slice {task.offset}+{task.length} lies outside the "
                                 f"{size}-byte file")
        # The slice's MD5 goes in the query, before the body: from the pool's pass when it ran,
        # else one read of the slice to hash it. The body is then streamed from the file (a
        # fresh read on every try); FileChanged / UploadCancelled escape while it is sent.
        known = self.request.digests.piece(task.offset, task.length, size) if self.request.digests else None
        body: Callable[[], bytes | PartBody] = lambda: PartBody(self.src, task.offset, task.length, crc=False)
        if known:
            digest = known
        elif task.length <= SLICE_LENGTH_KB * 1024:
            # Upload servers decide slice lengths (not the 2 MiB pieces hashed beforehand): a
            # slice no longer than what we asked for is read once, hashed and sent from memory
            # (at most slice_concurrency such buffers), not read twice.
            data = self.src.read_at(task.offset, task.length)
            if len(data) != task.length:
                raise FileChanged(f"{self.src.path} became shorter while it was being uploaded")
            digest, body = hashlib.md5(data).hexdigest(), lambda: data
        else:
            digest = hash_range(self.src, task.offset, task.length)[0]
        answer = self._retry("upload_slice",
                             lambda: self.api.upload_slice(st.server, st.upload_token, task, body(), digest),
                             stop)
        self._report(answer.transferred)
        return unless_none_left(answer)

    # ---- helpers --------------------------------------------------------------------

    @property
    def _st(self) -> Checkpoint:
        assert self.state is not None
        return self.state

    def _retry(self, step: str, fn: Callable[[], T], cancel: threading.Event | None = None) -> T:
        return retry_step(self.ctx, step, fn, cancel)

    def _with_token(self, step: str, fn: Callable[[str], T]) -> T:
        return with_token(self.p.tokens, self.ctx, step, fn)


def split_host_port(uri: str) -> tuple[str, int | None]:
    """`upload_server_uri` is a host name, optionally with ":port" (or a URL, to be lenient)."""
    parts = urlsplit(uri if "//" in uri else f"//{uri}")
    try:
        port = parts.port
    except ValueError:
        raise PermanentError("youku create: upload_server_uri has an invalid port") from None
    if not parts.hostname:
        raise PermanentError("youku create: upload_server_uri has no host")
    return parts.hostname, port


def resolve_upload_server(uri: str) -> str:
    """Resolve the upload server once to "ip[:port]"; the seed requires the same IP throughout."""
    host, port = split_host_port(uri)
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise TransientError(f"youku: cannot resolve the upload server ({e.strerror})") from None
    if not infos:
        raise TransientError("youku: the upload server resolved to no address")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as the stock client
    ip = str(infos[0][4][0])
    shown = f"[{ip}]" if ":" in ip else ip
    return f"{shown}:{port}" if port else shown

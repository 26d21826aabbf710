"""The provider interface: what a platform backend gets and what it returns.

A provider knows its wire protocol and nothing else: not the watcher, the ledger schema
or how events are rendered. It receives an `UploadRequest` (what to send) and an
`UploadContext` (checkpoint store, source reader with the shared throttle, progress,
cancel signal, the "remote id is known" hook) and returns an `UploadResult`, or raises one
of `vidupd.errors` (TransientError, CredentialsExpired, PermanentError).
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Mapping, Protocol

import fastcrc

from ..errors import FileChanged, PermanentError, TransientError, UploadCancelled
from ..retry import RetryPolicy
from ..safe_open import open_regular
from ..throttle import Throttle

KINDS = ("video", "image", "attached", "url_pull")
REMOTE_KINDS = ("video", "image", "attached", "url_pull", "registered")

REQUIRED: Any = object()  # marker: an Option without a default must be given


@dataclass(frozen=True)
class Option:
    """One config key: its type, default, whether it is a secret, and the values it may
    take. The constraints are declared here so the config loader refuses a value the
    platform would refuse at every upload (or that a provider would have to bend)."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()  # the only values allowed (case-insensitive; the declared spelling is kept)
    minimum: float | None = None  # numbers: the smallest value allowed
    maximum: float | None = None  # numbers: the largest value allowed
    positive: bool = False  # numbers: must be > 0 (a timeout of 0 means no time at all)

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(the value to use, what is wrong with it or None), for a value of the right type.
        A secret's value is never quoted in the message."""
        shown = "" if self.secret else f", not {value!r}"
        if self.choices and isinstance(value, str):
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice, None
            return value, f"must be one of {', '.join(self.choices)}{shown}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return value, None
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not low <= value <= high:
            return value, f"must be between {_number(low)} and {_number(high)}{shown}"
        if low is not None and value < low:
            return value, f"must be at least {_number(low)}{shown}"
        if high is not None and value > high:
            return value, f"must be at most {_number(high)}{shown}"
        if self.positive and value <= 0:
            return value, f"must be greater than 0{shown}"
        return value, None


def option_value(provider: str, options: Mapping[str, "Option"], settings: Mapping[str, Any], key: str) -> Any:
    """settings[key] (None or absent: the default), held to its Option as the config loader
    holds it: a provider built from settings that did not come through it (a test, a tool)
    refuses the same values, rather than bending them."""
    spec = options[key]
    value = settings.get(key)
    if value is None:
        if spec.default is REQUIRED:
            raise PermanentError(f"{provider}: option {key!r} is required")
        return spec.default
    value, problem = spec.check(value)
    if problem:
        raise PermanentError(f"{provider}: {key} {problem}")
    return value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Metadata:
    """What the platform is told about a file (from the sidecar, else defaults)."""

    title: str
    description: str = ""
    tags: tuple[str, ...] = ()
    category: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific sidecar keys


@dataclass(frozen=True)
class FileIdentity:
    """What makes 'the same file' on disk: a change to any field means new content."""

    dev: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


HashKind = Literal["md5", "crc64"]


@dataclass(frozen=True)
class ContentHash:
    """What identifies a file's content (resume checks, duplicate detection, the ledger's
    content column): its whole-file MD5 (platforms that declare it, Youku) or CRC-64
    (`Provider.needs_md5` false: ~20x cheaper), and the piece MD5s of the same pass when the
    provider asked for them (`Provider.piece_size`) and the pass ran in this process."""

    kind: HashKind
    value: str  # lower-case hex
    pieces: "Digests | None" = None

    def __post_init__(self) -> None:
        if self.kind not in ("md5", "crc64"):
            raise ValueError(f"unknown content hash kind {self.kind!r}")

    @property
    def fingerprint(self) -> str:
        """The one-string form kept in the ledger: the MD5, or "crc64:HEX"."""
        return self.value if self.kind == "md5" else f"{self.kind}:{self.value}"

    @property
    def md5(self) -> str | None:
        """The whole file's hex MD5; None for another kind."""
        return self.value if self.kind == "md5" else None

    @classmethod
    def from_fingerprint(cls, text: str) -> "ContentHash":
        """The value of a `fingerprint` string (as the ledger holds it); no pieces."""
        kind, sep, value = text.partition(":")
        return cls("crc64", value) if sep and kind == "crc64" else cls("md5", text)


@dataclass(frozen=True)
class UploadRequest:
    job_id: int
    path: Path
    kind: str  # one of KINDS
    identity: FileIdentity
    # The content hash computed once by the pool (see ContentHash); None: not hashed before
    # sending (the provider checks what it sends part by part).
    content: ContentHash | None
    metadata: Metadata
    # Files that travel with this one, by role: {"cover": Path} for a same-stem image next to
    # a video, for providers with the TakesCovers feature (the image then has no job of its own).
    companions: Mapping[str, Path] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.identity.size

    # Conveniences derived from `content`, for providers that read one form of it.
    @property
    def md5(self) -> str | None:
        """Hex MD5 of the whole file; None unless `content` is an MD5."""
        return self.content.md5 if self.content is not None else None

    @property
    def fingerprint(self) -> str:
        """`content` as one string (the MD5, or "crc64:HEX"); "" when there is none."""
        return self.content.fingerprint if self.content is not None else ""

    @property
    def digests(self) -> "Digests | None":
        """Piece MD5s from the pool's hashing pass; None: hash pieces yourself."""
        return self.content.pieces if self.content is not None else None


@dataclass(frozen=True)
class UploadResult:
    remote_id: str
    remote_kind: str  # one of REMOTE_KINDS
    details: Mapping[str, str] = field(default_factory=dict)  # e.g. a URL; never secrets
    content_id: str | None = None  # "crc64:HEX" the provider computed while sending, when it was not hashed before


@dataclass(frozen=True)
class MediaStatus:
    """Where the platform is with a committed media object."""

    state: str  # "pending" | "ready" | "failed"
    detail: str = ""
    # Ids that exist only once processing finished (a URL pull's MediaId): logged with media.ready.
    remote_ids: tuple[str, ...] = ()


class CheckpointStore(Protocol):
    """Durable, job-scoped resume state. `save` is atomic: after a crash, `load` returns
    the last saved value. Values are JSON-serialisable dicts and must hold no secrets."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class SharedValue:
    """A value every process using the same ledger sees; `generation` grows by one per write."""

    generation: int
    data: Mapping[str, Any] = field(repr=False)


class SharedStore(Protocol):
    """Small values shared by every process (and, on a shared ledger, every host) that uses
    the same ledger: OAuth tokens that rotate on refresh, so one process's refresh does not
    leave the others holding a dead token. Values may be secrets: they are kept apart from
    jobs and never shown. Keys are chosen by the provider."""

    def load(self, key: str) -> SharedValue | None: ...

    def update(self, key: str,
               change: Callable[[SharedValue | None], Mapping[str, Any] | None]) -> SharedValue | None:
        """Call `change` with the newest value while holding the key's lock, which excludes
        every other process; store what it returns (generation + 1), or nothing if it
        returns None. Returns the value stored afterwards. Exceptions from `change` pass
        through and nothing is written."""
        ...


class SourceFile:
    """Reads the file being uploaded through the shared throttle, checking on every read
    that it has not changed since the job was queued and that the daemon is not stopping."""

    def __init__(self, path: Path, identity: FileIdentity, throttle: Throttle, cancel: threading.Event):
        self.path = path
        self.identity = identity
        self._throttle = throttle
        self._cancel = cancel
        self._fd = open_regular(path)  # NotRegularFile for a FIFO (would block) or a directory
        try:
            self._check()
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def size(self) -> int:
        return self.identity.size

    def _check(self) -> None:
        if FileIdentity.of(os.fstat(self._fd)) != self.identity:
            raise FileChanged(f"{self.path} changed while it was being uploaded")

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset` (short only at end of file)."""
        if self._cancel.is_set():
            raise UploadCancelled("stopping")
        self._throttle.take(length, self._cancel)
        data = os.pread(self._fd, length, offset)
        if len(data) < length and offset + len(data) < self.size:
            chunks = [data]
            got = len(data)
            while got < length:
                more = os.pread(self._fd, length - got, offset + got)
                if not more:
                    break
                chunks.append(more)
                got += len(more)
            data = b"".join(chunks)
        self._check()
        return data

    def iter_blocks(self, offset: int, length: int, block: int = 1 << 20):
        """Yield consecutive blocks covering [offset, offset+length)."""
        end = min(offset + length, self.size)
        while offset < end:
            n = min(block, end - offset)
            yield self.read_at(offset, n)
            offset += n

    def read_into(self, offset: int, view: memoryview) -> int:
        """Fill `view` with the bytes at `offset` (short only at end of file); returns how many.
        The same checks as `read_at`, without allocating."""
        if self._cancel.is_set():
            raise UploadCancelled("stopping")
        self._throttle.take(len(view), self._cancel)
        got = 0
        while got < len(view):
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if not n:
                break
            got += n
        self._check()
        return got

    def iter_views(self, offset: int, length: int, block: int = 1 << 20,
                   buffers: "list[memoryview] | None" = None) -> Iterator[memoryview]:
        """Like `iter_blocks`, but every block is read into one reused buffer (or, with
        `buffers`, into each of them in turn): a view is valid only until the next is asked
        for (until that buffer's turn comes again). Streaming and hashing this way allocate
        nothing per block, so memory stays flat however big the file (freed blocks would
        otherwise pile up in the allocator's per-thread arenas)."""
        end = min(offset + length, self.size)
        if buffers is None:
            buffers = [memoryview(bytearray(max(0, min(block, end - offset))))]
        turn = 0
        while offset < end:
            buf = buffers[turn % len(buffers)]
            turn += 1
            got = self.read_into(offset, buf[:min(len(buf), end - offset)])
            if not got:
                return
            yield buf[:got]
            offset += got

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "SourceFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class UploadContext:
    """Everything a provider may use besides the request itself."""

    checkpoint: CheckpointStore
    progress: Callable[[int], None]  # cumulative bytes the platform has acknowledged
    remote_id_known: Callable[[str, str], None]  # (remote_id, remote_kind): log and record it now
    # note(action, message, **fields): a notable step worth an event, e.g.
    # note("upload.restarted", "upload token expired; starting over", reason="120010223").
    note: Callable[..., None]
    cancel: threading.Event
    throttle: Throttle
    retry: RetryPolicy

    def open_source(self, request: UploadRequest) -> SourceFile:
        return SourceFile(request.path, request.identity, self.throttle, self.cancel)


class Provider(ABC):
    """A platform backend. Subclasses declare `name`, `options`, `kinds`, and their optional
    features as mixins of `vidupd.providers.features` (Resumable, ReportsStatus, ...)."""

    name: ClassVar[str]
    options: ClassVar[Mapping[str, Option]]
    kinds: ClassVar[frozenset[str]] = frozenset({"video"})
    # Size of the pieces whose MD5s the provider sends (Youku: its 2 MiB slices): the pool
    # computes them in the same pass as the whole-file MD5. None: not needed.
    piece_size: ClassVar[int | None] = None
    # Whether the platform needs the whole file's MD5 (Youku's create does). If not, the pool
    # fingerprints content with CRC-64 instead: ~20x cheaper than an MD5 pass.
    needs_md5: ClassVar[bool] = True

    def __init__(self, target: str, settings: Mapping[str, Any], state_dir: Path,
                 shared: SharedStore | None = None):
        """`settings` holds this provider's validated options (secrets as `Secret`);
        `state_dir` is a private directory for this target (scratch files and the like);
        `shared` keeps what every process must see alike (rotating tokens): the ledger's.
        A provider that needs it refuses to start without it."""
        self.target = target
        self.settings = settings
        self.state_dir = state_dir
        self.shared = shared

    @abstractmethod
    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        """Send the file, resuming from `ctx.checkpoint` if it holds state."""

    @classmethod
    def settings_problems(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(key, message) for options that are each valid but cannot work together; the
        config loader reports them as FILE: targets.NAME.KEY, so check-config refuses them."""
        return []

    def close(self) -> None:
        """Release sessions and threads."""


@dataclass(frozen=True)
class Digests:
    """One read pass: the whole file's MD5 and, if asked, the MD5 of each aligned piece."""

    md5: str
    piece_size: int | None = None
    pieces: tuple[str, ...] = ()

    def piece(self, offset: int, length: int, file_size: int) -> str | None:
        """The precomputed MD5 of [offset, offset+length), if that is exactly one piece."""
        if not self.piece_size or offset % self.piece_size:
            return None
        i = offset // self.piece_size
        if i >= len(self.pieces) or length != min(self.piece_size, file_size - offset):
            return None
        return self.pieces[i]


def most_telling(errors: list[BaseException], restart: tuple[type[BaseException], ...] = ()) -> BaseException:
    """Of the errors several part/slice threads raised, the one that explains the others:
    a changed file, then the provider's "start over" errors, then permanent ones, then
    transient ones; a cancellation only if nothing else went wrong."""

    def rank(e: BaseException) -> int:
        if isinstance(e, FileChanged):
            return 0
        if restart and isinstance(e, restart):
            return 1
        if isinstance(e, UploadCancelled):
            return 4
        if isinstance(e, TransientError):
            return 3
        return 2

    return min(errors, key=rank)


def md5_file(path: Path, identity: FileIdentity, throttle: Throttle | None = None,
             cancel: threading.Event | None = None, block: int = 4 << 20, piece_size: int | None = None) -> Digests:
    """Hex MD5 of a whole file in one pass (hashlib releases the GIL on large blocks); the
    MD5 pass behind `content_hash`.

    With `piece_size`, the MD5 of every aligned piece too (e.g. Youku's 2 MiB slices),
    hashed on a second thread while this one hashes the whole: both cores work during
    the pass, and the upload later sends those pieces without hashing them again."""
    whole = hashlib.md5()
    pieces: list[str] = []
    if piece_size:
        block = max(piece_size, block // piece_size * piece_size)
    # A file of one block has nothing to overlap: its pieces are hashed inline, without
    # starting (and joining) a thread for every small file.
    hasher = ThreadPoolExecutor(1, thread_name_prefix="piece-md5") if piece_size and identity.size > block else None
    pending: deque[Future[list[str]]] = deque()
    # Reused buffers: the one being read plus the (at most two) the piece thread still hashes.
    buffers = [memoryview(bytearray(min(block, identity.size))) for _ in range(3 if hasher else 1)]
    try:
        with SourceFile(path, identity, throttle or Throttle(None), cancel or threading.Event()) as src:
            for chunk in src.iter_views(0, identity.size, block, buffers):
                if piece_size and hasher is None:
                    pieces += _piece_md5s(chunk, piece_size)
                elif hasher is not None:
                    assert piece_size
                    if len(pending) >= 2:  # bounded: at most a few blocks in memory, however big the file
                        pieces += pending.popleft().result()
                    pending.append(hasher.submit(_piece_md5s, chunk, piece_size))
                whole.update(chunk)
        while pending:
            pieces += pending.popleft().result()
    finally:
        if hasher is not None:
            hasher.shutdown(wait=True, cancel_futures=True)
    return Digests(whole.hexdigest(), piece_size, tuple(pieces))


def content_hash(path: Path, identity: FileIdentity, kind: HashKind, cancel: threading.Event | None = None,
                 piece_size: int | None = None, throttle: Throttle | None = None) -> ContentHash:
    """The file's ContentHash of `kind`, in one read pass: the one way content is hashed.
    For "md5" with `piece_size`, the pieces' MD5s come from the same pass (see md5_file)."""
    if kind == "md5":
        digests = md5_file(path, identity, throttle, cancel, piece_size=piece_size)
        return ContentHash("md5", digests.md5, digests if piece_size else None)
    if kind != "crc64":
        raise ValueError(f"unknown content hash kind {kind!r}")
    value = 0
    with SourceFile(path, identity, throttle or Throttle(None), cancel or threading.Event()) as src:
        for chunk in src.iter_views(0, identity.size, 8 << 20):
            value = fastcrc.crc64.xz(chunk, value)
    return ContentHash("crc64", f"{value:016x}")


def crc64_content_id(path: Path, identity: FileIdentity, cancel: threading.Event | None = None) -> str:
    """"crc64:HEX" of a whole file: a convenience for `content_hash(..., "crc64").fingerprint`."""
    return content_hash(path, identity, "crc64", cancel).fingerprint


def _piece_md5s(chunk: bytes | memoryview, piece_size: int) -> list[str]:
    view = memoryview(chunk)
    return [hashlib.md5(view[i:i + piece_size]).hexdigest() for i in range(0, len(view), piece_size)]

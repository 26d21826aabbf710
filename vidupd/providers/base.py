"""The provider interface: what a platform backend gets and what it returns.

A provider knows its wire protocol and nothing else: not the watcher, the ledger schema
or how events are rendered. It receives an `UploadRequest` (what to send) and an
`UploadContext` (checkpoint store, source reader with the shared throttle, progress,
cancel signal, the "remote id is known" hook) and returns an `UploadResult`, or raises one
of `vidupd.core.errors` (TransientError, CredentialsExpired, PermanentError).
"""

from __future__ import annotations

import math

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol

from ..core.content import ContentHash, Digests
from ..core.errors import FileChanged, PermanentError, TransientError, UploadCancelled
from ..core.model import FileIdentity, Metadata, SharedStore
from ..core.retry import RetryPolicy
from ..core.source import SourceFile
from ..core.throttle import Share, Throttle
from ..core.units import parse_duration

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
    # A duration: the seconds in one bare number (1: seconds; DAY: days). The key then also
    # takes a string with units ("90s", "2m", "1h30m", "90d"), kept in the bare number's unit.
    duration: float = 0.0
    # URLs: the schemes allowed (a value without "://" is a bare host:port and passes)
    schemes: tuple[str, ...] = ()

    @property
    def types(self) -> tuple[type, ...]:
        """The TOML value types the key takes (a duration: also a string with units)."""
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        return kinds + (str,) if self.duration and str not in kinds else kinds

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(the value to use, what is wrong with it or None), for a value of the right type.
        A secret's value is never quoted in the message."""
        shown = "" if self.secret else f", not {value!r}"
        if self.duration and isinstance(value, str):
            try:
                seconds = parse_duration(value, self.duration)
            except ValueError as e:
                return value, str(e)
            if not self.secret:  # a range is in bare numbers: say what the text came to
                shown = f", not {value!r} ({_number(seconds)} s)"
            value = seconds / self.duration
        if self.schemes and isinstance(value, str) and "://" in value:
            if value.split("://", 1)[0].lower() not in self.schemes:
                return value, f"must be a {' or '.join(s + '://' for s in self.schemes)} URL{shown}"
        if self.choices and isinstance(value, str):
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice, None
            return value, f"must be one of {', '.join(self.choices)}{shown}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return value, None
        if isinstance(value, float) and not math.isfinite(value):  # TOML has inf and nan
            return value, f"must be a finite number{shown}"
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
    def content_id(self) -> str:
        """`content` as one string (the MD5, or "crc64:HEX"); "" when there is none."""
        return self.content.content_id if self.content is not None else ""

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
class UploadContext:
    """Everything a provider may use besides the request itself."""

    checkpoint: CheckpointStore
    progress: Callable[[int], None]  # cumulative bytes the platform has acknowledged
    remote_id_known: Callable[[str, str], None]  # (remote_id, remote_kind): log and record it now
    # note(action, message, **fields): a notable step worth an event, e.g.
    # note("upload.restarted", "upload token expired; starting over", reason="120010223").
    note: Callable[..., None]
    cancel: threading.Event
    throttle: Throttle | Share  # the upload's share of the bandwidth caps (vidupd.core.throttle)
    retry: RetryPolicy
    # LeaseLost unless this process still holds the job's lease. Called right before every
    # platform call that changes the upload as a whole (CompleteMultipartUpload,
    # AbortMultipartUpload, Youku's commit and cancel, a new initiate or create after a failed
    # resume): a host that was frozen or cut off past its lease must not complete, abort or
    # replace the upload that another host has taken over and resumed.
    ensure_held: Callable[[], None] = lambda: None

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
    # One line for the config reference (docs/CONFIG.md): what the target sends files to.
    summary: ClassVar[str] = ""

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



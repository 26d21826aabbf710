"""What identifies a file's content, and the one read pass that computes it: a whole-file
MD5 (with the MD5 of each aligned piece from the same pass) or a CRC-64 at SIMD speed."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fastcrc

from .model import FileIdentity
from .source import SourceFile
from .throttle import Throttle

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
    def content_id(self) -> str:
        """The one-string form kept in the ledger: the MD5, or "crc64:HEX"."""
        return self.value if self.kind == "md5" else f"{self.kind}:{self.value}"

    @property
    def md5(self) -> str | None:
        """The whole file's hex MD5; None for another kind."""
        return self.value if self.kind == "md5" else None

    @classmethod
    def from_content_id(cls, text: str) -> "ContentHash":
        """The value of a `content_id` string (as the ledger holds it); no pieces."""
        kind, sep, value = text.partition(":")
        return cls("crc64", value) if sep and kind == "crc64" else cls("md5", text)


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


def _piece_md5s(chunk: bytes | memoryview, piece_size: int) -> list[str]:
    view = memoryview(chunk)
    return [hashlib.md5(view[i:i + piece_size]).hexdigest() for i in range(0, len(view), piece_size)]

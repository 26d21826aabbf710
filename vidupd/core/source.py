"""The one way the file being uploaded is read: through the shared throttle, with a check on
every read that it is still the version queued and that the daemon is not stopping."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from .errors import FileChanged, UploadCancelled
from .model import FileIdentity
from .safe_open import open_regular
from .throttle import Share, Throttle


class SourceFile:
    """Reads the file being uploaded through the shared throttle, checking on every read
    that it has not changed since the job was queued and that the daemon is not stopping."""

    def __init__(self, path: Path, identity: FileIdentity, throttle: Throttle | Share, cancel: threading.Event):
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
            n = self._throttle.block(min(block, end - offset))  # smaller at a low cap, as iter_views
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
            # at a low cap, smaller reads: the bytes then leave evenly, not in 1 MiB bursts
            got = self.read_into(offset, buf[:self._throttle.block(min(len(buf), end - offset))])
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

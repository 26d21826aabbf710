"""One part (OSS) or slice (Youku) of the source file as a streamed HTTP request body.

A part used to be read whole into memory before it was sent, so memory grew with the part
size times the parts in flight (four 256 MiB files to VOD with four workers: ~275 MiB RSS;
part sizes must grow with the file under OSS's 10,000-part limit). A `PartBody` instead
reads its byte range from disk in blocks (1 MiB) while the HTTP client sends it: each
block goes through `SourceFile.read_into` (one reused buffer: nothing allocated per block),
so the shared throttle, cancellation and the file-changed check apply per block, and the
CRC-64 of the bytes actually sent is computed
as they pass (compared with the server's x-oss-hash-crc64ecma after the send). It has a
length (Content-Length is sent: no chunked encoding) and no `read`/`seek`, so requests,
urllib3 and http.client iterate it block by block and oss2 never buffers it. Iterating it
again (a retry) reads the range from disk again. `hash_range` is the pass for the few
cases that need a digest before sending (Content-MD5, an MD5 in Youku's query, ListParts
adoption): blocks again, so memory never depends on part or file size.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Iterator

from ..core.crc64 import crc64
from ..core.errors import FileChanged, TransientError
from ..core.source import SourceFile

BLOCK = 1 << 20
_buffers = threading.local()  # one block buffer per sending thread, reused by every body it sends


def _thread_buffer(size: int) -> memoryview:
    """This thread's block buffer: a fresh bytearray per body would be zero-filled (and
    page-faulted in) for every part, which cost Youku ~0.1 CPU-s per GiB of 2 MiB slices."""
    buf = getattr(_buffers, "view", None)
    if buf is None or len(buf) < size:
        buf = _buffers.view = memoryview(bytearray(size))
    return buf


class PartBody:
    """[offset, offset+length) of `src`, read block by block as it is sent."""

    def __init__(self, src: SourceFile, offset: int, length: int, block: int = BLOCK, crc: bool = True):
        self._src = src
        self._offset = offset
        self._length = length
        self._block = block
        self._with_crc = crc  # False where nothing compares it (Youku checks the MD5 it was sent)
        self.crc = 0  # CRC-64/XZ of the bytes yielded by the last iteration (when asked for)
        self.sent = 0  # bytes yielded by the last iteration

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[memoryview]:
        self.crc = self.sent = 0
        # The clients send each block (sendall) before asking for the next: one buffer will do.
        buffer = _thread_buffer(self._block)[:self._block]  # a view is used up before the next is read
        for data in self._src.iter_views(self._offset, self._length, self._block, [buffer]):
            if self._with_crc:
                self.crc = crc64(data, self.crc)
            self.sent += len(data)
            yield data
        if self.sent != self._length:
            raise FileChanged(f"{self._src.path} became shorter while it was being uploaded")

    def sent_crc(self, what: str) -> int:
        """The CRC-64 of what went out, once all of it did (else the answer is not for it)."""
        if self.sent != self._length:
            raise TransientError(f"{what}: answered after {self.sent} of {self._length} bytes were sent")
        return self.crc


def hash_range(src: SourceFile, offset: int, length: int, block: int = BLOCK) -> tuple[str, int]:
    """(hex MD5, CRC-64) of [offset, offset+length), read in blocks."""
    md5, crc = hashlib.md5(), 0
    for data in src.iter_views(offset, length, block, [_thread_buffer(block)[:block]]):
        md5.update(data)
        crc = crc64(data, crc)
    return md5.hexdigest(), crc


def crc_range(src: SourceFile, offset: int, length: int, block: int = BLOCK) -> int:
    """CRC-64 of [offset, offset+length), read in blocks (checking kept parts on a resume)."""
    crc = 0
    for data in src.iter_views(offset, length, block, [_thread_buffer(block)[:block]]):
        crc = crc64(data, crc)
    return crc

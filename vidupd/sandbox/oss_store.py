"""Disk storage behind the OSS emulation: objects and in-progress multipart uploads.

Layout under `root` (every metadata file is written atomically, so a restarted sandbox
finds each object and each uploaded part either whole or absent):

    objects/<h>.json            ObjectInfo of the key whose sha256 starts with <h>
    objects/<h>.<token>.data    its bytes (a new name per write: readers never see a torn file)
    uploads/<id>/upload.json    the multipart upload (key, content type, start time)
    uploads/<id>/<n>.json       PartInfo of part n; its bytes in <n>.<token>.data
    tmp/                        bodies being received

With `hash_only` no bytes are written, only sizes and digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from .common import BLOCK, write_atomic
from .oss_crc import crc64_combine
from .oss_xml import OssError

MIN_PART_SIZE = 100 * 1024  # every part but the last must be at least this big
MAX_PART_NUMBER = 10_000


@dataclass(frozen=True)
class Digest:
    """What was received: length and digests of one body."""

    size: int
    md5: str | None  # hex; None for a multipart object assembled in hash_only mode
    crc64: int


@dataclass(frozen=True)
class ObjectInfo:
    """A completed object, as HeadObject and the completion hooks see it."""

    key: str
    size: int
    md5: str | None
    crc64: int
    etag: str  # without quotes, upper-case hex (plus -N for multipart objects)
    content_type: str
    last_modified: float
    data_file: str | None  # file name under objects/, None in hash_only mode


@dataclass(frozen=True)
class PartInfo:
    number: int
    size: int
    md5: str
    crc64: int
    etag: str
    last_modified: float
    data_file: str | None


@dataclass
class _Upload:
    key: str
    content_type: str
    initiated: float
    parts: dict[int, PartInfo]
    lock: threading.Lock


def etag_of(md5_hex: str) -> str:
    return md5_hex.upper()


class Staged:
    """A body being received: a temp file (or nothing in hash_only mode)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.sink: BinaryIO | None = open(path, "wb") if path is not None else None

    def close(self) -> None:
        if self.sink is not None and not self.sink.closed:
            self.sink.close()

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class OssStore:
    """Objects and multipart uploads of one bucket; thread-safe."""

    def __init__(self, root: Path, hash_only: bool = False):
        self.hash_only = hash_only
        self._objects_dir = root / "objects"
        self._uploads_dir = root / "uploads"
        self._tmp_dir = root / "tmp"
        for d in (self._objects_dir, self._uploads_dir, self._tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp_dir.iterdir():  # bodies cut off by a previous stop
            with contextlib.suppress(OSError):
                leftover.unlink()
        self._lock = threading.Lock()
        self._objects: dict[str, ObjectInfo] = {}
        self._uploads: dict[str, _Upload] = {}
        self._load()

    # ----- loading -----
    def _load(self) -> None:
        for meta in self._objects_dir.glob("*.json"):
            info = ObjectInfo(**json.loads(meta.read_text(encoding="utf-8")))
            self._objects[info.key] = info
        for udir in self._uploads_dir.iterdir():
            try:
                head = json.loads((udir / "upload.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, NotADirectoryError):
                continue
            parts = {}
            for meta in udir.glob("[0-9]*.json"):
                part = PartInfo(**json.loads(meta.read_text(encoding="utf-8")))
                parts[part.number] = part
            self._uploads[udir.name] = _Upload(head["key"], head["content_type"], head["initiated"], parts,
                                               threading.Lock())

    # ----- objects -----
    def _meta_name(self, key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]

    def stage(self) -> Staged:
        """A place to receive a body into; pass it to commit_* or discard it."""
        if self.hash_only:
            return Staged(None)
        return Staged(self._tmp_dir / f"{secrets.token_hex(12)}.part")

    def commit_object(self, key: str, staged: Staged, digest: Digest, content_type: str) -> ObjectInfo:
        """Make a received body the object at `key` (PutObject)."""
        staged.close()
        return self._install(key, staged.path, digest, etag_of(digest.md5 or ""), content_type)

    def _install(self, key: str, data: Path | None, digest: Digest, etag: str, content_type: str) -> ObjectInfo:
        name = self._meta_name(key)
        data_file = None
        if data is not None:
            data_file = f"{name}.{secrets.token_hex(6)}.data"
            os.replace(data, self._objects_dir / data_file)
        info = ObjectInfo(key, digest.size, digest.md5, digest.crc64, etag, content_type, time.time(), data_file)
        with self._lock:
            old = self._objects.get(key)
            write_atomic(self._objects_dir / f"{name}.json", json.dumps(asdict(info)).encode("utf-8"))
            self._objects[key] = info
        if old is not None and old.data_file and old.data_file != data_file:
            with contextlib.suppress(FileNotFoundError):
                (self._objects_dir / old.data_file).unlink()  # open readers keep their handle
        return info

    def head(self, key: str) -> ObjectInfo | None:
        with self._lock:
            return self._objects.get(key)

    def data_path(self, info: ObjectInfo) -> Path | None:
        return self._objects_dir / info.data_file if info.data_file else None

    def default_path(self, key: str) -> Path:
        """Where `key`'s bytes would be if it existed (for callers that want a path anyway)."""
        return self._objects_dir / f"{self._meta_name(key)}.data"

    def delete(self, key: str) -> None:
        with self._lock:
            info = self._objects.pop(key, None)
            if info is None:
                return
            with contextlib.suppress(FileNotFoundError):
                (self._objects_dir / f"{self._meta_name(key)}.json").unlink()
        if info.data_file:
            with contextlib.suppress(FileNotFoundError):
                (self._objects_dir / info.data_file).unlink()

    # ----- multipart uploads -----
    def initiate(self, key: str, content_type: str) -> str:
        upload_id = secrets.token_hex(16).upper()
        udir = self._uploads_dir / upload_id
        udir.mkdir()
        now = time.time()
        head = {"key": key, "content_type": content_type, "initiated": now}
        write_atomic(udir / "upload.json", json.dumps(head).encode("utf-8"))
        with self._lock:
            self._uploads[upload_id] = _Upload(key, content_type, now, {}, threading.Lock())
        return upload_id

    def _upload(self, upload_id: str, key: str) -> _Upload:
        with self._lock:
            up = self._uploads.get(upload_id)
        if up is None or up.key != key:
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, "
                           "or the upload may have been aborted or completed.", UploadId=upload_id)
        return up

    def check_upload(self, upload_id: str, key: str) -> None:
        self._upload(upload_id, key)

    def commit_part(self, upload_id: str, key: str, number: int, staged: Staged, digest: Digest) -> PartInfo:
        staged.close()
        up = self._upload(upload_id, key)
        udir = self._uploads_dir / upload_id
        with up.lock:
            if upload_id not in self._uploads:  # completed or aborted while the body arrived
                raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", UploadId=upload_id)
            data_file = None
            if staged.path is not None:
                data_file = f"{number:05d}.{secrets.token_hex(6)}.data"
                os.replace(staged.path, udir / data_file)
            assert digest.md5 is not None
            part = PartInfo(number, digest.size, digest.md5, digest.crc64, etag_of(digest.md5), time.time(), data_file)
            write_atomic(udir / f"{number:05d}.json", json.dumps(asdict(part)).encode("utf-8"))
            old = up.parts.get(number)
            up.parts[number] = part
        if old is not None and old.data_file and old.data_file != data_file:
            with contextlib.suppress(FileNotFoundError):
                (udir / old.data_file).unlink()
        return part

    def list_parts(self, upload_id: str, key: str) -> list[PartInfo]:
        up = self._upload(upload_id, key)
        with up.lock:
            return sorted(up.parts.values(), key=lambda p: p.number)

    def abort(self, upload_id: str, key: str) -> None:
        up = self._upload(upload_id, key)
        with up.lock:
            with self._lock:
                self._uploads.pop(upload_id, None)
            shutil.rmtree(self._uploads_dir / upload_id, ignore_errors=True)

    def complete(self, upload_id: str, key: str, wanted: list[tuple[int, str]],
                 expect_crc: int | None = None) -> ObjectInfo:
        """Check the client's part list (and CRC, if sent) against what arrived, then build the object."""
        up = self._upload(upload_id, key)
        with up.lock:
            if upload_id not in self._uploads:
                raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", UploadId=upload_id)
            parts = self._chosen_parts(up, wanted)
            udir = self._uploads_dir / upload_id
            crc = parts[0].crc64
            for p in parts[1:]:
                crc = crc64_combine(crc, p.crc64, p.size)
            if expect_crc is not None and expect_crc != crc:
                raise OssError(400, "InvalidDigest", "The CRC64 you specified does not match the object.",
                               ClientCRC=str(expect_crc), ServerCRC=str(crc))
            size = sum(p.size for p in parts)
            etag = hashlib.md5(b"".join(bytes.fromhex(p.md5) for p in parts)).hexdigest().upper() + f"-{len(parts)}"
            data, md5 = None, None
            if not self.hash_only:
                data, md5 = self._assemble(udir, parts)
            info = self._install(key, data, Digest(size, md5, crc), etag, up.content_type)
            with self._lock:
                self._uploads.pop(upload_id, None)
            shutil.rmtree(udir, ignore_errors=True)
        return info

    @staticmethod
    def _chosen_parts(up: _Upload, wanted: list[tuple[int, str]]) -> list[PartInfo]:
        numbers = [n for n, _ in wanted]
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts list must "
                           "be specified in order by part number.")
        chosen = []
        for number, etag in wanted:
            part = up.parts.get(number)
            if part is None or part.etag.upper() != etag.upper():
                raise OssError(400, "InvalidPart", "One or more of the specified parts could not be found or the "
                               "specified entity tag might not have matched the part's entity tag.",
                               PartNumber=str(number), ETag=etag)
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.",
                               PartNumber=str(part.number), MinSizeAllowed=str(MIN_PART_SIZE))
        return chosen

    def _assemble(self, udir: Path, parts: list[PartInfo]) -> tuple[Path, str]:
        """Concatenate the parts into one temp file, hashing the whole object on the way."""
        out = self._tmp_dir / f"{secrets.token_hex(12)}.part"
        md5 = hashlib.md5()
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        with open(out, "wb") as dst:
            for p in parts:
                assert p.data_file is not None
                with open(udir / p.data_file, "rb", buffering=0) as src:
                    while n := src.readinto(buf):
                        md5.update(view[:n])
                        dst.write(view[:n])
        return out, md5.hexdigest()

    def incomplete_uploads(self) -> Iterator[tuple[str, str]]:
        with self._lock:
            items = list(self._uploads.items())
        for upload_id, up in items:
            yield upload_id, up.key

"""Sending one file to OSS: PutObject for small files, parallel multipart for big ones.

Parts are streamed from the file to the socket (`PartBody`: 1 MiB blocks, so memory does not
depend on the part size) by the transfer engine's `concurrency` workers, their CRC-64 taken
as the bytes pass and checked against x-oss-hash-crc64ecma, and recorded in the caller's
checkpoint as each one completes; Complete is checked against the CRC combined from the
parts, and when Complete's answer was lost (NoSuchUpload on a retry) HeadObject tells whether
the object is ours. Credentials are the `StsKeeper`'s, renewed for all threads at once, and
the SAME multipart upload continues. A resumed upload reconciles its checkpoint with
ListParts: parts the server holds that the checkpoint missed (the process died between the
server's answer and the save) are adopted when their ETag equals the MD5 of our bytes.

OSS checks each part only against the digest sent with it, so a file rewritten with its
size and mtime kept would be completed as a mix of old and new parts. With a fingerprint
(the CRC-64 or MD5 taken when the job was hashed) the content is checked against it before
PutObject and Complete; without one, the parts kept from the checkpoint are read again
and checked against their recorded CRC-64 on a resume. Either way a difference raises
ContentMismatch, and the whole-file CRC-64 (`content_id`) comes from the parts' CRCs.

Takeovers: another host may resume this very upload once our lease ran out (a host frozen or
cut off). A late UploadPart of ours re-sends the bytes that host sends for that number, and a
part finished after the lease was lost is never recorded (the checkpoint save is fenced); but
CompleteMultipartUpload (each try) and a new InitiateMultipartUpload after a failed resume
are sent only after `held()` confirmed the lease (LeaseLost otherwise).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import oss2
import requests

from ...core.crc64 import crc64_of_parts
from ...core.errors import ContentMismatch, TransientError
from ...core.retry import RetryPolicy, call_with_retry
from ...core.source import SourceFile
from ..part_body import PartBody, crc_range, hash_range
from ..transfer import ForwardProgress, run_fixed
from .credentials import Note, StsKeeper
from .errors import AddressChanged, Fatal, NoSuchUpload, StsExpired, translate_oss

T = TypeVar("T")

MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts (but the last) at Complete
MAX_PARTS = 10_000
PUT_OBJECT_MAX = 5 << 30  # OSS refuses a larger PutObject (EntityTooLarge): such files go multipart
_MAX_RENEWALS = 2  # per call: a fresh credential refused again is not an expiry problem
_MANY_PARTS = 1000  # above this, checkpoint saves are spaced out (each save writes every part)
_SAVE_SPACING = 0.5


@dataclass(frozen=True, order=True)
class PartRecord:
    """One completed part; stored in the checkpoint as [number, etag, crc, size]."""

    number: int
    etag: str
    crc: int
    size: int

    def to_json(self) -> list[Any]:
        return [self.number, self.etag, self.crc, self.size]

    @classmethod
    def from_json(cls, row: Any) -> "PartRecord":
        number, etag, crc, size = row
        return cls(int(number), str(etag), int(crc), int(size))


@dataclass(frozen=True)
class MultipartState:
    """The checkpointed multipart upload: its id, the part size it was cut with, done parts."""

    upload_id: str
    part_size: int
    parts: tuple[PartRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "part_size": self.part_size,
                "parts": [p.to_json() for p in sorted(self.parts)]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "MultipartState | None":
        if not data or not data.get("upload_id"):
            return None
        try:
            parts = tuple(PartRecord.from_json(row) for row in data.get("parts") or ())
            return cls(str(data["upload_id"]), int(data["part_size"]), parts)
        except (KeyError, TypeError, ValueError):
            return None


def plan_part_size(size: int, configured: int) -> int:
    """The configured part size, grown when the file would need more than 10,000 parts."""
    return max(configured, MIN_PART_SIZE, -(-size // MAX_PARTS))


def content_id(crc: int) -> str:
    """The "crc64:HEX" form of a whole file's CRC-64 (the pool's fingerprint format)."""
    return f"crc64:{crc:016x}"


class OssUploader:
    """Sends one file to the key of `keeper`'s credentials; see the module docstring."""

    def __init__(self, keeper: StsKeeper, src: SourceFile, *, cancel: threading.Event, retry: RetryPolicy,
                 note: Note, progress: Callable[[int], None], concurrency: int, fingerprint: str = "",
                 held: Callable[[], None] = lambda: None):
        self._keeper = keeper
        self._held = held  # LeaseLost unless the job's lease is still ours (UploadContext.ensure_held)
        self._fingerprint = fingerprint  # "crc64:HEX" or an MD5 the object must match; "" if none
        self._src = src
        self._size = src.size
        self._cancel = cancel
        self._retry = retry
        self._note = note
        self._concurrency = concurrency  # at least 1: the part_concurrency option says so
        self._lock = threading.Lock()
        self._state: MultipartState | None = None
        self._done: dict[int, PartRecord] = {}
        self._done_bytes = 0
        self._report = ForwardProgress(progress, self._size)  # whichever part finishes first
        self._save_fn: Callable[[MultipartState | None], None] = lambda state: None
        self._last_save = 0.0

    @property
    def _key(self) -> str:
        return self._keeper.credentials.key

    # ---- the calls, with credential renewal and retries ------------------------------------

    def _call(self, op: str, fn: Callable[[oss2.Bucket], T], stop: threading.Event | None = None) -> T:
        def attempt() -> T:
            for _ in range(_MAX_RENEWALS + 1):
                creds, bucket = self._keeper.bucket()
                try:
                    return fn(bucket)
                except (oss2.exceptions.OssError, requests.RequestException, OSError) as e:
                    error = translate_oss(e, op)
                if not isinstance(error, StsExpired):
                    raise error from None
                self._keeper.renew(creds, error.code)
            raise TransientError(f"OSS {op}: the upload credentials were refused even after refreshing them")

        def on_retry(attempt_no: int, error: BaseException, wait_s: float) -> None:
            self._note("upload.retrying", f"{op} failed; retrying", step=op, attempt=attempt_no,
                       wait_seconds=round(wait_s, 3), error=str(error))

        try:
            return call_with_retry(attempt, self._retry, stop or self._cancel, on_retry=on_retry)
        except Fatal as f:
            raise f.error from None

    # ---- PutObject ---------------------------------------------------------------------------

    def put(self) -> int:
        """The whole file in one PutObject, with Content-MD5 and the CRC-64 checked; returns
        the CRC-64. The file is read once to hash it (Content-MD5 goes before the body)."""
        md5, crc = hash_range(self._src, 0, self._size)
        self._check_content_id(crc, md5, "PutObject")
        headers = {"Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode("ascii")}

        def send(bucket: oss2.Bucket) -> None:
            body = PartBody(self._src, 0, self._size)  # a fresh read of the file on every try
            result = bucket.put_object(self._key, body, headers=headers)
            sent = body.sent_crc("OSS PutObject")
            if sent != crc:
                raise ContentMismatch(f"OSS PutObject: the file changed between hashing it and sending it "
                                      f"({content_id(crc)}, then {content_id(sent)})")
            if result.crc is not None and result.crc != crc:
                raise TransientError(f"OSS PutObject: CRC-64 mismatch (sent {crc}, stored {result.crc})")

        self._call("PutObject", send)
        self._report(self._size)
        return crc

    # ---- multipart -------------------------------------------------------------------------

    def multipart(self, saved: MultipartState | None, part_size: int,
                  save: Callable[[MultipartState | None], None]) -> int:
        """Resume `saved` (or start an upload), send the missing parts, Complete; returns the
        object's CRC-64 (combined from the parts')."""
        self._save_fn = save
        state = None
        if saved is not None:
            try:
                state = self._resume(saved)
            except NoSuchUpload:
                crc = self._completed_before(saved)  # Complete succeeded, its answer lost before a restart?
                if crc is not None:
                    return crc
                self._held()  # gone because the host that took the job over completed or replaced it?
                self._note("upload.restarted", "the saved multipart upload no longer exists on OSS; starting a new "
                           "one for the same media", reason="NoSuchUpload", upload_id=saved.upload_id)
        if state is None:
            ps = plan_part_size(self._size, part_size)
            upload_id = self._call("InitiateMultipartUpload", lambda b: b.init_multipart_upload(self._key).upload_id)
            state = MultipartState(str(upload_id), ps)
            save(state)  # before any part: a restart finds and continues this upload
        self._state = state
        self._done = {p.number: p for p in state.parts}
        self._done_bytes = sum(p.size for p in state.parts)
        self._report(self._done_bytes)
        missing = [n for n in range(1, self._count(state.part_size) + 1) if n not in self._done]
        if missing:
            self._send_parts(missing)
        return self._complete()

    def _count(self, part_size: int) -> int:
        return max(1, -(-self._size // part_size))

    def _span(self, number: int, part_size: int) -> tuple[int, int]:
        offset = (number - 1) * part_size
        return offset, min(part_size, self._size - offset)

    def _resume(self, saved: MultipartState) -> MultipartState:
        """The saved upload reconciled with ListParts; NoSuchUpload if OSS no longer has it."""
        listed = self._list_parts(saved.upload_id)
        mine = {p.number: p for p in saved.parts}
        kept: list[PartRecord] = []
        adopted = 0
        count = self._count(saved.part_size)
        for info in listed:
            number, etag, size = int(info.part_number), str(info.etag).strip('"'), int(info.size or 0)
            offset, length = self._span(number, saved.part_size) if number <= count else (0, -1)
            if size != length:
                continue  # not a part of this cut of the file: it is sent again
            rec = mine.get(number)
            if rec is not None and rec.etag.upper() == etag.upper() and rec.size == size:
                if not self._fingerprint:  # nothing to check Complete against: check the part itself
                    self._check_kept(rec, offset)
                kept.append(rec)
                continue
            md5, crc = hash_range(self._src, offset, length)  # on OSS but not in the checkpoint: ours?
            if md5.upper() == etag.upper():
                kept.append(PartRecord(number, etag, crc, length))
                adopted += 1
        state = MultipartState(saved.upload_id, saved.part_size, tuple(sorted(kept)))
        self._save_fn(state)
        self._note("upload.resumed", f"resuming the multipart upload: {len(kept)} of {count} parts already on OSS",
                   upload_id=saved.upload_id, parts_done=len(kept), parts_total=count, parts_adopted=adopted)
        return state

    def _completed_before(self, saved: MultipartState) -> int | None:
        """The object's CRC-64 if it is already this file, completed from the saved parts.

        NoSuchUpload on a resume also follows a Complete whose answer was lost before the
        process stopped: when the checkpoint holds every part, HeadObject tells (size and
        x-oss-hash-crc64ecma against the CRC the parts combine to). Only an absent or
        different object means sending the file again."""
        count = self._count(saved.part_size)
        parts = sorted(saved.parts)
        if [p.number for p in parts] != list(range(1, count + 1)) or \
                any(p.size != self._span(p.number, saved.part_size)[1] for p in parts):
            return None
        expected = crc64_of_parts((p.crc, p.size) for p in parts)

        def head(bucket: oss2.Bucket) -> Any:
            try:
                return bucket.head_object(self._key)
            except oss2.exceptions.NotFound:
                return None

        found = self._call("HeadObject", head)
        stored = _int_or_none(found.headers.get("x-oss-hash-crc64ecma")) if found is not None else None
        if found is None or found.content_length != self._size or stored != expected:
            return None
        self._check_content_id(expected, None, "HeadObject")  # the file must still be what was sent
        if not self._fingerprint:
            for p in parts:
                self._check_kept(p, self._span(p.number, saved.part_size)[0])
        self._save_fn(None)
        self._note("upload.resumed", "the multipart upload was completed before the restart (its answer was lost); "
                   "the object on OSS is this file, nothing is sent again", upload_id=saved.upload_id,
                   parts_done=count, parts_total=count, parts_adopted=0)
        self._report(self._size)
        return expected

    def _check_kept(self, rec: PartRecord, offset: int) -> None:
        """ContentMismatch if the file no longer holds what part `rec` was sent with."""
        now = crc_range(self._src, offset, rec.size)
        if now != rec.crc:
            raise ContentMismatch(f"OSS: part {rec.number} already uploaded differs from the file as it is now "
                                  f"(CRC-64 {rec.crc:016x}, now {now:016x}): the file was rewritten; not completing "
                                  "a mix of old and new content")

    def _list_parts(self, upload_id: str) -> list[oss2.models.PartInfo]:
        parts: list[oss2.models.PartInfo] = []
        marker: Any = ""
        while True:
            page = self._call("ListParts", lambda b: b.list_parts(self._key, upload_id, marker=marker,
                                                                    max_parts=1000))
            parts.extend(page.parts)
            if not page.is_truncated or not page.next_marker:
                return parts
            marker = page.next_marker

    def _send_parts(self, numbers: list[int]) -> None:
        """`concurrency` workers (the transfer engine's) take the next missing part until none
        is left or one fails; the done parts are checkpointed at the end either way."""
        try:
            run_fixed(numbers, self._send_part, concurrency=self._concurrency, cancel=self._cancel,
                      name="vod-oss-part", unit="parts", restart=(NoSuchUpload, AddressChanged))
        finally:
            self._save(force=True)

    def _send_part(self, number: int, stop: threading.Event) -> None:
        assert self._state is not None
        upload_id, part_size = self._state.upload_id, self._state.part_size
        offset, length = self._span(number, part_size)
        op = f"UploadPart {number}"

        def send(bucket: oss2.Bucket) -> tuple[str, int]:
            body = PartBody(self._src, offset, length)  # UploadCancelled / FileChanged escape while sending
            result = bucket.upload_part(self._key, upload_id, number, body)
            crc = body.sent_crc(f"OSS {op}")
            if result.crc is not None and result.crc != crc:
                raise TransientError(f"OSS {op}: CRC-64 mismatch (sent {crc}, stored {result.crc}); sending it again")
            return str(result.etag), crc

        etag, crc = self._call(op, send, stop)
        self._part_done(PartRecord(number, etag, crc, length))

    def _part_done(self, part: PartRecord) -> None:
        with self._lock:
            if part.number not in self._done:
                self._done_bytes += part.size
            self._done[part.number] = part
            acked = self._done_bytes
        self._save()
        self._report(acked)

    def _save(self, force: bool = False) -> None:
        """Checkpoint the done parts; serialised, so an older list never overwrites a newer one."""
        assert self._state is not None
        with self._lock:
            spacing = _SAVE_SPACING if len(self._done) > _MANY_PARTS else 0.0
            if not force and time.monotonic() - self._last_save < spacing:
                return
            self._last_save = time.monotonic()
            self._state = MultipartState(self._state.upload_id, self._state.part_size,
                                         tuple(sorted(self._done.values())))
            self._save_fn(self._state)

    def _complete(self) -> int:
        assert self._state is not None
        state = self._state
        parts = sorted(self._done.values())
        expected = crc64_of_parts((p.crc, p.size) for p in parts)
        self._check_content_id(expected, None, "CompleteMultipartUpload")
        infos = [oss2.models.PartInfo(p.number, p.etag) for p in parts]

        def complete(bucket: oss2.Bucket) -> Any:
            self._held()  # every try: a host that took the job over may be sending parts of this upload
            return bucket.complete_multipart_upload(self._key, state.upload_id, infos)

        try:
            stored = self._call("CompleteMultipartUpload", complete).crc
        except NoSuchUpload:
            # An earlier Complete may have succeeded with its answer lost: look at the object.
            head = self._call("HeadObject", lambda b: b.head_object(self._key))
            stored = _int_or_none(head.headers.get("x-oss-hash-crc64ecma"))
            if head.content_length != self._size or stored != expected:
                self._save_fn(None)
                raise TransientError("OSS: the multipart upload vanished before it was completed; "
                                     "uploading again") from None
        if stored is not None and stored != expected:
            self._save_fn(None)
            raise TransientError(f"OSS CompleteMultipartUpload: object CRC-64 {stored} differs from the parts' "
                                 f"{expected}; uploading again")
        self._report(self._size)
        return expected

    def _check_content_id(self, crc: int, md5: str | None, op: str) -> None:
        """ContentMismatch (before `op`) if what is about to be stored is not the fingerprinted content."""
        kind, _, value = self._fingerprint.partition(":")
        if kind == "crc64" and value:
            differs, now = int(value, 16) != crc, content_id(crc)
        elif self._fingerprint and not value and md5 is not None:
            differs, now = md5 != self._fingerprint, md5
        else:
            return
        if differs:
            raise ContentMismatch(f"OSS {op}: the content sent ({now}) differs from the fingerprint taken when the "
                                  f"file was hashed ({self._fingerprint}); not storing it")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None

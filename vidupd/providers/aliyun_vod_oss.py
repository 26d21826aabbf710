"""The OSS half of a VOD upload: PutObject for small files, parallel multipart for big ones.

Parts are read with `SourceFile.read_at` by `concurrency` threads (memory about
part_size x concurrency), CRC-64 checked against x-oss-hash-crc64ecma, and recorded in
the job's checkpoint as each one completes; Complete is checked against the CRC combined
from the parts. Expiring STS credentials are renewed once for all threads (shortly before
they expire, and on SecurityTokenExpired / InvalidAccessKeyId) and the SAME multipart
upload continues. A resumed upload reconciles its checkpoint with ListParts: parts the
server holds that the checkpoint missed (the process died between the server's answer
and the save) are adopted when their ETag equals the MD5 of our bytes, not sent again.
OSS checks each part only against the digest sent with it, so before PutObject and
Complete the content is checked against the job's fingerprint (the CRC-64 taken when it
was hashed): a file rewritten with its size and mtime kept would otherwise be completed
as a mix of old and new parts.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import oss2
import requests

from ..errors import ContentMismatch, CredentialsExpired, PermanentError, ProviderError, TransientError
from ..retry import RetryPolicy, call_with_retry
from ..secrets import redact
from .aliyun_vod_crc import crc64, crc64_of_parts
from .aliyun_vod_rpc import UploadTicket
from .base import SourceFile
from .transfer import ForwardProgress, run_fixed

T = TypeVar("T")

MIN_PART_SIZE = 100 * 1024  # OSS refuses smaller parts (but the last) at Complete
MAX_PARTS = 10_000
RENEW_MARGIN_MAX = 300.0  # renew credentials this many seconds before they expire at most...
RENEW_MARGIN_FRACTION = 0.1  # ...or this fraction of their lifetime, whichever is smaller
_RENEWABLE = frozenset({"SecurityTokenExpired", "InvalidAccessKeyId", "InvalidSecurityToken"})
_TRANSIENT_CODES = frozenset({"RequestTimeout", "InternalError", "ServiceUnavailable", "InvalidDigest"})
_MAX_RENEWALS = 2  # per call: a fresh credential refused again is not an expiry problem
_MANY_PARTS = 1000  # above this, checkpoint saves are spaced out (each save writes every part)
_SAVE_SPACING = 0.5

Note = Callable[..., None]


class StsExpired(CredentialsExpired):
    """OSS refused the temporary credentials (expired or replaced): renew them and go on."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class NoSuchUpload(PermanentError):
    """The multipart upload is gone (aborted, completed, or removed by a lifecycle rule)."""


class _Fatal(Exception):
    """Carries an error out of call_with_retry without further tries."""

    def __init__(self, error: ProviderError):
        super().__init__(str(error))
        self.error = error


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


def translate_oss(exc: Exception, op: str) -> ProviderError:
    """oss2 (and requests) errors as vidupd's own; never quotes credentials."""
    if isinstance(exc, oss2.exceptions.OssError):
        status, code = int(exc.status), str(exc.code or "")
        if status < 0:  # RequestError (-2: connection, timeout), ClientError (-1), ...
            text = redact(str(exc.body or type(exc).__name__))[:300]
            if status == oss2.exceptions.OSS_REQUEST_ERROR_STATUS:
                return TransientError(f"OSS {op}: connection problem: {text}")
            return PermanentError(f"OSS {op}: {text}")
        message = f"OSS {op}: {code or 'error'} (HTTP {status}): {redact(str(exc.message or ''))[:300]}"
        if exc.request_id:
            message += f" [RequestId {exc.request_id}]"
        if status == 403 and code in _RENEWABLE:
            return StsExpired(message, code)
        if code == "NoSuchUpload":
            return NoSuchUpload(message)
        if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
            return TransientError(message)
        return PermanentError(message)
    if isinstance(exc, (requests.RequestException, OSError)):
        return TransientError(f"OSS {op}: connection problem: {type(exc).__name__}")
    return TransientError(f"OSS {op}: unexpected {type(exc).__name__}")


class TicketKeeper:
    """The live credentials of one upload and an oss2.Bucket built on them.

    `renew` (RefreshUploadVideo; None for images and attached media, which cannot be
    refreshed) runs at most once per expiry however many part threads notice it.
    """

    def __init__(self, ticket: UploadTicket, renew: Callable[[], UploadTicket] | None, session: oss2.Session,
                 timeout: tuple[float, float], note: Note):
        self._renew_fn = renew
        self._session = session
        self._timeout = timeout
        self._note = note
        self._lock = threading.Lock()
        self._renew_lock = threading.Lock()
        self._ticket = ticket
        self._bucket = self._make(ticket)

    def _make(self, ticket: UploadTicket) -> oss2.Bucket:
        c, a = ticket.credentials, ticket.address
        auth = oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token)
        return oss2.Bucket(auth, a.endpoint, a.bucket, session=self._session, connect_timeout=self._timeout,
                           enable_crc=False)  # CRC-64 is checked here, with fastcrc instead of crcmod

    @property
    def ticket(self) -> UploadTicket:
        with self._lock:
            return self._ticket

    @staticmethod
    def due(ticket: UploadTicket) -> bool:
        c = ticket.credentials
        margin = min(RENEW_MARGIN_MAX, RENEW_MARGIN_FRACTION * c.lifetime)
        return time.time() >= c.expires_at - margin

    def bucket(self) -> tuple[UploadTicket, oss2.Bucket]:
        """Current credentials and bucket, renewed first when they are about to expire."""
        with self._lock:
            ticket, bucket = self._ticket, self._bucket
        if self._renew_fn is not None and self.due(ticket):
            self.renew(ticket, "expiring")
            with self._lock:
                return self._ticket, self._bucket
        return ticket, bucket

    def renew(self, stale: UploadTicket, reason: str) -> None:
        """Replace `stale` with fresh credentials unless another thread already did."""
        if self._renew_fn is None:
            raise _Fatal(CredentialsExpired(f"OSS refused the upload credentials ({reason}); they cannot be "
                                            "refreshed for this media type, so the upload will start again"))
        with self._renew_lock:
            with self._lock:
                if self._ticket is not stale:
                    return
            fresh = self._renew_fn()
            if fresh.address.key != stale.address.key or fresh.address.bucket != stale.address.bucket:
                raise _Fatal(PermanentError("RefreshUploadVideo returned a different upload address"))
            with self._lock:
                self._ticket, self._bucket = fresh, self._make(fresh)
        self._note("auth.refreshed", f"upload credentials refreshed ({reason})", reason=reason)


class OssUploader:
    """Sends one file to the address of `keeper`'s ticket; see the module docstring."""

    def __init__(self, keeper: TicketKeeper, src: SourceFile, *, cancel: threading.Event, retry: RetryPolicy,
                 note: Note, progress: Callable[[int], None], concurrency: int, fingerprint: str = ""):
        self._keeper = keeper
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
        return self._keeper.ticket.address.key

    # ---- the calls, with credential renewal and retries ------------------------------------

    def _call(self, op: str, fn: Callable[[oss2.Bucket], T], stop: threading.Event | None = None) -> T:
        def attempt() -> T:
            for _ in range(_MAX_RENEWALS + 1):
                ticket, bucket = self._keeper.bucket()
                try:
                    return fn(bucket)
                except (oss2.exceptions.OssError, requests.RequestException, OSError) as e:
                    error = translate_oss(e, op)
                if not isinstance(error, StsExpired):
                    raise error from None
                self._keeper.renew(ticket, error.code)
            raise TransientError(f"OSS {op}: the upload credentials were refused even after refreshing them")

        def on_retry(attempt_no: int, error: BaseException, wait_s: float) -> None:
            self._note("upload.retrying", f"{op} failed; retrying", step=op, attempt=attempt_no,
                       wait_seconds=round(wait_s, 3), error=str(error))

        try:
            return call_with_retry(attempt, self._retry, stop or self._cancel, on_retry=on_retry)
        except _Fatal as f:
            raise f.error from None

    # ---- PutObject ---------------------------------------------------------------------------

    def put(self) -> None:
        """The whole file in one PutObject, with Content-MD5 and the CRC-64 checked."""
        data = self._src.read_at(0, self._size)
        digest = hashlib.md5(data)
        crc = crc64(data)
        self._check_content_id(crc, digest.hexdigest(), "PutObject")
        headers = {"Content-MD5": base64.b64encode(digest.digest()).decode("ascii")}

        def send(bucket: oss2.Bucket) -> None:
            result = bucket.put_object(self._key, data, headers=headers)
            if result.crc is not None and result.crc != crc:
                raise TransientError(f"OSS PutObject: CRC-64 mismatch (sent {crc}, stored {result.crc})")

        self._call("PutObject", send)
        self._report(self._size)

    # ---- multipart -------------------------------------------------------------------------

    def multipart(self, saved: MultipartState | None, part_size: int,
                  save: Callable[[MultipartState | None], None]) -> None:
        """Resume `saved` (or start an upload), send the missing parts, Complete."""
        self._save_fn = save
        state = self._resume(saved) if saved is not None else None
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
        self._complete()

    def _count(self, part_size: int) -> int:
        return max(1, -(-self._size // part_size))

    def _span(self, number: int, part_size: int) -> tuple[int, int]:
        offset = (number - 1) * part_size
        return offset, min(part_size, self._size - offset)

    def _resume(self, saved: MultipartState) -> MultipartState | None:
        try:
            listed = self._list_parts(saved.upload_id)
        except NoSuchUpload:
            self._note("upload.restarted", "the saved multipart upload no longer exists on OSS; starting a new "
                       "one for the same media", reason="NoSuchUpload", upload_id=saved.upload_id)
            return None
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
                kept.append(rec)
                continue
            data = self._src.read_at(offset, length)  # on OSS but not in the checkpoint: ours?
            if hashlib.md5(data).hexdigest().upper() == etag.upper():
                kept.append(PartRecord(number, etag, crc64(data), length))
                adopted += 1
        state = MultipartState(saved.upload_id, saved.part_size, tuple(sorted(kept)))
        self._save_fn(state)
        self._note("upload.resumed", f"resuming the multipart upload: {len(kept)} of {count} parts already on OSS",
                   upload_id=saved.upload_id, parts_done=len(kept), parts_total=count, parts_adopted=adopted)
        return state

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
                      name="vod-oss-part", unit="parts", restart=(NoSuchUpload,))
        finally:
            self._save(force=True)

    def _send_part(self, number: int, stop: threading.Event) -> None:
        assert self._state is not None
        upload_id, part_size = self._state.upload_id, self._state.part_size
        offset, length = self._span(number, part_size)
        data = self._src.read_at(offset, length)  # UploadCancelled / FileChanged escape here
        crc = crc64(data)

        def send(bucket: oss2.Bucket, data: bytes = data) -> str:
            result = bucket.upload_part(self._key, upload_id, number, data)
            if result.crc is not None and result.crc != crc:
                raise TransientError(f"OSS UploadPart {number}: CRC-64 mismatch (sent {crc}, "
                                     f"stored {result.crc}); sending it again")
            return str(result.etag)

        etag = self._call(f"UploadPart {number}", send, stop)
        del data, send  # the closure holds the part too: free it before reading the next one
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

    def _complete(self) -> None:
        assert self._state is not None
        state = self._state
        parts = sorted(self._done.values())
        expected = crc64_of_parts((p.crc, p.size) for p in parts)
        self._check_content_id(expected, None, "CompleteMultipartUpload")
        infos = [oss2.models.PartInfo(p.number, p.etag) for p in parts]
        try:
            result = self._call("CompleteMultipartUpload",
                                lambda b: b.complete_multipart_upload(self._key, state.upload_id, infos))
            stored = result.crc
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

    def _check_content_id(self, crc: int, md5: str | None, op: str) -> None:
        """ContentMismatch (before `op`) if what is about to be stored is not the fingerprinted content."""
        kind, _, value = self._fingerprint.partition(":")
        if kind == "crc64" and value:
            differs, now = int(value, 16) != crc, f"crc64:{crc:016x}"
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



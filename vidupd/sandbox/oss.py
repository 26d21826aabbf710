"""Alibaba Cloud OSS emulation: one bucket, path-style URLs, V4 and/or V1 signatures
(`--oss-signature`), STS tokens.

Enough of the object API for `oss2`'s simple and resumable uploads and downloads and for
`voduploadsdk`: PutObject, the multipart calls, Head/Get/DeleteObject, GetBucketInfo.
Bodies are streamed to disk in 1 MiB blocks (or only hashed, with hash_only); each
connection has its own thread, so the parts of one upload arrive concurrently.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import hashlib
import random
import secrets
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar
from urllib.parse import quote, unquote, urlsplit

from .common import (
    QuietHandler,
    BLOCK,
    Countdown,
    Faults,
    Holds,
    RateLimiter,
    ReceiveMeter,
    SandboxHTTPServer,
    SandboxOptions,
    UploadsJournal,
    drop_connection,
    receive_body,
)
from .oss_auth import StsStore, canonical_resource
from .oss_auth_v4 import SIGNATURE_MODES, authenticate
from .oss_crc import Crc64
from .oss_request import BytesSink, RequestTarget, byte_range
from .oss_store import MAX_PART_NUMBER, Digest, ObjectInfo, OssStore, Staged
from .oss_xml import (
    OssError,
    PartRow,
    bucket_info_xml,
    complete_xml,
    error_xml,
    init_upload_xml,
    list_parts_xml,
    parse_complete,
)

DEFAULT_BUCKET = "vidupd-sandbox"
DEFAULT_STS_TTL = 3000.0  # VOD's upload credentials last 3,000 s (the API reference)
PUT_OBJECT_MAX = 5 << 30  # bytes: a larger PutObject is refused (EntityTooLarge); multipart is the way
_MAX_XML_BODY = 4 << 20  # a CompleteMultipartUpload list of 10,000 parts fits easily
_XML = "application/xml"

CompletionHook = Callable[[ObjectInfo], None]
_T = TypeVar("_T")


class OssSandbox:
    """The OSS endpoint: `start()` binds 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, data_dir: Path, options: SandboxOptions, journal: UploadsJournal, port: int = 0,
                 bucket: str = DEFAULT_BUCKET, region: str = "cn-shanghai"):
        if options.oss_signature not in SIGNATURE_MODES:
            raise ValueError(f"oss_signature must be one of {', '.join(SIGNATURE_MODES)}")
        root = Path(data_dir) / "oss"
        root.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.journal = journal  # VOD journals media; OSS itself only stores objects
        self.bucket = bucket
        self.region = region
        self.store = OssStore(root, hash_only=options.hash_only)
        self.sts = StsStore(root / "sts.json")
        self.faults = Faults(options)
        self.limiter = RateLimiter(options.max_rate)
        self.received = ReceiveMeter(f"oss {bucket}")  # body bytes per second, as this server saw them
        self.created = time.time()
        self.rng = random.Random(options.seed)  # which 5xx, where a drop cuts a body
        self._port = port
        self._hooks: list[CompletionHook] = []
        self._server: SandboxHTTPServer | None = None
        self._stats_lock = threading.Lock()
        self.parts_received = 0  # UploadPart bodies stored, repeats included (tests count re-sends)
        self.part_bytes_received = 0
        self.drop_complete = Countdown(options.drop_complete_answer)  # complete, then no answer
        self.holds = Holds(options.hold_answer)
        self.signatures: dict[str, int] = {"v1": 0, "v4": 0}  # authenticated requests per signature version

    def count_part(self, size: int) -> None:
        with self._stats_lock:
            self.parts_received += 1
            self.part_bytes_received += size

    def open_multipart(self) -> list[dict[str, str]]:
        """Multipart uploads initiated and neither completed nor aborted (OPEN_UPLOADS_PATH)."""
        return [{"bucket": self.bucket, "key": key, "upload_id": upload_id}
                for upload_id, key in self.store.incomplete_uploads()]

    def count_signature(self, version: str) -> None:
        with self._stats_lock:
            self.signatures[version] = self.signatures.get(version, 0) + 1

    # ----- lifecycle -----
    def start(self) -> None:
        server = SandboxHTTPServer(_OssHandler, self._port)
        server.sandbox = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll interval makes shutdown() quick (the default waits up to 0.5 s).
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"sandbox-oss-{server.address}", daemon=True).start()

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("OssSandbox.start() has not been called")
        return f"http://{self._server.address}"

    # ----- what VOD and tests use -----
    def issue_sts(self, ttl: float | None = None, *, prefix: str = "") -> dict[str, str]:
        """Temporary credentials shaped like VOD's UploadAuth (minus Region).

        With `prefix`, they only reach object keys starting with it, as VOD's STS policy
        limits an upload to its own object (and its HLS ObjectPrefix).
        """
        if ttl is None:
            ttl = self.options.token_ttl or DEFAULT_STS_TTL
        return self.sts.issue(ttl, prefix).as_upload_auth()

    def add_completion_hook(self, hook: CompletionHook) -> None:
        """Called (in the request's thread) each time an object is completely written."""
        self._hooks.append(hook)

    def object_path(self, key: str) -> Path:
        info = self.store.head(key)
        path = self.store.data_path(info) if info else None
        return path or self.store.default_path(key)

    def object_info(self, key: str) -> ObjectInfo | None:
        return self.store.head(key)

    def object_url(self, key: str) -> str:
        return f"{self.endpoint}/{self.bucket}/{quote(key)}"

    def key_from_url(self, url: str) -> str | None:
        """The key a URL names in this bucket: path-style on loopback, or bucket.host style."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None
        path = unquote(parts.path)
        if parts.hostname in ("127.0.0.1", "localhost"):  # any port: the sandbox may have restarted
            bucket, _, key = path.lstrip("/").partition("/")
            return key if bucket == self.bucket and key else None
        if parts.netloc.startswith(self.bucket + "."):
            return path.lstrip("/") or None
        return None

    def put_object_stream(self, key: str, reader: BinaryIO, content_type: str = "application/octet-stream"
                          ) -> ObjectInfo:
        """Store everything `reader` yields as `key` (URL pull jobs), then run the hooks."""
        staged = self.store.stage()
        try:
            md5, crc, size = hashlib.md5(), Crc64(), 0
            buf = bytearray(BLOCK)
            view = memoryview(buf)
            while n := reader.readinto(buf):  # type: ignore[attr-defined]
                md5.update(view[:n])
                crc.update(view[:n])
                if staged.sink is not None:
                    staged.sink.write(view[:n])
                size += n
            info = self.store.commit_object(key, staged, Digest(size, md5.hexdigest(), crc.value), content_type)
        except BaseException:
            staged.discard()
            raise
        self.completed(info)
        return info

    def completed(self, info: ObjectInfo) -> None:
        for hook in list(self._hooks):
            hook(info)


class _OssHandler(QuietHandler):
    server_version = "AliyunOSS"

    @property
    def sandbox(self) -> OssSandbox:
        return self.server.sandbox  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    # ----- request plumbing -----
    def _dispatch(self) -> None:
        self.request_id = secrets.token_hex(12).upper()
        self._pending: int | str = 0
        try:
            self._pending = self._body_kind()
            fault = self.sandbox.faults.roll()
            if fault == "drop":
                self._drop_midway()
                return
            if fault == "error":
                status = self.sandbox.rng.choice((500, 503))
                raise OssError(status, "InternalError" if status == 500 else "ServiceUnavailable",
                               "Injected failure (sandbox fail_rate); please retry.")
            req = RequestTarget(self.path)
            sb = self.sandbox
            resource = canonical_resource(req.bucket, req.key, req.params)
            cred, version = authenticate(sb.sts, sb.options.oss_signature, self.command, self.headers, req.bucket,
                                         req.key, req.params, resource, sb.region)
            sb.count_signature(version)
            if not cred.allows(req.key):
                raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
            if req.bucket != self.sandbox.bucket:
                raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=req.bucket)
            self._route(req)
        except OssError as err:
            self._finish_body()
            self._send_error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a sandbox bug: answer like the service's own 500, keep serving
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_error(OssError(500, "InternalError", f"sandbox error: {exc!r}"))
        finally:
            if self._pending:
                self.close_connection = True

    def _body_kind(self) -> int | str:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return "chunked"
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise OssError(400, "InvalidArgument", "Content-Length is not a non-negative integer.")
        return length

    def _receive(self, sink: BinaryIO | None, limited: bool = True) -> Digest:
        """Read the whole request body into `sink`, hashing it (MD5 and CRC-64)."""
        limiter = self.sandbox.limiter if limited else None
        crc = Crc64()
        if self._pending == "chunked":
            md5 = hashlib.md5()
            size = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("client closed inside a chunked body")
                try:
                    chunk = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._pending, self.close_connection = 0, True
                    raise OssError(400, "InvalidArgument", "Malformed chunked request body.") from None
                if chunk == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                receive_body(self.rfile, chunk, sink, limiter, (md5.update, crc.update), self.sandbox.received)
                self.rfile.readline(8)
                size += chunk
            self._pending = 0
            return Digest(size, md5.hexdigest(), crc.value)
        length = int(self._pending)
        md5_hex, size = receive_body(self.rfile, length, sink, limiter, (crc.update,), self.sandbox.received)
        self._pending = 0
        return Digest(size, md5_hex, crc.value)

    def _finish_body(self) -> None:
        """Read and drop an unread body so the connection can serve the next request."""
        if not self._pending:
            return
        with contextlib.suppress(ConnectionError, TimeoutError, ValueError, OSError):
            if self._pending == "chunked":
                self._receive(None, limited=False)
            else:
                left = int(self._pending)
                while left > 0:
                    got = len(self.rfile.read(min(BLOCK, left)))
                    if not got:
                        break
                    left -= got
                self._pending = 0

    def _drop_midway(self) -> None:
        """Injected drop: for an upload, read part of the body first, like a dying link."""
        if isinstance(self._pending, int) and self._pending > 0:
            with contextlib.suppress(ConnectionError, OSError):
                cut = int(self._pending * self.sandbox.rng.random())
                receive_body(self.rfile, cut, None)
        drop_connection(self)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str | None = None, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("x-oss-request-id", self.request_id)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: OssError) -> None:
        xml = error_xml(err, self.request_id, self.headers.get("Host", "127.0.0.1"))
        if self.command == "HEAD":  # no body allowed: the details travel in x-oss-err
            self._send(err.status, headers={"x-oss-err": base64.b64encode(xml).decode("ascii"),
                                            "x-oss-ec": err.code}, length=0)
        else:
            self._send(err.status, xml, content_type=_XML)

    # ----- routing -----
    def _route(self, req: RequestTarget) -> None:
        p, method = req.params, self.command
        if not req.key:
            if method == "GET" and "bucketInfo" in p:
                sb = self.sandbox
                host = urlsplit(sb.endpoint).netloc
                self._send(200, bucket_info_xml(sb.bucket, sb.created, host, sb.region), content_type=_XML)
                return
            raise OssError(501, "NotImplemented", "This bucket-level operation is not emulated by the sandbox.")
        if len(req.key.encode("utf-8")) > 1023 or req.key.startswith(("/", "\\")):
            raise OssError(400, "InvalidObjectName", "The object name is not valid.")
        if method == "PUT" and "uploadId" in p:
            self._upload_part(req)
        elif method == "PUT":
            self._put_object(req)
        elif method == "POST" and "uploads" in p:
            upload_id = self.sandbox.store.initiate(req.key, self._content_type())
            self._finish_body()
            self.sandbox.holds.hold("InitiateMultipartUpload")
            self._send(200, init_upload_xml(req.bucket, req.key, upload_id), content_type=_XML)
        elif method == "POST" and "uploadId" in p:
            self._complete(req)
        elif method == "GET" and "uploadId" in p:
            self._list_parts(req)
        elif method == "DELETE" and "uploadId" in p:
            self.sandbox.store.abort(p["uploadId"], req.key)
            self._send(204)
        elif method in ("GET", "HEAD"):
            self._get_object(req)
        elif method == "DELETE":
            self.sandbox.store.delete(req.key)
            self._send(204)
        else:
            raise OssError(501, "NotImplemented", f"{method} with these parameters is not emulated by the sandbox.")

    def _content_type(self) -> str:
        return self.headers.get("Content-Type") or "application/octet-stream"

    def _check_md5(self, got: Digest) -> None:
        sent = self.headers.get("Content-MD5")
        if sent is None:
            return
        try:
            raw = base64.b64decode(sent, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16 or raw.hex() != got.md5:
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.",
                           CalculatedMD5=base64.b64encode(bytes.fromhex(got.md5 or "")).decode())

    def _sent_crc(self) -> int | None:
        sent = self.headers.get("x-oss-hash-crc64ecma")
        if sent is None:
            return None
        try:
            return int(sent.strip())
        except ValueError:
            raise OssError(400, "InvalidDigest", "x-oss-hash-crc64ecma is not a decimal number.") from None

    def _check_digests(self, got: Digest) -> None:
        """Content-MD5 and x-oss-hash-crc64ecma of a body, when the client sent them."""
        self._check_md5(got)
        sent_crc = self._sent_crc()
        if sent_crc is not None and sent_crc != got.crc64:
            raise OssError(400, "InvalidDigest", "The CRC64 you specified does not match what we received.",
                           ClientCRC=str(sent_crc), ServerCRC=str(got.crc64))

    def _store_body(self, commit: Callable[[Staged, Digest], _T]) -> tuple[Digest, _T]:
        """Receive the body into a staged file, check its digests, hand it to `commit`."""
        staged = self.sandbox.store.stage()
        try:
            got = self._receive(staged.sink)
            self._check_digests(got)
            return got, commit(staged, got)
        except BaseException:
            staged.discard()
            raise

    def _refuse_too_large(self) -> None:
        """EntityTooLarge for a PutObject or part body over 5 GB, on its Content-Length alone:
        the body is neither read nor drained, and the connection closes."""
        if isinstance(self._pending, int) and self._pending > PUT_OBJECT_MAX:
            proposed, self._pending, self.close_connection = self._pending, 0, True
            raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.",
                           MaxSizeAllowed=str(PUT_OBJECT_MAX), ProposedSize=str(proposed))

    def _put_object(self, req: RequestTarget) -> None:
        if "x-oss-copy-source" in self.headers:
            raise OssError(501, "NotImplemented", "CopyObject is not emulated by the sandbox.")
        self._refuse_too_large()
        store = self.sandbox.store
        ctype = self._content_type()
        got, info = self._store_body(lambda staged, d: store.commit_object(req.key, staged, d, ctype))
        self.sandbox.completed(info)
        self._send(200, headers={"ETag": f'"{info.etag}"', "x-oss-hash-crc64ecma": str(info.crc64),
                                 "Content-MD5": base64.b64encode(bytes.fromhex(got.md5 or "")).decode()})

    def _upload_part(self, req: RequestTarget) -> None:
        try:
            number = int(req.params.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_PART_NUMBER:
            raise OssError(400, "InvalidArgument", f"Part number must be an integer between 1 and {MAX_PART_NUMBER}.")
        store, upload_id = self.sandbox.store, req.params["uploadId"]
        store.check_upload(upload_id, req.key)
        self._refuse_too_large()  # a part, too, is at most 5 GB
        _, part = self._store_body(lambda staged, d: store.commit_part(upload_id, req.key, number, staged, d))
        self.sandbox.count_part(part.size)
        self.sandbox.holds.hold("UploadPart")
        self._send(200, headers={"ETag": f'"{part.etag}"', "x-oss-hash-crc64ecma": str(part.crc64)})

    def _list_parts(self, req: RequestTarget) -> None:
        p = req.params
        try:
            marker = int(p.get("part-number-marker") or 0)
            max_parts = min(int(p.get("max-parts") or 1000), 1000)
        except ValueError:
            raise OssError(400, "InvalidArgument", "part-number-marker and max-parts must be integers.") from None
        if max_parts < 1:
            raise OssError(400, "InvalidArgument", "max-parts must be at least 1.")
        parts = [x for x in self.sandbox.store.list_parts(p["uploadId"], req.key) if x.number > marker]
        page = [PartRow(x.number, x.etag, x.size, x.crc64, x.last_modified) for x in parts[:max_parts]]
        xml = list_parts_xml(req.bucket, req.key, p["uploadId"], marker, max_parts, page, len(parts) > max_parts)
        self._send(200, xml, content_type=_XML)

    def _complete(self, req: RequestTarget) -> None:
        if isinstance(self._pending, int) and self._pending > _MAX_XML_BODY:
            raise OssError(400, "InvalidArgument", "The part list is too large.")
        buf = BytesSink()
        self._check_md5(self._receive(buf, limited=False))
        wanted = parse_complete(buf.data())
        info = self.sandbox.store.complete(req.params["uploadId"], req.key, wanted, expect_crc=self._sent_crc())
        self.sandbox.completed(info)
        self.sandbox.holds.hold("CompleteMultipartUpload")
        if self.sandbox.drop_complete.take():  # the object is complete; its answer is lost on the way
            drop_connection(self)
            return
        xml = complete_xml(self.sandbox.object_url(req.key), req.bucket, req.key, info.etag)
        self._send(200, xml, content_type=_XML,
                   headers={"ETag": f'"{info.etag}"', "x-oss-hash-crc64ecma": str(info.crc64)})

    def _get_object(self, req: RequestTarget) -> None:
        info = self.sandbox.store.head(req.key)
        if info is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=req.key)
        headers = {
            "ETag": f'"{info.etag}"',
            "Last-Modified": email.utils.formatdate(info.last_modified, usegmt=True),
            "x-oss-hash-crc64ecma": str(info.crc64),
            "x-oss-object-type": "Multipart" if "-" in info.etag else "Normal",
            "x-oss-storage-class": "Standard",
            "Accept-Ranges": "bytes",
        }
        if info.md5 and "-" not in info.etag:
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(info.md5)).decode()
        if_match, if_none = self.headers.get("If-Match"), self.headers.get("If-None-Match")
        if if_match is not None and if_match.strip().strip('"').upper() != info.etag:
            raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
        if if_none is not None and if_none.strip().strip('"').upper() == info.etag:
            self._send(304, headers=headers, length=0)
            return
        if self.command == "HEAD":
            self._send(200, headers=headers, content_type=info.content_type, length=info.size)
            return
        path = self.sandbox.store.data_path(info)
        if path is None:
            raise OssError(501, "NotImplemented", "This sandbox runs in hash_only mode and keeps no object bytes.")
        start, end = byte_range(self.headers.get("Range", ""), info.size)
        status = 200
        if (start, end) != (0, info.size):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        with open(path, "rb") as f:
            self._send(status, headers=headers, content_type=info.content_type, length=end - start)
            self.wfile.flush()
            self.connection.sendfile(f, start, end - start)

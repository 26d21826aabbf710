"""Small pure parsers for OSS requests: the request target and the Range header."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from .oss_xml import OssError


class RequestTarget:
    """Bucket, decoded key and query parameters of a path-style request target."""

    def __init__(self, target: str):
        if target.startswith(("http://", "https://")):  # absolute form, as sent to a proxy
            parts = urlsplit(target)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = target.partition("?")
        if not path.startswith("/"):
            raise OssError(400, "InvalidURI", f"bad request target {target!r}")
        bucket_raw, _, key_raw = path[1:].partition("/")
        try:
            self.bucket = unquote(bucket_raw, errors="strict")
            self.key = unquote(key_raw, errors="strict")
        except UnicodeDecodeError:
            raise OssError(400, "InvalidObjectName", "The object name is not valid UTF-8.") from None
        self.params = dict(parse_qsl(query, keep_blank_values=True))


def byte_range(header: str, size: int) -> tuple[int, int]:
    """[start, end) of a single `Range: bytes=` value.

    As OSS does by default, a malformed or multi-range value means the whole object; a
    range starting past the end is 416 InvalidRange.
    """
    value = header.strip()
    if not value.startswith("bytes=") or "," in value:
        return 0, size
    first, sep, last = value[6:].partition("-")
    try:
        if not sep:
            return 0, size
        if not first:
            return max(size - int(last), 0), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return 0, size
    if start >= size:
        raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.")
    if end <= start:
        return 0, size
    return start, min(end, size)


class BytesSink:
    """A small in-memory sink for XML request bodies (receive_body writes memoryviews)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def data(self) -> bytes:
        return b"".join(self._chunks)

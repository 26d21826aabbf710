"""Pure helpers of the VOD provider: its typed settings, request parameters from metadata,
URL lists, and the reading of URL-pull job states. No I/O, so each rule is tested on its own.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote, unquote, urlsplit

from ...core.errors import PermanentError
from ...core.fsnames import safe_text
from ...core.model import Metadata
from ...core.secrets import reveal
from ..base import MediaStatus, Option, option_value
from .rpc import endpoint_setting

T = TypeVar("T")

TITLE_MAX = 128  # bytes of UTF-8, as the API reference counts Title (43 Chinese characters are 129)
DESCRIPTION_MAX = 1024  # bytes of UTF-8
TAGS_MAX = 16
TAG_LEN = 32  # characters per tag
PULL_GROUP = 20  # UploadMediaByURL takes at most 20 URLs
INFO_GROUP = 10  # GetURLUploadInfos takes at most 10 JobIds
REGISTER_GROUP = 10  # RegisterMedia takes at most 10 entries
URL_LIST_MAX = 1 << 20  # a .url file is a short text file
MAX_PART_SIZE = 5 << 30
MAX_CONCURRENCY = 64  # parts in flight per file
IMAGE_TYPES = ("default", "cover")
BUSINESS_TYPES = ("watermark", "subtitle", "material")

PULL_DONE = "SUCCESS"
PULL_FAILED = frozenset({"FAIL", "DOWNLOAD_FAIL", "UPLOAD_FAIL"})

# Sidecar keys (metadata.extra) that override the target's options for one file, by VOD
# parameter; each accepts the VOD spelling or the option's snake_case spelling.
SIDECAR_KEYS: Mapping[str, tuple[str, ...]] = {
    "CateId": ("CateId", "cate_id"),
    "TemplateGroupId": ("TemplateGroupId", "template_group_id"),
    "WorkflowId": ("WorkflowId", "workflow_id"),
    "StorageLocation": ("StorageLocation", "storage_location"),
    "AppId": ("AppId", "app_id"),
    "UserData": ("UserData", "user_data"),
}


def clean_text(value: str | None, max_bytes: int) -> str:
    """Trimmed and cut to at most `max_bytes` bytes of UTF-8 on a character boundary (VOD
    counts Title and Description in bytes, as its upload SDK cuts them), valid UTF-8 (a
    non-UTF-8 file name's bytes as `\\xff`), without emoji and other 4-byte characters (the
    service refuses them with IllegalCharacters)."""
    text = "".join(c for c in safe_text(str(value or "")) if ord(c) <= 0xFFFF).strip()
    return cut_utf8(text, max_bytes).strip()


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `max_bytes` (never half a character)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max(0, max_bytes)].decode("utf-8", "ignore")  # drops a trailing partial character


def clean_chars(value: str | None, limit: int) -> str:
    """As clean_text, but cut to `limit` characters (VOD counts a tag's length in characters)."""
    text = "".join(c for c in safe_text(str(value or "")) if ord(c) <= 0xFFFF).strip()
    return text[:limit].strip()


def clean_tags(tags: Sequence[str]) -> str:
    """VOD's Tags: comma-separated, at most 16 of at most 32 characters, no duplicates."""
    out: list[str] = []
    for raw in tags:
        for tag in str(raw).replace("，", ",").split(","):
            tag = clean_chars(tag, TAG_LEN)
            if tag and tag not in out:
                out.append(tag)
    return ",".join(out[:TAGS_MAX])


def json_text(value: Any, where: str) -> str:
    """UserData as JSON text: a string must already be JSON, a mapping is encoded."""
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    try:
        json.loads(text)
    except ValueError:
        raise PermanentError(f"{where}: user_data must be JSON text") from None
    return text


def sidecar_overrides(extra: Mapping[str, Any]) -> dict[str, str]:
    """The VOD parameters a sidecar sets for its file (SIDECAR_KEYS)."""
    out: dict[str, str] = {}
    for param, names in SIDECAR_KEYS.items():
        for name in names:
            value = extra.get(name)
            if value is None or value == "":
                continue
            out[param] = json_text(value, f"sidecar {name}") if param == "UserData" else str(value)
            break
    return out


def cate_id(metadata: Metadata, configured: Any) -> str | None:
    """CateId: a numeric sidecar `category` (VOD categories are numbers), else the option."""
    category = (metadata.category or "").strip()
    if category.isdigit():
        return category
    return None if configured in (None, "") else str(configured)


def extension(name: str) -> str:
    return posixpath.splitext(name)[1].lstrip(".").lower()


def check_url(url: str, where: str) -> str:
    """An absolute http(s) URL with a host, or PermanentError naming where it came from.
    Spaces are allowed (a hand-written list may have them); encoding for the API escapes them."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise PermanentError(f"{where}: not an http(s) URL: {url[:200]!r}")
    return url


def parse_url_list(text: str, name: str) -> list[str]:
    """One URL per line; blank lines and lines starting with '#' are ignored."""
    urls: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(check_url(line, f"{name} line {number}"))
    if not urls:
        raise PermanentError(f"{name}: no URL in the file")
    return urls


def encode_url(url: str) -> str:
    """A URL as UploadURLs wants it, percent-encoded as the seed's sample does (commas, which
    separate the list, become %2C)."""
    return quote(url)


def decode_url(sent: str) -> str:
    return unquote(sent)


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@dataclass(frozen=True)
class PullJob:
    """One URL-pull job as GetURLUploadInfos describes it."""

    job_id: str
    status: str
    media_id: str = ""
    url: str = ""
    error_code: str = ""
    error_message: str = ""

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "PullJob":
        return cls(str(info.get("JobId") or ""), str(info.get("Status") or "UNKNOWN").upper(),
                   str(info.get("MediaId") or ""), decode_url(str(info.get("UploadURL") or "")),
                   str(info.get("ErrorCode") or ""), str(info.get("ErrorMessage") or ""))


def pull_status(job_ids: Sequence[str], jobs: Mapping[str, PullJob]) -> MediaStatus:
    """ready once every job is SUCCESS (with their MediaIds, in job order); failed as soon as
    one failed; else pending with a count per state. A job VOD does not list (yet) counts as
    pending: the target's ready_timeout ends the wait if it never shows up."""
    jobs = {**{j: PullJob(j, "UNKNOWN") for j in job_ids}, **jobs}
    failed = [jobs[j] for j in job_ids if jobs[j].status in PULL_FAILED]
    if failed:
        detail = "; ".join(f"{j.url or j.job_id}: {j.status} {j.error_code}: {j.error_message}".strip()
                           for j in failed)
        ok = [jobs[j].media_id for j in job_ids if jobs[j].status == PULL_DONE]
        if ok:
            detail += f" (pulled: {', '.join(ok)})"
        return MediaStatus("failed", f"{len(failed)}/{len(job_ids)} failed: {detail}")
    if all(jobs[j].status == PULL_DONE for j in job_ids):
        return MediaStatus("ready", f"{len(job_ids)}/{len(job_ids)} SUCCESS",
                           remote_ids=tuple(jobs[j].media_id for j in job_ids))
    counts = Counter(jobs[j].status for j in job_ids)
    done = counts.pop(PULL_DONE, 0)
    rest = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return MediaStatus("pending", f"{done}/{len(job_ids)} SUCCESS, {rest}")


@dataclass(frozen=True)
class VodSettings:
    """The validated options, typed; the AccessKey secret stays a `Secret` until used."""

    access_key_id: str
    access_key_secret: Any = field(repr=False)
    region: str
    host: str  # VOD RPC host (or host:port of an override)
    https: bool
    part_size: int
    part_concurrency: int
    multipart_threshold: int
    template_group_id: str | None
    workflow_id: str | None
    cate_id: Any
    storage_location: str | None
    app_id: str | None
    user_data: str | None
    image_type: str
    attached_business_type: str
    request_timeout: float
    tags: tuple[str, ...]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], options: Mapping[str, Option]) -> "VodSettings":
        def get(key: str) -> Any:
            return option_value("aliyun-vod", options, settings, key)

        region = str(get("region"))
        host, https = endpoint_setting(get("endpoint"), region)
        part_size = int(get("part_size"))
        if not str(get("access_key_id")) or not reveal(get("access_key_secret")):
            raise PermanentError("aliyun-vod: access_key_id and access_key_secret must not be empty")
        user_data = get("user_data")
        return cls(
            access_key_id=str(get("access_key_id")), access_key_secret=get("access_key_secret"), region=region,
            host=host, https=https, part_size=part_size,
            part_concurrency=int(get("part_concurrency")),
            multipart_threshold=int(get("multipart_threshold") or part_size),
            template_group_id=get("template_group_id") or None, workflow_id=get("workflow_id") or None,
            cate_id=get("cate_id"), storage_location=get("storage_location") or None, app_id=get("app_id") or None,
            user_data=json_text(user_data, "aliyun-vod") if user_data else None,
            image_type=str(get("image_type")),
            attached_business_type=str(get("attached_business_type")),
            request_timeout=float(get("request_timeout")),
            tags=tuple(str(t) for t in (get("tags") or ())),
        )

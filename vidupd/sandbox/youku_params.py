"""Request parameters of the emulated Youku API: required/integer/number fields and the
metadata rules of `uploads/create.json` as the platform documents them (PROTOCOLS.md
sections 1 and 3). Every refusal is a YoukuError with the wire code (1012 missing, 1013
invalid)."""

from __future__ import annotations

import re

from .youku_state import PARAM_INVALID, PARAM_MISSING, UploadMeta, YoukuError

__all__ = ["Params", "need", "integer", "invalid", "number_in", "upload_meta", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = frozenset(
    {"mp4", "mov", "mkv", "flv", "avi", "wmv", "mpg", "mpeg", "m4v", "3gp", "rm", "rmvb", "vob"}
)
TITLE_LENGTH = (2, 50)  # characters (youku-upload 0.1.2's docstrings and the cloud.youku.com page)
TAG_LENGTH = (2, 20)
MAX_TAGS = 10
MAX_DESCRIPTION = 2000  # "less than 2000 characters"; the public clients cut to 2000, which passes
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
Params = dict[str, str]


def need(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise YoukuError(PARAM_MISSING, f"Necessary parameter missing: {name}", "SystemException")
    return value


def integer(params: Params, name: str, default: int | None = None, low: int = 0, high: int = 1 << 62) -> int:
    if default is not None and not params.get(name):
        return default
    raw = need(params, name)
    try:
        value = int(raw)
    except ValueError:
        raise YoukuError(PARAM_INVALID, f"Invalid parameter: {name} must be an integer", "SystemException") from None
    if not low <= value <= high:
        raise YoukuError(PARAM_INVALID, f"Invalid parameter: {name} must be in {low}..{high}", "SystemException")
    return value


def invalid(name: str, why: str) -> YoukuError:
    return YoukuError(PARAM_INVALID, f"Invalid parameter: {name} {why}", "SystemException")


def number_in(params: Params, name: str, low: float, high: float) -> None:
    raw = params.get(name)
    if not raw:
        return
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, "must be a number") from None
    if not low <= value <= high:
        raise invalid(name, f"must be in {low:g}..{high:g}")


def upload_meta(params: Params, client_id: str) -> UploadMeta:
    """Validate create.json's video fields the way the documentation states them
    (PROTOCOLS.md sections 1 and 3): 1012 when a required one is missing, 1013 when one
    is out of its documented range."""
    title = need(params, "title")
    if not TITLE_LENGTH[0] <= len(title) <= TITLE_LENGTH[1]:
        raise invalid("title", f"must be {TITLE_LENGTH[0]}-{TITLE_LENGTH[1]} characters (got {len(title)})")
    tags = [t.strip() for t in need(params, "tags").split(",")]
    low, high = TAG_LENGTH
    if not 1 <= len(tags) <= MAX_TAGS or any(not low <= len(t) <= high for t in tags):
        raise invalid("tags", f"must be 1-{MAX_TAGS} comma-separated tags of {low}-{high} characters")
    description = params.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise invalid("description", f"is longer than {MAX_DESCRIPTION} characters (got {len(description)})")
    number_in(params, "latitude", -90, 90)
    number_in(params, "longitude", -180, 180)
    copyright_type = params.get("copyright_type") or "original"
    if copyright_type not in ("original", "reproduced"):
        raise invalid("copyright_type", "must be original or reproduced")
    public_type = params.get("public_type") or "all"
    if public_type not in ("all", "friend", "password"):
        raise invalid("public_type", "must be all, friend or password")
    if public_type == "password":
        need(params, "watch_password")
    file_name = need(params, "file_name")
    if "." not in file_name or file_name.rsplit(".", 1)[1].lower() not in VIDEO_EXTENSIONS:
        raise invalid("file_name", "has no supported video extension")
    file_md5 = need(params, "file_md5")
    if not _HEX32.match(file_md5):
        raise invalid("file_md5", "must be 32 hex digits")
    return UploadMeta(
        client_id=client_id,
        title=title,
        tags=",".join(tags),
        description=description,
        category=params.get("category", ""),
        copyright_type=copyright_type,
        public_type=public_type,
        file_name=file_name,
        file_size=integer(params, "file_size", low=1),
        file_md5=file_md5.lower(),
    )

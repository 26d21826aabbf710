"""The metadata of Youku's `create`, held to the limits its documentation states.

Title 2-50 characters, 1-10 tags of 2-20 characters, description under 2,000 characters
(youku-upload 0.1.2's docstrings and cloud.youku.com/docs?id=110). Text is cut on a
character boundary (never inside a UTF-8 sequence: Python counts code points) and trimmed;
a title too short is replaced by the file's stem or name, so Youku never refuses an upload
for its sidecar's one-letter title. Optional sidecar keys (Metadata.extra): `thumbnail` (an
image URL), `latitude`/`longitude` (degrees), `shoot_time` (text, or epoch seconds).
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

from ...core.fsnames import safe_text
from ...core.model import Metadata

TITLE_LEN = (2, 50)
DESCRIPTION_MAX = 1999  # "less than 2000 characters"
TAGS_MAX = 10
TAG_LEN = (2, 20)
DEFAULT_TAG = "vidupd"
SHOOT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def clean_text(value: Any, limit: int) -> str:
    """Valid UTF-8, runs of white space as one space, cut to `limit` characters, trimmed."""
    return " ".join(safe_text(str(value or "")).split())[:limit].strip()


def clean_title(title: str | None, stem: str, name: str) -> str:
    """The first of the sidecar's title, the file's stem and the file's name that keeps at
    least 2 characters once cleaned, cut to 50."""
    low, high = TITLE_LEN
    for candidate in (title, stem, name):
        text = clean_text(candidate, high)
        if len(text) >= low:
            return text
    return (clean_text(name, high) + " video").strip()


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Youku takes 1-10 comma-separated tags of 2-20 characters: split, trim, dedupe, cut."""
    out: list[str] = []
    for raw in tags:
        for tag in str(raw).replace("，", ",").split(","):
            tag = clean_text(tag, TAG_LEN[1])
            if len(tag) >= TAG_LEN[0] and tag not in out:
                out.append(tag)
    return out[:TAGS_MAX]


def _degrees(value: Any, limit: float) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and -limit <= number <= limit else None


def sidecar_extras(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The optional create fields a sidecar gave (invalid values are left out: the video
    goes up without them rather than being refused)."""
    out: dict[str, Any] = {}
    thumbnail = extra.get("thumbnail")
    if isinstance(thumbnail, str) and thumbnail.strip().lower().startswith(("http://", "https://")):
        out["thumbnail"] = thumbnail.strip()
    latitude, longitude = _degrees(extra.get("latitude"), 90.0), _degrees(extra.get("longitude"), 180.0)
    if latitude is not None and longitude is not None:  # a position needs both
        out["latitude"], out["longitude"] = latitude, longitude
    shoot = extra.get("shoot_time")
    if isinstance(shoot, (int, float)) and not isinstance(shoot, bool) and math.isfinite(shoot) and shoot > 0:
        out["shoot_time"] = time.strftime(SHOOT_TIME_FORMAT, time.gmtime(shoot))
    elif isinstance(shoot, str) and clean_text(shoot, 64):
        out["shoot_time"] = clean_text(shoot, 64)
    return out


def create_params(meta: Metadata, file_name: str, stem: str, size: int, md5: str | None,
                  default_tags: Iterable[str], category: str | None, copyright_type: str,
                  public_type: str) -> dict[str, Any]:
    """create's metadata fields (the caller adds watch_password, isnew and the credentials)."""
    name = safe_text(file_name)  # valid UTF-8 on the wire, whatever the file's name
    tags = clean_tags(meta.tags) or clean_tags(default_tags) or [DEFAULT_TAG]
    params: dict[str, Any] = {
        "title": clean_title(meta.title, safe_text(stem), name),
        "tags": ",".join(tags),
        "description": clean_text_keep_lines(meta.description, DESCRIPTION_MAX),
        "copyright_type": copyright_type,
        "public_type": public_type,
        "file_name": name,
        "file_size": size,
        "file_md5": md5,
    }
    chosen = meta.category or category
    if chosen:
        params["category"] = chosen
    params.update(sidecar_extras(meta.extra))
    return params


def clean_text_keep_lines(value: Any, limit: int) -> str:
    """A description: valid UTF-8, line breaks kept, cut to `limit` characters, trimmed."""
    return safe_text(str(value or "")).strip()[:limit].rstrip()

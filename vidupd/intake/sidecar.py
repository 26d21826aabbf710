"""Sidecar metadata: `NAME.json` or `NAME.EXT.json` next to a file describes it."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from ..core.errors import NotRegularFile
from ..core.fsnames import safe_text
from ..core.model import Metadata
from ..core.safe_open import read_regular

MAX_SIDECAR_BYTES = 1 << 20
_KNOWN = ("title", "description", "tags", "category")


class SidecarError(ValueError):
    """The sidecar exists but cannot be used; the message names the file and the key."""


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """Candidates, most specific first: `clip.mp4.json`, then `clip.json`."""
    return path.with_name(path.name + ".json"), path.with_suffix(".json")


def present_sidecars(path: Path) -> list[Path]:
    """The sidecars of `path` that exist, most specific first. A name too long for a
    sidecar (`NAME.ext.json` over the file system's limit) has none: it cannot exist."""
    return [c for c in sidecar_paths(path) if c != path and _is_file(c)]


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return False
        raise


def read_metadata(path: Path) -> Metadata:
    """Metadata for `path`: its sidecar if present, else the file's stem as title (made
    valid UTF-8: a non-UTF-8 name's bytes show as `\\xff`)."""
    found = present_sidecars(path)
    return _parse(found[0], path) if found else Metadata(title=safe_text(path.stem))


def _parse(sidecar: Path, media: Path) -> Metadata:
    try:
        data = read_regular(sidecar, MAX_SIDECAR_BYTES)  # a FIFO put there must not block intake
        if len(data) > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{sidecar}: larger than {MAX_SIDECAR_BYTES} bytes")
        raw: Any = json.loads(data.decode("utf-8-sig"))  # a BOM, as Windows editors write, is no error
    except NotRegularFile as e:
        raise SidecarError(f"{sidecar}: {e.reason}") from None
    except UnicodeDecodeError:
        raise SidecarError(f"{sidecar}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise SidecarError(f"{sidecar}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # 100,000 brackets: a hostile sidecar, not an intake failure
        raise SidecarError(f"{sidecar}: not valid JSON: nested too deeply") from None
    except OSError as e:
        raise SidecarError(f"{sidecar}: cannot read: {e.strerror}") from None
    if not isinstance(raw, dict):
        raise SidecarError(f"{sidecar}: must hold a JSON object, not {type(raw).__name__}")
    title = raw.get("title", safe_text(media.stem))
    if not isinstance(title, str) or not title.strip():
        raise SidecarError(f"{sidecar}: title: must be a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SidecarError(f"{sidecar}: description: must be a string")
    tags = raw.get("tags", [])
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SidecarError(f"{sidecar}: tags: must be a list of strings or a comma-separated string")
    category = raw.get("category")
    if category is not None and not isinstance(category, (str, int)):
        raise SidecarError(f"{sidecar}: category: must be a string")
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    return Metadata(title=title.strip(), description=description, tags=tuple(tags),
                    category=None if category is None else str(category), extra=extra)

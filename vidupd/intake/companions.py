"""Files that travel together: a same-stem image next to a video is that video's cover
(for providers with the TakesCovers feature), sent with the video and moved with it."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.filters import IMAGE_EXTS, VIDEO_EXTS


def _siblings(path: Path, exts: frozenset[str]) -> list[Path]:
    """Same-stem files with one of `exts` (any case) next to `path`. Names are compared as
    strings while scanning: this runs once per upload, in folders of thousands of files."""
    prefix = path.stem + "."
    found: list[Path] = []
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(prefix) or name == path.name:
                    continue
                ext = name[len(prefix):]
                if ext and "." not in ext and ext.lower() in exts and entry.is_file():
                    found.append(path.parent / name)
    except OSError:
        return []
    return sorted(found)


def cover_for(video: Path) -> Path | None:
    """The image with the video's stem in the same folder (clip.mp4 -> clip.jpg), if any."""
    found = _siblings(video, IMAGE_EXTS)
    return found[0] if found else None


def video_for(image: Path) -> Path | None:
    """The video whose cover this image is, if one sits next to it."""
    found = _siblings(image, VIDEO_EXTS)
    return found[0] if found else None

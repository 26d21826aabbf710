"""Files that travel together: a same-stem image next to a video is that video's cover
(for providers with the "cover" ability), sent with the video and moved with it."""

from __future__ import annotations

from pathlib import Path

from .filters import IMAGE_EXTS, VIDEO_EXTS


def _siblings(path: Path, exts: frozenset[str]) -> list[Path]:
    try:
        return sorted(p for p in path.parent.iterdir()
                      if p.stem == path.stem and p != path and p.suffix.lower().lstrip(".") in exts and p.is_file())
    except OSError:
        return []


def cover_for(video: Path) -> Path | None:
    """The image with the video's stem in the same folder (clip.mp4 -> clip.jpg), if any."""
    found = _siblings(video, IMAGE_EXTS)
    return found[0] if found else None


def video_for(image: Path) -> Path | None:
    """The video whose cover this image is, if one sits next to it."""
    found = _siblings(image, VIDEO_EXTS)
    return found[0] if found else None

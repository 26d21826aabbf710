"""Which names in a watched folder are candidates, and what kind of media each one is."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Protocol


class FilterRules(Protocol):
    """What a filter needs of a watch (WatchConfig has it); a protocol, so the config, which
    uses filters to check move_to folders, and filters do not import each other."""

    @property
    def include(self) -> tuple[str, ...]: ...

    @property
    def excludes(self) -> tuple[str, ...]: ...

    @property
    def ready_marker(self) -> str | None: ...


VIDEO_EXTS = frozenset("mp4 mov mkv flv f4v avi wmv mpg mpeg m4v 3gp rm rmvb vob ts mts m2ts webm mxf asf dv ogv".split())
IMAGE_EXTS = frozenset("jpg jpeg png gif webp".split())
SUBTITLE_EXTS = frozenset("srt vtt ass".split())
URL_EXTS = frozenset({"url"})


class PathFilter:
    """include/exclude globs of one watch. A pattern matches a name, or (if it holds a
    '/') the path relative to the watch root. Excludes win; directories are skipped when
    an exclude matches them. Patterns are compiled into one regex per kind, because every
    file system event passes through here."""

    def __init__(self, watch: FilterRules):
        self.watch = watch
        self._include = _compile(watch.include)
        self._exclude = _compile(watch.excludes + ((f"*{watch.ready_marker}",) if watch.ready_marker else ()))

    def accepts(self, rel: Path) -> bool:
        """Whether a file at `rel` (relative to the watch root) should be uploaded."""
        parts = rel.parts
        if len(parts) > 1 and not self.enters(Path(*parts[:-1])):
            return False
        text = "/".join(parts)
        return not _matches(self._exclude, parts[-1], text) and _matches(self._include, parts[-1], text)

    def enters(self, rel_dir: Path) -> bool:
        """Whether a scan descends into the directory at `rel_dir`."""
        parts = rel_dir.parts
        return not any(_matches(self._exclude, parts[i], "/".join(parts[: i + 1])) for i in range(len(parts)))


def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(regex for name patterns, regex for path patterns); None when there are none."""
    names = [fnmatch.translate(p) for p in patterns if "/" not in p]
    paths = [fnmatch.translate(p) for p in patterns if "/" in p]
    return (re.compile("|".join(names)) if names else None, re.compile("|".join(paths)) if paths else None)


def _matches(compiled: tuple[re.Pattern[str] | None, re.Pattern[str] | None], name: str, path: str) -> bool:
    by_name, by_path = compiled
    return bool((by_name is not None and by_name.match(name)) or (by_path is not None and by_path.match(path)))


def kind_of(path: Path, watch_kind: str) -> str | None:
    """The job kind for a file: the watch's fixed kind, or by extension (None: not media)."""
    if watch_kind != "auto":
        return watch_kind
    ext = path.suffix.lower().lstrip(".")
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    if ext in SUBTITLE_EXTS:
        return "attached"
    if ext in URL_EXTS:
        return "url_pull"
    return None

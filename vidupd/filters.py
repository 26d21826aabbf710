"""Which names in a watched folder are candidates, and what kind of media each one is."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from .config import WatchConfig

VIDEO_EXTS = frozenset("mp4 mov mkv flv f4v avi wmv mpg mpeg m4v 3gp rm rmvb vob ts mts m2ts webm mxf asf dv ogv".split())
IMAGE_EXTS = frozenset("jpg jpeg png gif webp".split())
SUBTITLE_EXTS = frozenset("srt vtt ass".split())
URL_EXTS = frozenset({"url"})


class PathFilter:
    """include/exclude globs of one watch. A pattern matches a name, or (if it holds a
    '/') the path relative to the watch root. Excludes win; directories are skipped when
    an exclude matches them."""

    def __init__(self, watch: WatchConfig):
        self.watch = watch
        self._include = watch.include
        self._exclude = watch.excludes + ((f"*{watch.ready_marker}",) if watch.ready_marker else ())

    @staticmethod
    def _match(patterns: tuple[str, ...], rel: PurePosixPath) -> bool:
        text = rel.as_posix()
        return any(fnmatchcase(text if "/" in p else rel.name, p) for p in patterns)

    def accepts(self, rel: Path) -> bool:
        """Whether a file at `rel` (relative to the watch root) should be uploaded."""
        rel = PurePosixPath(rel.as_posix())
        if any(self._match(self._exclude, PurePosixPath(*rel.parts[: i + 1])) for i in range(len(rel.parts) - 1)):
            return False
        return not self._match(self._exclude, rel) and self._match(self._include, rel)

    def enters(self, rel_dir: Path) -> bool:
        """Whether a scan descends into the directory at `rel_dir`."""
        rel = PurePosixPath(rel_dir.as_posix())
        return not any(self._match(self._exclude, PurePosixPath(*rel.parts[: i + 1])) for i in range(len(rel.parts)))


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

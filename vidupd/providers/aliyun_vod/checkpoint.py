"""A VOD upload's checkpoint: one JSON dict with a slot per object sent (the video, its
cover), each holding its media id and OSS multipart state; discarded when it was made for
other content."""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from ..base import UploadContext, UploadRequest

CHECKPOINT_VERSION = 1


class UploadState:
    """One upload's checkpoint: a JSON dict saved whole on every change (thread-safe)."""

    def __init__(self, request: UploadRequest, ctx: UploadContext,
                 abandon: Callable[[Mapping[str, Any]], str | None] | None = None):
        """abandon: gives up what a dropped checkpoint holds on the platform (its video and
        multipart upload), else a checkpoint for other content would leave them behind."""
        self.ctx = ctx
        self._lock = threading.Lock()
        fresh = {"provider": "aliyun-vod", "version": CHECKPOINT_VERSION, "kind": request.kind,
                 "content": request.content_id, "size": request.size}
        saved = ctx.checkpoint.load()
        if saved and _same_upload(saved, fresh):
            self.state: dict[str, Any] = {**saved, "content": fresh["content"]}
            self.resumed = True
        else:
            if saved:
                done = _give_up(abandon, saved)
                ctx.checkpoint.clear()
                ctx.note("upload.restarted", "checkpoint is for other content; starting over"
                         + (f" ({done})" if done else ""), reason="content changed")
            self.state, self.resumed = fresh, False

    def slot(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.state.get(name) or {})

    def set(self, **changes: Any) -> None:
        with self._lock:
            self.state = {**self.state, **changes}
            self.ctx.checkpoint.save(self.state)

    def update_slot(self, name: str, **changes: Any) -> None:
        with self._lock:
            self.state = {**self.state, name: {**(self.state.get(name) or {}), **changes}}
            self.ctx.checkpoint.save(self.state)


def _same_upload(saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether `saved` was made for this upload. A checkpoint made while the file was sent
    unhashed (content "") belongs to a later, hashed attempt at the same file version too (the
    pool checked the file is the version queued; a twin of the same size appearing meanwhile
    is why it hashes now): its parts are kept, and the whole object's CRC-64 is still checked
    against the content id at completion, so a forged-mtime rewrite is caught there."""
    if any(saved.get(k) != v for k, v in fresh.items() if k != "content"):
        return False
    return saved.get("content") in (fresh["content"], "")


def _give_up(abandon: Callable[[Mapping[str, Any]], str | None] | None, saved: Mapping[str, Any]) -> str | None:
    """Best effort (one try): what abandoning the dropped checkpoint did, or why it failed."""
    if abandon is None or saved.get("provider") != "aliyun-vod":
        return None
    try:
        return abandon(saved)
    except Exception as e:  # the upload goes on; what is left is the platform's to expire
        return f"could not give up its earlier upload: {e}"

"""`directory`: delivers files into a local or mounted folder (a NAS archive, a staging
area another system ingests from), resumably and atomically.

Each file becomes `DEST/<remote id><ext>` plus `DEST/<remote id>.json` (title, md5,
source); partial data lives in `DEST/.vidupd-partial/` until complete, then is renamed in
one step, so a reader of DEST never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.errors import PermanentError, TransientError
from ..core.fsnames import safe_text
from ..core.safe_open import open_regular
from .base import Option, Provider, UploadContext, UploadRequest, UploadResult
from .features import Resumable

CHECKPOINT_EVERY = 8 << 20


class DirectoryProvider(Resumable, Provider):
    name = "directory"
    summary = "A local or mounted folder (NAS archive, staging area): files land atomically, resumably."
    options = {
        "dest": Option(str, help="folder that receives the files"),
        "fsync": Option(bool, True, help="fsync data before it counts as delivered"),
    }
    kinds = frozenset({"video", "image", "attached"})

    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        dest = Path(self.settings["dest"])
        partial_dir = dest / ".vidupd-partial"
        try:
            partial_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PermanentError(f"cannot create {partial_dir}: {e.strerror}") from None
        state = ctx.checkpoint.load() or {}
        if state.get("md5") != request.md5:
            state = {"remote_id": uuid.uuid4().hex[:20], "md5": request.md5, "offset": 0}
            ctx.checkpoint.save(state)  # the id is fixed before the first byte
            ctx.remote_id_known(state["remote_id"], _remote_kind(request.kind))
        remote_id = state["remote_id"]
        part = partial_dir / f"{remote_id}.part"
        final = dest / f"{remote_id}{request.path.suffix.lower()}"
        if final.exists():  # delivered before a crash lost the checkpoint update
            return self._result(remote_id, request, final)
        fsync = bool(self.settings.get("fsync", True))
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as e:
            raise TransientError(f"cannot open {part}: {e.strerror}") from None
        try:
            offset = min(int(state.get("offset", 0)), os.fstat(fd).st_size)
            os.ftruncate(fd, offset)
            last_saved = offset
            with ctx.open_source(request) as src:
                for block in src.iter_blocks(offset, request.size - offset):
                    os.pwrite(fd, block, offset)
                    offset += len(block)
                    ctx.progress(offset)
                    if offset - last_saved >= CHECKPOINT_EVERY:
                        if fsync:
                            os.fsync(fd)
                        ctx.checkpoint.save({**state, "offset": offset})
                        last_saved = offset
            if fsync:
                os.fsync(fd)
        except OSError as e:
            raise TransientError(f"writing {part}: {e.strerror}") from None
        finally:
            os.close(fd)
        if _md5(part) != request.md5:
            part.unlink(missing_ok=True)
            ctx.checkpoint.save({**state, "offset": 0})
            raise TransientError(f"{final.name}: delivered bytes do not match the source's MD5; sending again")
        manifest = {"remote_id": remote_id, "title": request.metadata.title, "description": request.metadata.description,
                    "tags": list(request.metadata.tags), "md5": request.md5, "size": request.size,
                    "source": safe_text(request.path.name)}
        write_atomic(dest / f"{remote_id}.json", json.dumps(manifest, ensure_ascii=False).encode(), mode=0o644)
        os.replace(part, final)
        return self._result(remote_id, request, final)

    @staticmethod
    def _result(remote_id: str, request: UploadRequest, final: Path) -> UploadResult:
        return UploadResult(remote_id, _remote_kind(request.kind), {"path": str(final)})


def _remote_kind(kind: str) -> str:
    return kind if kind in ("video", "image", "attached") else "video"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with os.fdopen(open_regular(path), "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()

"""What happens to a file once every target has it: keep, delete or move (with its
sidecar and ready marker). Runs once per file version, decided by the ledger."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

from ..config import WatchConfig
from ..core import events
from ..intake.companions import cover_for
from ..intake.sidecar import present_sidecars
from ..ledger import Job, Ledger


class AfterUpload:
    def __init__(self, ledger: Ledger, watches: Callable[[], Mapping[str, WatchConfig]]):
        self._ledger = ledger
        self._watches = watches  # current watches by root path (changes on reload)

    def maybe_run(self, job: Job) -> None:
        watch = self._watches().get(job.watch or "")
        if watch is None or watch.after_upload == "keep":
            return  # nothing to do, no need to ask the ledger
        jobs = self._ledger.take_after_upload(job.path, job.identity)
        if jobs is None:
            return
        companions = present_sidecars(job.path)
        cover = cover_for(job.path) if job.kind == "video" else None
        if cover is not None and self._ledger.uploads_of_path(cover) == 0:
            companions.append(cover)  # it went as this video's cover, it has no job of its own
        if watch.ready_marker:
            marker = job.path.with_name(job.path.name + watch.ready_marker)
            if marker.exists():
                companions.append(marker)
        fields = dict(path=str(job.path), size=job.size, job_id=job.id,
                      remote_ids=sorted({j.remote_id for j in jobs if j.remote_id}))
        try:
            if watch.after_upload == "delete":
                for p in [job.path, *companions]:
                    p.unlink(missing_ok=True)
                events.emit("file.deleted", f"{job.path.name}: deleted after upload to every target", **fields)
            else:
                assert watch.move_to is not None
                dest = _move(job.path, watch.path, watch.move_to)
                for p in companions:
                    _move(p, watch.path, watch.move_to)
                events.emit("file.moved", f"{job.path.name}: moved to {dest} after upload to every target",
                            destination=str(dest), **fields)
        except OSError as e:
            events.emit("file.after_upload_failed", f"{job.path.name}: {watch.after_upload} failed: {e.strerror}",
                        level="error", outcome="failure", error=str(e), **fields)


def _move(path: Path, root: Path, move_to: Path) -> Path:
    """Move keeping the path below the watch root; never overwrite an existing file."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    dest = move_to / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    candidate = dest
    while candidate.exists():
        candidate = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
        n += 1
    try:
        os.link(path, candidate)  # atomic claim of the name, then drop the original
        os.unlink(path)
    except OSError:
        _copy_across(path, candidate)
    return candidate


def _copy_across(path: Path, dest: Path) -> None:
    """A move to another file system is a copy: made under a hidden name beside `dest`,
    flushed, then given its name (never over an existing file) before the original is
    dropped. A daemon killed mid-copy leaves a hidden partial file and the original, never
    a torn copy under the file's name (which whoever reads the folder would take as whole)."""
    tmp = dest.with_name(f".{dest.name}.vidupd-moving")
    shutil.copy2(path, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    try:
        os.link(tmp, dest)
    finally:
        os.unlink(tmp)
    os.unlink(path)

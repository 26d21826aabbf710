"""What `vidupd run --dry-run` (and `check-config --show-plan`) would do now: every file the
watches see, what it becomes for each target (the verdicts of `examine`, the intake's own
code, with the title the provider would send) and what the ledger already says of it, in
the order the pool would take the uploads (priority, then `order`, as a claim sorts).

Nothing is written and nothing is sent: the ledger is opened read-only by the caller (or
absent), no provider is built (its class answers which kinds it takes), and a file is read
only where the daemon would read it, to compare its content with a same-size job whose
fingerprint the ledger holds (a duplicate it would skip)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from ..config import Config, WatchConfig
from ..core.content import ContentHash, content_hash
from ..core.filters import PathFilter
from ..core.fsnames import path_to_db, safe_text
from ..core.model import FileIdentity
from ..ledger import FINISHED, HELD, Job, Ledger
from ..ledger.claim_order import sort_key
from ..providers import provider_class
from .examine import examine

NEW_ID = 1 << 62  # new files sort after every job already queued (they would be queued later, in scan order)
WOULD_UPLOAD = ("upload", "queued")  # actions of the entries the pool would take, in order


@dataclass(frozen=True)
class PlanEntry:
    """One file for one target (target None: the file as a whole is refused or waits)."""

    path: Path
    watch: str
    target: str | None
    kind: str | None
    size: int
    title: str | None
    action: str  # upload (new), queued, uploading, committed, done, duplicate, renamed, not-sent, refused, waiting,
    #              cover, or the ledger's state (failed, attention, skipped, ...)
    detail: str
    priority: int = 0
    job_id: int | None = None
    remote_id: str | None = None
    order_id: int = NEW_ID  # the job id (or NEW_ID + scan position) the claim order ends with
    identity: FileIdentity | None = None  # the file version looked at (to hash it, if it comes to that)

    def to_json(self) -> dict[str, Any]:
        return {"file": safe_text(self.path), "watch": self.watch, "target": self.target, "kind": self.kind,
                "size": self.size, "title": self.title, "action": self.action, "detail": self.detail,
                "priority": self.priority, "job_id": self.job_id, "remote_id": self.remote_id,
                "would_upload": self.action in WOULD_UPLOAD}


def plan(config: Config, ledger: Ledger | None) -> list[PlanEntry]:
    """The plan: running uploads first, then what the pool would take, in its order, then
    everything else by file name."""
    entries: list[PlanEntry] = []
    for watch in config.watches:
        for path in _files(watch):
            entries += _entries(config, ledger, watch, path, len(entries))
    entries += _unseen(ledger, {e.job_id for e in entries if e.job_id is not None})
    key = sort_key(config.order)
    queue = sorted((e for e in entries if e.action in WOULD_UPLOAD),
                   key=lambda e: key({"id": e.order_id, "priority": e.priority, "size": e.size,
                                      "path": path_to_db(e.path)}))
    if config.skip_duplicates:
        queue = _twins_among_new(queue)
    running = [e for e in entries if e.action == "uploading"]
    rest = [e for e in entries if e.action not in WOULD_UPLOAD and e.action != "uploading"]
    rest += [e for e in queue if e.action not in WOULD_UPLOAD]  # duplicates among the new files
    return running + [e for e in queue if e.action in WOULD_UPLOAD] + sorted(
        rest, key=lambda e: (safe_text(e.path), e.target or ""))


def _unseen(ledger: Ledger | None, seen: set[int]) -> list[PlanEntry]:
    """Waiting and running jobs no file in the watches stands for now (a one-shot upload's,
    a file deleted or changed since): the pool takes them too."""
    out = []
    for j in ledger.jobs(["queued", "uploading"]) if ledger is not None else ():
        if j.id in seen:
            continue
        where = "not in a watched folder now" if j.path.exists() else "its file is gone: it would fail"
        e = PlanEntry(j.path, j.watch or "-", j.target, j.kind, j.size, j.metadata.title, "upload", "")
        e = _known(e, j)
        out.append(replace(e, detail=f"{e.detail} ({where})"))
    return out


def _twins_among_new(queue: list[PlanEntry]) -> list[PlanEntry]:
    """New files of identical content for one target: the daemon hashes them (same size)
    and sends one, skipping the others; here the first in the claim order goes."""
    sizes = Counter((e.target, e.size) for e in queue if e.action == "upload")
    seen: dict[tuple[str | None, str], PlanEntry] = {}
    hashes: dict[Path, str] = {}
    out = []
    for e in queue:
        if e.action == "upload" and sizes[(e.target, e.size)] > 1 and e.identity is not None:
            if e.path not in hashes:
                hashes[e.path] = content_hash(e.path, e.identity, "crc64").content_id
            first = seen.setdefault((e.target, hashes[e.path]), e)
            if first is not e:
                e = replace(e, action="duplicate", detail=f"would be skipped: same content as "
                            f"{safe_text(first.path.name)}, a new file that goes first")
        out.append(e)
    return out


def _files(watch: WatchConfig) -> Iterator[Path]:
    """The candidates a scan of `watch` finds (the watcher's walk and filter)."""
    filt = PathFilter(watch)
    for dirpath, dirnames, filenames in os.walk(watch.path, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if filt.enters((base / d).relative_to(watch.path))) \
            if watch.recursive else []
        for name in sorted(filenames):
            if filt.accepts((base / name).relative_to(watch.path)):
                yield base / name


def _entries(config: Config, ledger: Ledger | None, watch: WatchConfig, path: Path, n: int) -> list[PlanEntry]:
    where = str(watch.path)
    try:
        st = os.stat(path)
    except OSError as e:
        return [PlanEntry(path, where, None, None, 0, None, "refused", f"cannot be looked at: {e.strerror}")]
    classes: Any = {t: provider_class(config.targets[t].provider) for t in watch.targets if t in config.targets}
    seen = examine(path, st, watch.kind, classes)  # classes answer kinds and features as instances do
    size = seen.identity.size
    if seen.refusal is not None:
        return [PlanEntry(path, where, None, seen.kind, size, None, "refused", seen.refusal)]
    if watch.ready_marker and not path.with_name(path.name + watch.ready_marker).exists():
        return [PlanEntry(path, where, None, seen.kind, size, None, "waiting",
                          f"waits for its ready marker {path.name}{watch.ready_marker}")]
    out = [PlanEntry(path, where, t, seen.kind, size, None, "not-sent", why) for t, why in seen.unwanted]
    taken = {t for t, _ in seen.wanted} | {t for t, _ in seen.unwanted}
    out += [PlanEntry(path, where, t, seen.kind, size, None, "cover", "sent as the cover of the video beside it")
            for t in classes if t not in taken]
    hashes: dict[str, ContentHash] = {}
    for target, kind in seen.wanted:
        assert seen.metadata is not None
        base = PlanEntry(path, where, target, kind, size, seen.metadata.title, "upload", "new: would upload",
                         watch.priority, order_id=NEW_ID + n + len(out), identity=seen.identity)
        out.append(_verdict(config, ledger, base, seen.identity, hashes))
    return out


def _verdict(config: Config, ledger: Ledger | None, e: PlanEntry, identity: FileIdentity,
             hashes: dict[str, ContentHash]) -> PlanEntry:
    """What the ledger says of this file version for e.target (as `offer` and `prepare` decide)."""
    assert e.target is not None
    related = ledger.related(e.target, e.path, identity.size) if ledger is not None else []
    mine = [j for j in related if j.path == e.path and j.identity == identity]
    if mine:
        return _known(e, mine[-1])
    moved = [j for j in related if j.identity == identity and not j.path.exists()]
    if moved:
        j = moved[-1]
        return _with(e, "renamed", f"renamed from {safe_text(j.path.name)}: already {j.state} as job {j.id}", j)
    older = [j for j in related if j.path == e.path and j.state in ("queued", "failed")]
    if older:  # the same name with new content, not uploaded yet: `offer` starts that job over
        j = older[-1]
        e = replace(e, detail=f"new version: job {j.id} ({j.state}) starts over", job_id=j.id, order_id=j.id)
    if config.skip_duplicates:
        for j in related:
            if j.md5 and j.remote_id and j.state in ("done", "committed"):
                kind = ContentHash.from_content_id(j.md5).kind
                if kind not in hashes:
                    hashes[kind] = content_hash(e.path, identity, kind)
                if hashes[kind].content_id == j.md5:
                    return _with(e, "duplicate", f"would be skipped: same content as job {j.id} "
                                 f"({safe_text(j.path.name)}, {j.remote_id})", j)
    return e


def _known(e: PlanEntry, j: Job) -> PlanEntry:
    if j.state == "queued":
        if j.not_before >= HELD:
            return _with(e, "waiting", f"job {j.id}: changed while uploading, waits until it is stable", j)
        note = f", attempt {j.attempts + 1}" if j.attempts else ""
        return _with(e, "queued", f"job {j.id}: queued{note}", j, order_id=j.id, priority=j.priority)
    if j.state in FINISHED or j.state == "committed":
        said = {"done": "already uploaded", "committed": "uploaded, waiting for the platform"}.get(j.state)
        if said and j.remote_id:
            return _with(e, j.state, f"{said} as {j.remote_id} (job {j.id})", j)
        return _with(e, j.state, f"job {j.id}: {j.state}: {j.last_error or ''}".rstrip(": "), j)
    return _with(e, j.state, f"job {j.id}: {j.state}" + (f": {j.last_error}" if j.last_error else ""), j)


def _with(e: PlanEntry, action: str, detail: str, j: Job, **more: Any) -> PlanEntry:
    """`e` as the ledger's job `j` says; a job of this very file shows the title it was queued with."""
    return replace(e, action=action, detail=" ".join(detail.split()), job_id=j.id, remote_id=j.remote_id,
                   title=j.metadata.title if j.path == e.path and action != "upload" else e.title, **more)

"""Ledger values: job states and the frozen rows the ledger hands out."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..core.fsnames import path_from_db, safe_text
from ..core.model import FileIdentity, Metadata

STATES = ("queued", "uploading", "committed", "done", "failed", "skipped", "attention", "cancelled")
FINISHED = ("done", "skipped")  # the file needs nothing more for this target
CLOSED = (*FINISHED, "cancelled")  # nothing more will happen to the job (`status` hides these)
CANCELLABLE = ("queued", "uploading", "failed", "attention")  # `vidupd cancel` takes these
FORGETTABLE = ("done", "skipped", "cancelled", "failed")  # `vidupd forget` drops these
HELD = 1e18  # not_before for a job waiting for its changed file to settle again
# The md5 column of a job being sent without a fingerprint (Ledger.send_unhashed), so a
# same-size job that hashes waits for its commit; read as None (content not known yet).
UNHASHED = ""

class LedgerError(Exception):
    """The ledger cannot be opened or is damaged; the message says what to do."""


class LedgerUnavailable(LedgerError):
    """The ledger's database did not answer (server down or unreachable, a timeout, a lock
    not granted in time): transient, the same call may work later. Like SQLite's busy or
    full disk, it is the ledger's trouble, not one file's (see ledger_failure)."""


def ledger_failure(e: BaseException) -> bool:
    """Whether `e` is the ledger's database failing (full disk, lock timeout, damage, a
    server gone), not a problem with one file's values. Every store raises one of these:
    the PostgreSQL store turns its connection and timeout errors into LedgerUnavailable."""
    return isinstance(e, (sqlite3.OperationalError, LedgerUnavailable)) or type(e) is sqlite3.DatabaseError


@dataclass(frozen=True)
class Job:
    id: int
    path: Path
    watch: str | None
    target: str
    kind: str
    identity: FileIdentity
    md5: str | None
    metadata: Metadata
    state: str
    attempts: int
    last_error: str | None
    remote_id: str | None
    remote_kind: str | None
    bytes_done: int
    rate: float
    not_before: float
    lease_owner: str | None
    updated: float
    committed_at: float | None
    lease_gen: int = 0  # bumped by every claim (fencing: see Ledger._hold)
    media_ids: tuple[str, ...] = ()  # ids that exist only once processing finished (a URL pull's MediaIds)
    created: float = 0.0  # when the job was first queued (`status` shows its age)
    priority: int = 0  # higher is claimed first (its watch's priority when queued; `vidupd prioritize`)
    cancel_requested: float | None = None  # `vidupd cancel` asked (epoch s): its holder cancels it

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> "Job":
        meta = json.loads(r["metadata"] or "{}")
        path = path_from_db(r["path"])
        return cls(
            id=r["id"], path=path, watch=r["watch"], target=r["target"], kind=r["kind"],
            identity=FileIdentity(r["dev"], r["inode"], r["size"], r["mtime_ns"]), md5=r["md5"] or None,
            metadata=Metadata(title=meta.get("title", safe_text(path.stem)), description=meta.get("description", ""),
                              tags=tuple(meta.get("tags", ())), category=meta.get("category"),
                              extra=meta.get("extra", {})),
            state=r["state"], attempts=r["attempts"], last_error=r["last_error"], remote_id=r["remote_id"],
            remote_kind=r["remote_kind"], bytes_done=r["bytes_done"], rate=r["rate"], not_before=r["not_before"],
            lease_owner=r["lease_owner"], updated=r["updated"], committed_at=r["committed_at"],
            lease_gen=r["lease_gen"], media_ids=_media_ids(r["details"]), created=r["created"],
            priority=r["priority"],
            cancel_requested=r["cancel_requested"],
        )

    @property
    def size(self) -> int:
        return self.identity.size

    @property
    def percent(self) -> float:
        if self.state in FINISHED or self.state == "committed":
            return 100.0
        return round(100.0 * self.bytes_done / self.size, 1) if self.size else 0.0


@dataclass(frozen=True)
class Intent:
    """A stable file version and the (target, kind) pairs it should go to."""

    path: Path
    watch: str | None
    targets: tuple[tuple[str, str], ...]
    identity: FileIdentity
    metadata: Metadata
    priority: int = 0  # the watch's priority as configured now: kept on the jobs it queues


@dataclass(frozen=True)
class Offer:
    """What `offer` did for one target: 'queued', 'known', 'renamed', 'requeued'."""

    target: str
    outcome: str
    job_id: int
    path: Path | None = None


def metadata_json(m: Metadata) -> str:
    """Readable JSON; escaped (`\\udcff`, still exact) when a value holds a lone surrogate,
    which SQLite's UTF-8 TEXT cannot take."""
    value = {"title": m.title, "description": m.description, "tags": list(m.tags), "category": m.category,
             "extra": dict(m.extra)}
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text


def _media_ids(details: str | None) -> tuple[str, ...]:
    """The MediaIds a Ready outcome recorded in the job's details (parsed only when present)."""
    if not details or "media_ids" not in details:
        return ()
    return tuple(m for m in str(json.loads(details).get("media_ids") or "").split(",") if m)

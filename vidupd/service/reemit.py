"""Remote ids whose `upload.completed` lines a full log disk or a kill cost: from the ledger.

The event log's backlog (vidupd.core.event_backlog) drops completed-upload lines only when
nothing less important is left to drop; then it says since when. The ledger still knows
every remote id, so one `event_log.reemitted` per job carries them into the log again
(Filebeat pipelines keyed on vidupd.remote_id see each id, marked as re-emitted).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Callable

from ..core import events
from ..core.announcements import Announcements
from ..ledger import Ledger
from ..ledger.outcomes import content_hashes, job_fields

FINISHED = ("committed", "done")  # states that carry a remote id
MAX_REEMIT = 100_000  # bound on one re-emission (a ledger query, a line per job)


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0  # not known: every finished job (bounded below)
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def reemitter(ledger: Ledger) -> Callable[[str | None, int], None]:
    """The `events.on_completed_dropped` hook of a daemon using `ledger`: runs on a thread of
    its own (the hook is called from whichever thread emitted, maybe inside a ledger call)."""

    def hook(since: str | None, count: int) -> None:
        threading.Thread(target=reemit, args=(since, count), name="vidupd-reemit", daemon=True).start()

    def reemit(since: str | None, count: int) -> None:
        start = _epoch(since) - 1.0  # the line's timestamp comes after the ledger's write
        jobs = [j for j in ledger.jobs(states=FINISHED, updated_since=start, limit=MAX_REEMIT) if j.remote_id]
        for j in jobs:
            events.emit("event_log.reemitted", f"{j.path.name}: {j.remote_id} on {j.target} (re-emitted from the "
                        "ledger: its upload.completed line was dropped while the event log disk was full)",
                        level="warning", path=str(j.path), target=j.target, job_id=j.id, remote_id=j.remote_id,
                        remote_kind=j.remote_kind, size=j.identity.size, md5=j.md5, since=since)
        events.emit("event_log.reemitted", f"re-emitted {len(jobs)} remote id(s) from the ledger for {count} "
                    "upload.completed line(s) dropped while the event log disk was full", level="warning",
                    dropped=count, reemitted=len(jobs), since=since)

    return hook


def announce_pending(ledger: Ledger, announcements: Announcements, provider_of: Callable[[str], str | None]) -> int:
    """At start-up, before the pool runs: every completion the previous process committed and
    was killed before announcing (core.announcements) gets its `upload.completed` line now,
    marked `reannounced`. Only a job still finished under the lease generation it was begun
    with counts (one another host took over since is that host's to announce). Returns how
    many were announced."""
    n = 0
    for p in announcements.pending():
        job = ledger.get(p.job_id)
        if job is None or job.state not in FINISHED or not job.remote_id or job.lease_gen != p.generation:
            continue
        md5, crc64 = content_hashes(job.md5)
        events.emit("upload.completed", f"{job.path.name}: uploaded to {job.target} as {job.remote_id} (announced "
                    "at start-up: the previous process stopped between the ledger's write and this line)",
                    outcome="success", remote_id=job.remote_id, remote_kind=job.remote_kind, md5=md5, crc64=crc64,
                    reannounced=True, provider=provider_of(job.target), **job_fields(job))
        n += 1
    announcements.reset()
    return n

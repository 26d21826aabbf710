"""What a worker reports about a job, and the event each report implies.

An outcome is a frozen value the pool hands to `Ledger.apply(job_id, outcome, owner=...,
generation=...)`. `decide(job, details)` says, from the job's row as the fenced transaction
sees it, which columns change and which event the change implies; the backend writes the
columns (ending the lease in one place when `ends_lease`), commits, and only then returns the
event, which the pool emits. So a state and its event cannot drift apart, a refused
(fenced-out) outcome writes nothing and emits nothing, and a second backend reuses every
rule here: it only has to run the fence, the remote-id conflict check and the UPDATE.

Events are plain values (`Event`): this package does not know how they are logged. Their
fields use vidupd.core.events' short names; the pool adds `provider`, which the ledger does not
know.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .model import HELD, Job

# Actions the pool branches on (the others it only emits).
DUPLICATE_REMOTE_ID = "upload.duplicate_remote_id"


@dataclass(frozen=True)
class Event:
    """One event-log line, as a value: `events.emit(action, message, level, **fields)`."""

    action: str
    message: str
    level: str = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """What an outcome does to its job's row: column values, whether the job's checkpoint
    goes, whether the lease ends, and the event to emit once it is committed."""

    columns: Mapping[str, Any] = field(default_factory=dict)
    event: Event | None = None
    drop_checkpoint: bool = False
    ends_lease: bool = True
    check_remote_id: str | None = None  # refuse (attention) if another job holds this id for other content
    conflict: "Outcome | None" = None  # the outcome whose `conflicted` builds the attention event


def job_fields(job: Job) -> dict[str, Any]:
    """The fields every job event carries (the pool adds `provider`)."""
    return dict(path=str(job.path), size=job.size, target=job.target, job_id=job.id, kind=job.kind)


def content_hashes(content: str | None) -> tuple[str | None, str | None]:
    """A job's content fingerprint as the event's (md5, crc64): an MD5, or `crc64:HEX`."""
    md5 = None if content is None or content.startswith("crc64:") else content
    return md5, (content.partition(":")[2] if content and not md5 else None)


def _event(job: Job, action: str, message: str, level: str = "info", **extra: Any) -> Event:
    return Event(action, f"{job.path.name}: {message}", level, {**extra, **job_fields(job)})


class Outcome:
    """Base of the outcome values; subclasses are frozen dataclasses."""

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        raise NotImplementedError

    def conflicted(self, job: Job, remote_id: str, other: int) -> Event:
        """The event when `check_remote_id` found `other` holding `remote_id`."""
        return _event(job, DUPLICATE_REMOTE_ID, f"platform returned remote id {remote_id}, which job {other} "
                      "already holds for different content; needs attention", level="error", outcome="failure",
                      remote_id=remote_id, other_job_id=other)


@dataclass(frozen=True)
class Completed(Outcome):
    """The platform acknowledged the upload. `final`: nothing left to wait for (done); else
    the first status poll is due in `poll_in` s (scheduled in this same transaction).
    `content_id`: the "crc64:HEX" the provider computed while sending a job that was not
    hashed before; stored as the job's content, so a later same-size job can compare."""

    remote_id: str
    remote_kind: str
    details: Mapping[str, str] = field(default_factory=dict)
    final: bool = True
    poll_in: float = 0.0
    content_id: str | None = None
    duration: float | None = None  # seconds the provider took, for the event
    note: str = "waiting for the platform to process it"

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        content = job.md5 or self.content_id
        md5, crc64 = content_hashes(content)
        elapsed = self.duration
        event = _event(job, "upload.completed", f"uploaded to {job.target} as {self.remote_id}", outcome="success",
                       remote_id=self.remote_id, remote_kind=self.remote_kind,
                       duration_seconds=None if elapsed is None else round(elapsed, 3),
                       bytes_per_second=round(job.size / elapsed) if elapsed else None, md5=md5, crc64=crc64,
                       details=dict(self.details) or None)
        columns = dict(state="done" if self.final else "committed", remote_id=self.remote_id,
                       remote_kind=self.remote_kind, details=json.dumps(dict(self.details)), bytes_done=job.size,
                       rate=0, attempts=0, last_error=None if self.final else self.note,
                       not_before=0 if self.final else now + self.poll_in, committed_at=now, md5=content)
        return Transition(columns, event, drop_checkpoint=True, check_remote_id=self.remote_id, conflict=self)


@dataclass(frozen=True)
class RemoteIdRecorded(Outcome):
    """The platform assigned an id mid-upload (recorded at once, so a crash cannot lose it).
    A video's cover image id is only logged: it is not the job's id."""

    remote_id: str
    remote_kind: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        if job.kind == "video" and self.remote_kind == "image":
            return Transition({}, _event(job, "upload.remote_id", f"{job.target} assigned cover image id "
                                         f"{self.remote_id}", remote_id=self.remote_id,
                                         remote_kind=self.remote_kind, role="cover"), ends_lease=False)
        event = _event(job, "upload.remote_id", f"{job.target} assigned {self.remote_kind} id {self.remote_id}",
                       remote_id=self.remote_id, remote_kind=self.remote_kind)
        return Transition(dict(remote_id=self.remote_id, remote_kind=self.remote_kind), event, ends_lease=False,
                          check_remote_id=self.remote_id, conflict=self)


@dataclass(frozen=True)
class RetryLater(Outcome):
    """A transient failure: queued again after `delay` s, as attempt `attempts`."""

    error: str
    delay: float
    attempts: int
    error_type: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "upload.retrying", f"{self.error}; retry {self.attempts} in {self.delay:.1f}s",
                       level="warning", attempt=self.attempts, retry_in_seconds=round(self.delay, 2),
                       error=self.error, error_type=self.error_type)
        return Transition(dict(state="queued", last_error=self.error, attempts=self.attempts,
                               not_before=now + self.delay, rate=0), event)


@dataclass(frozen=True)
class WaitForTwin(Outcome):
    """Another job is sending the same (or maybe the same) content: look again in `delay` s,
    without counting an attempt and without an event (nothing failed)."""

    twin_id: int
    delay: float = 2.0

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        return Transition(dict(state="queued", last_error=f"waiting for job {self.twin_id} with identical content",
                               not_before=now + self.delay, rate=0))


@dataclass(frozen=True)
class Failed(Outcome):
    """A permanent failure (or the retries ran out): the operator's `retry` brings it back."""

    error: str
    error_type: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "upload.failed", self.error, level="error", outcome="failure", error=self.error,
                       error_type=self.error_type)
        return Transition(dict(state="failed", last_error=self.error, rate=0), event)


@dataclass(frozen=True)
class Unconfigured(Outcome):
    """The job's target was removed from the config (a reload) before the job ran."""

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "upload.failed", f"target {job.target} is not configured", level="error",
                       outcome="failure")
        return Transition(dict(state="failed", last_error=f"target {job.target!r} is not configured any more",
                               rate=0), event)


@dataclass(frozen=True)
class Skipped(Outcome):
    """The same content is already on the target (job `twin_id`): not uploaded again."""

    twin_id: int
    twin_path: str
    remote_id: str | None
    remote_kind: str | None

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "upload.skipped", f"identical content already on {job.target} as {self.remote_id}",
                       reason="duplicate content", remote_id=self.remote_id, remote_kind=self.remote_kind,
                       duplicate_of_job=self.twin_id)
        return Transition(dict(state="skipped", last_error=f"same content as {self.twin_path} (job {self.twin_id})",
                               remote_id=self.remote_id, remote_kind=self.remote_kind, rate=0), event)


@dataclass(frozen=True)
class Interrupted(Outcome):
    """The daemon is stopping, the job's target or watch was paused (`reason` "paused"), or
    the lease was given back: queued, to resume from its checkpoint, no attempt counted."""

    reason: str = "stopped"

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "upload.interrupted", f"{self.reason}; will resume from its checkpoint",
                       reason=None if self.reason == "stopped" else self.reason)
        return Transition(dict(state="queued" if job.state == "uploading" else job.state, rate=0), event)


@dataclass(frozen=True)
class Cancelled(Outcome):
    """`vidupd cancel`: the job is given up for good (its platform upload was abandoned
    before this is applied). Its file version is never offered again (a changed file is a
    new version); `vidupd retry` queues it again from scratch. A job that meanwhile reached
    the platform (committed, done) or was skipped is left as it is, without an event."""

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        if job.state in ("committed", "done", "skipped", "cancelled"):
            return Transition({}, None)
        event = _event(job, "upload.cancelled", f"cancelled; not uploaded to {job.target}", outcome="success",
                       remote_id=job.remote_id, remote_kind=job.remote_kind, bytes_done=job.bytes_done)
        return Transition(dict(state="cancelled", rate=0, last_error=None, not_before=0, cancel_requested=None),
                          event, drop_checkpoint=True)


@dataclass(frozen=True)
class HeldForChange(Outcome):
    """The file changed under the upload: progress, content and checkpoint forgotten; held
    until the watcher sees it stable again (which re-queues it)."""

    error: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = Event("upload.restarted", f"{job.path.name} changed during upload; starting over once it is stable",
                      "warning", {"reason": "file changed", **job_fields(job)})
        return Transition(dict(state="queued", last_error=self.error, bytes_done=0, rate=0, md5=None,
                               not_before=HELD), event, drop_checkpoint=True)


@dataclass(frozen=True)
class ContentReset(Outcome):
    """The platform says the bytes differ from the fingerprint (a file rewritten, size and
    mtime kept): fingerprint and checkpoint go; queued at once to be hashed again, as an
    attempt, so a file that keeps changing ends up failed. No change (and no event) if the
    job is no longer uploading."""

    error: str
    max_attempts: int
    error_type: str = "ContentMismatch"

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        if job.state != "uploading":
            return Transition({}, None, ends_lease=False)
        attempts = job.attempts + 1
        columns = dict(state="queued", attempts=attempts, last_error=self.error, md5=None, bytes_done=0, rate=0,
                       not_before=0)
        if attempts >= self.max_attempts:
            message = f"gave up after {attempts} attempts: {self.error}"
            columns.update(state="failed", last_error=message)
            event = _event(job, "upload.failed", message, level="error", outcome="failure", error=self.error,
                           error_type=self.error_type)
        else:
            event = _event(job, "upload.restarted", f"{job.target} says the content differs from its fingerprint; "
                           "hashing the file again and starting over", level="warning",
                           reason="content differs from its fingerprint", attempt=attempts, error=self.error)
        return Transition(columns, event, drop_checkpoint=True)


@dataclass(frozen=True)
class PollLater(Outcome):
    """The platform is still processing a committed upload: poll again in `delay` s."""

    delay: float
    attempts: int
    note: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        return Transition(dict(not_before=now + self.delay, attempts=self.attempts, last_error=self.note))


@dataclass(frozen=True)
class Ready(Outcome):
    """Processing finished. `media_ids`: ids that exist only now (a URL pull's MediaIds)."""

    media_ids: tuple[str, ...] = ()
    detail: str = ""

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        columns: dict[str, Any] = dict(state="done", last_error=None, not_before=0)
        if self.media_ids:
            columns["details"] = json.dumps({**details, "media_ids": ",".join(self.media_ids)})
        event = _event(job, "media.ready", f"{job.remote_id} is ready on {job.target}"
                       + (f" as {', '.join(self.media_ids)}" if self.media_ids else ""), outcome="success",
                       detail=self.detail or None, media_ids=list(self.media_ids) or None,
                       remote_id=job.remote_id, remote_kind=job.remote_kind)
        return Transition(columns, event)


@dataclass(frozen=True)
class MediaFailed(Outcome):
    """The platform failed to process a committed upload (or it never became ready)."""

    error: str

    def decide(self, job: Job, details: Mapping[str, str], now: float) -> Transition:
        event = _event(job, "media.failed", self.error, level="error", outcome="failure", remote_id=job.remote_id,
                       remote_kind=job.remote_kind, error=self.error)
        return Transition(dict(state="failed", last_error=self.error, rate=0), event)

"""One job as a worker runs it, a mixin of the Pool (vidupd.engine.pool): an upload in three
steps, prepare (vidupd.engine.prepare: identity check, hash or not, duplicate check), send
(the provider, with an UploadContext whose checkpoint and `ensure_held` are fenced by the
job's lease), complete (commit and after-upload); or one status poll. Every error becomes
the job's next state here: retries by error type (vidupd.core.errors) within the retry
policy, a stop by its reason (vidupd.engine.stops), a lost lease by no write at all.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from ..config import TargetConfig
from ..core import events
from ..core.errors import ContentMismatch, DuplicateRemoteId, FileChanged, LeaseLost, PermanentError, UploadCancelled
from ..core.throttle import Throttle
from ..intake.companions import cover_for
from ..ledger import (DUPLICATE_REMOTE_ID, Completed, ContentReset, Event, Failed, HeldForChange, Interrupted, Job,
                      Ledger, Outcome, RemoteIdRecorded, RetryLater, Skipped, Unconfigured)
from ..providers.base import Provider, UploadContext, UploadRequest, UploadResult
from ..providers.features import features
from .abandon import abandon_upload, cancel_job
from .after_upload import AfterUpload
from .lease_guard import LeaseGuard
from .poll import describe as _describe, poll_safely
from .prepare import VANISHED, Prepared, prepare
from .progress import ProgressReporter
from .pool_settings import PoolSettings, job_fields
from .stops import CANCEL, LEASE, LOST, PAUSED, StopReasons


class JobSteps:
    """The Pool's per-job half; the Pool provides these attributes and methods."""

    settings: PoolSettings
    ledger: Ledger
    targets: dict[str, TargetConfig]
    providers: dict[str, Provider]
    throttle: Throttle
    owner: str
    after: AfterUpload
    _on_file_changed: Callable[[Path], None]
    _stops: StopReasons
    _guard: LeaseGuard
    _lock: threading.Lock
    _threads: dict[int, threading.Thread]
    _stranded: dict[int, int]

    def _lease(self, job: Job) -> dict: ...
    def _apply(self, job: Job, outcome: Outcome) -> Event | None: ...
    def _provider_name(self, job: Job) -> str | None: ...

    # -- one job ----------------------------------------------------------------------------------
    def _run(self, job: Job, cancel: threading.Event, reporter: ProgressReporter | None) -> None:
        with self._lock:
            self._threads[job.id] = threading.current_thread()
        fields = job_fields(job, self._provider_name(job))
        provider = self.providers.get(job.target)
        try:
            if job.cancel_requested is not None and job.state != "committed":  # asked before we claimed it
                cancel_job(job, provider, self.ledger, self._lease(job), fields)
            elif provider is None:
                self._apply(job, Unconfigured())
            elif job.state == "committed":
                self._poll_safely(job, provider)
            else:
                assert reporter is not None
                self._settle(job, provider, cancel, reporter, fields)
        except LeaseLost:  # expired and taken over: the new holder's state stands; write nothing more
            events.emit("upload.lease_lost", f"{job.path.name}: lease on job {job.id} lost to another process; "
                        "leaving the job to it", level="warning", **fields)
        except Exception as e:  # the ledger itself failed (disk full): the lease is given back once it works
            if self._guard.noticed(e):
                with self._lock:  # given back by the dispatcher when the ledger takes writes again (Pool._unstrand)
                    self._stranded[job.id] = job.lease_gen
                if self._stops.reason(job.id) == LEASE:
                    return  # stopped for that very reason, and said so (upload.lease_expiring)
            events.emit("daemon.error", f"{job.path.name}: could not record the outcome: {_describe(e)}",
                        level="error", error=_describe(e), error_type=type(e).__name__, **fields)

    def _settle(self, job: Job, provider: Provider, cancel: threading.Event, reporter: ProgressReporter,
                fields: dict) -> None:
        """Run the upload and turn its outcome (or error) into the job's next state."""
        try:
            self._upload(job, provider, cancel, reporter, fields)
        except LeaseLost:
            raise  # however the provider ended, the job is someone else's now
        except UploadCancelled:
            self._stopped(job, provider, fields)
        except FileChanged as e:
            self._apply(job, HeldForChange(str(e)))
            self._on_file_changed(job.path)
        except DuplicateRemoteId:
            pass  # the ledger marked the job for attention and its event is out
        except ContentMismatch as e:  # rewritten with size and mtime kept: hash it again, send it again
            self._apply(job, ContentReset(str(e), self.settings.retry.attempts, type(e).__name__))
        except PermanentError as e:
            self._apply(job, Failed(str(e), type(e).__name__))
        except Exception as e:  # TransientError, OSError, or a bug: retry within limits, then fail
            if self._stops.reason(job.id) in (LEASE, LOST):  # e.g. the ledger failed it: no attempt counted
                self._stopped(job, provider, fields)
            else:
                self._transient(job, e)

    def _stopped(self, job: Job, provider: Provider, fields: dict) -> None:
        """An upload the pool asked to stop: the outcome its reason implies (vidupd.engine.stops)."""
        why = self._stops.reason(job.id)
        if why == LOST:
            raise LeaseLost(job.id, self.owner) from None
        if why == LEASE:  # resumable by the next holder: no attempt counted, nothing abandoned
            self._apply(job, Interrupted("lease expiring"))
        elif why == CANCEL:
            cancel_job(job, provider, self.ledger, self._lease(job), fields)
        else:
            self._apply(job, Interrupted(PAUSED if why == PAUSED else "stopped"))

    def _transient(self, job: Job, e: BaseException) -> None:
        attempts = job.attempts + 1
        message = _describe(e)
        if attempts >= self.settings.retry.attempts:
            self._apply(job, Failed(f"gave up after {attempts} attempts: {message}", type(e).__name__))
            return
        delay = self.settings.retry.delay(attempts)
        hint = getattr(e, "retry_after", None)
        if hint:
            delay = max(delay, min(float(hint), self.settings.retry.maximum))
        self._apply(job, RetryLater(message, delay, attempts, type(e).__name__))

    def _upload(self, job: Job, provider: Provider, cancel: threading.Event, reporter: ProgressReporter,
                fields: dict) -> None:
        prepared = prepare(job, provider, self.ledger, self._lease(job), self.settings.skip_duplicates, cancel)
        if not isinstance(prepared, Prepared):  # failed, a duplicate, or waiting for a twin
            if isinstance(prepared, Failed) and prepared.error_type == VANISHED:
                abandon_upload(job, provider, self.ledger, self._lease(job), fields, "the file vanished")
            self._apply(job, prepared)
            if isinstance(prepared, Skipped):
                self.after.maybe_run(job)
            return
        events.emit("upload.started", f"{job.path.name}: uploading to {job.target}", attempt=job.attempts + 1,
                    **fields)
        started = time.monotonic()
        result = self._send(job, provider, prepared, cancel, reporter, fields)
        self._complete(job, provider, prepared, result, time.monotonic() - started)

    def _send(self, job: Job, provider: Provider, prepared: Prepared, cancel: threading.Event,
              reporter: ProgressReporter, fields: dict) -> UploadResult:
        """The provider's part: the request, the context, and the ids it reports on the way."""
        known: dict[str, str] = {}

        def remote_id_known(remote_id: str, remote_kind: str) -> None:
            if known.get(remote_id) == remote_kind:
                return
            cover = job.kind == "video" and remote_kind == "image"  # the video's cover: logged, not the job's id
            if not cover and job.remote_id == remote_id:  # recorded by an earlier attempt (the row as claimed)
                known[remote_id] = remote_kind
                return
            event = self._apply(job, RemoteIdRecorded(remote_id, remote_kind))
            if event is not None and event.action == DUPLICATE_REMOTE_ID:
                raise DuplicateRemoteId(remote_id, event.fields["other_job_id"])  # stop the upload
            known[remote_id] = remote_kind

        def note(action: str, message: str, level: str = "info", **extra: object) -> None:
            events.emit(action, f"{job.path.name}: {message}", level=level, **extra, **fields)

        checkpoint = self.ledger.checkpoint(job.id, self.owner, job.lease_gen)
        ctx = UploadContext(checkpoint=checkpoint, progress=reporter, remote_id_known=remote_id_known, note=note,
                            cancel=cancel, throttle=self.throttle.share(job.target, reporter.note_sent, cancel),
                            retry=self.settings.request_retry, ensure_held=checkpoint.ensure_held)
        companions: dict[str, Path] = {}
        if job.kind == "video" and features(provider).cover:
            cover = cover_for(job.path)
            if cover is not None:
                companions["cover"] = cover
        request = UploadRequest(job_id=job.id, path=job.path, kind=job.kind, identity=job.identity,
                                content=prepared.content, metadata=job.metadata, companions=companions)
        return provider.upload(request, ctx)

    def _complete(self, job: Job, provider: Provider, prepared: Prepared, result: UploadResult,
                  elapsed: float) -> None:
        """Commit the upload (with the content id the provider computed, when it was not
        hashed before), then run the after-upload action if nothing is left."""
        target = self.targets[job.target]
        final = not (target.wait_ready and features(provider).status)
        content_id = None if prepared.content else result.content_id
        # the first status poll is scheduled in the same transaction (one fsync, not two)
        event = self._apply(job, Completed(result.remote_id, result.remote_kind, dict(result.details), final,
                                           poll_in=self.settings.poll_first, content_id=content_id,
                                           duration=elapsed))
        if event is not None and event.action == DUPLICATE_REMOTE_ID:
            return  # marked for attention: the platform's answer needs a person
        if final:
            self.after.maybe_run(job)

    def _poll_safely(self, job: Job, provider: Provider) -> None:
        poll_safely(job, provider, self.targets[job.target], self.settings.poll_first, self.settings.poll_max,
                    lambda outcome: self._apply(job, outcome), self.after)


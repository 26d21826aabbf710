"""The worker pool: claims jobs from the ledger a bounded window at a time and runs them.

`workers` uploads at a time; each claimed job holds a lease renewed while it runs. A job is
either an upload (queued -> committed/done) or one status poll of a committed upload. Status
polls (one short request each) run on their own `POLL_WORKERS` threads, so a burst of
finished uploads waiting for "ready" never holds back the uploads still queued. The
pool decides retries by error type (vidupd.errors); waits between job attempts are kept in
the ledger (`not_before`), so a waiting retry holds no thread and survives a restart.

Every ledger write for a job names the lease it was claimed with (`_lease`); once one is
refused (LeaseLost: the lease expired and another process took the job) the job is dropped
with a single `upload.lease_lost` event and no further write, and a running upload whose
lease a renewal or progress report finds lost is cancelled.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from . import events
from .after_upload import AfterUpload
from .companions import cover_for
from .config import Config, TargetConfig
from .errors import (ContentMismatch, DuplicateRemoteId, FileChanged, LeaseLost, NotRegularFile, PermanentError,
                     ProviderError, UploadCancelled)
from .ledger import Job, Ledger
from .progress import ProgressReporter
from .providers.base import ContentHash, FileIdentity, Provider, UploadContext, UploadRequest, content_hash
from .providers.features import features
from .retry import RetryPolicy
from .safe_open import check_regular
from .throttle import Throttle

LEASE_SECONDS = 120.0
REQUEST_RETRY = RetryPolicy(attempts=6, initial=1.0, maximum=30.0)  # per HTTP call, inside a job
POLL_FIRST, POLL_MAX = 5.0, 120.0
POLL_WORKERS = 2  # threads for status polls, besides the `workers` upload threads

# Worker threads a stop gave up on (see Pool.stop), in this process.
_left_behind: list[threading.Thread] = []


def workers_left_behind() -> int:
    """How many workers a stop gave up on are still running. Interpreter exit joins every
    ThreadPoolExecutor thread (concurrent.futures' atexit hook), so while one is stuck in a
    system call a normal exit never ends: the CLI then leaves with os._exit."""
    return sum(t.is_alive() for t in _left_behind)


@dataclass(frozen=True)
class PoolSettings:
    workers: int
    retry: RetryPolicy
    skip_duplicates: bool
    request_retry: RetryPolicy = REQUEST_RETRY
    poll_first: float = POLL_FIRST
    poll_max: float = POLL_MAX


def settings_from(config: Config) -> PoolSettings:
    return PoolSettings(workers=config.workers, retry=config.retry, skip_duplicates=config.skip_duplicates)


def job_fields(job: Job, provider: str | None = None) -> dict:
    return dict(path=str(job.path), size=job.size, target=job.target, provider=provider, job_id=job.id,
                kind=job.kind)


class Pool:
    def __init__(self, settings: PoolSettings, ledger: Ledger, targets: Mapping[str, TargetConfig],
                 providers: Mapping[str, Provider], throttle: Throttle, owner: str, after: AfterUpload,
                 on_file_changed: Callable[[Path], None] = lambda p: None, only_ids: list[int] | None = None):
        self.settings = settings
        self.ledger = ledger
        self.targets = dict(targets)
        self.providers = dict(providers)
        self.throttle = throttle
        self.owner = owner
        self.after = after
        self._on_file_changed = on_file_changed
        self._only_ids = only_ids
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="vidupd-worker")
        self._poller = ThreadPoolExecutor(max_workers=POLL_WORKERS, thread_name_prefix="vidupd-poll")
        self._running: dict[int, tuple[Future, threading.Event, ProgressReporter | None]] = {}
        self._threads: dict[int, threading.Thread] = {}  # job id -> the worker running it
        self._polling: set[int] = set()  # the ids in _running that are status polls
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_beat = time.monotonic()  # the dispatcher's heartbeat, for the systemd watchdog

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._dispatch, name="vidupd-dispatch", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def reconfigure(self, settings: PoolSettings, targets: Mapping[str, TargetConfig],
                    providers: Mapping[str, Provider]) -> None:
        """Reload: settings, targets and providers for the jobs claimed from now on.

        Running jobs keep the provider they started with. A removed target's config stays
        known, so an upload in flight to it still completes and is recorded; jobs claimed
        later for it fail as "not configured any more". More workers than the executor
        holds: a larger executor takes new jobs, the old one finishes its running ones."""
        with self._lock:
            if settings.workers > self._executor._max_workers:
                old = self._executor
                self._executor = ThreadPoolExecutor(max_workers=settings.workers,
                                                    thread_name_prefix="vidupd-worker")
                old.shutdown(wait=False)
            self.settings = settings
            self.targets = {**self.targets, **targets}
            self.providers = dict(providers)
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> list[int]:
        """Take no more work; ask running uploads to checkpoint and stop; give leases back.

        Waits at most `timeout` for running jobs. Returns the ids of those still running then
        (a worker blocked in a system call, a platform that stopped answering): their leases
        are given back with the others, so the next start takes them up at once instead of
        after the lease time; the process is about to end, and their threads with it."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.items())
        for _, (_, cancel, _) in running:
            cancel.set()
        deadline = time.monotonic() + timeout
        for _, (fut, _, _) in running:
            try:
                fut.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._poller.shutdown(wait=False, cancel_futures=True)
        left = [jid for jid, (fut, _, _) in running if not fut.done()]
        with self._lock:
            _left_behind.extend(t for jid, t in self._threads.items() if jid in left)
        self.ledger.release(self.owner)
        return left

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def snapshot(self) -> list[tuple[int, int, int, float]]:
        """(job id, bytes done, size, bytes/s) of running uploads, for status lines."""
        with self._lock:
            return [(jid, p.done, p.size, p.rate) for jid, (_, _, p) in self._running.items() if p is not None]

    # -- dispatching ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            try:
                self._dispatch_loop()
            except Exception as e:  # e.g. the ledger's disk is full: say so, wait, try again
                events.emit("daemon.error", f"dispatcher: {_describe(e)}; retrying in 5 s", level="error",
                            error=_describe(e), error_type=type(e).__name__)
                self._stopping.wait(5.0)

    def _dispatch_loop(self) -> None:
        last_renew = time.monotonic()
        while not self._stopping.is_set():
            self.last_beat = time.monotonic()
            # Cleared before looking for work, not after the wait: a job that finishes (or a
            # file queued) while we claim sets it again and the wait below returns at once,
            # instead of leaving a worker idle for up to a second.
            self._wake.clear()
            with self._lock:
                polls = len(self._polling)
                uploads = len(self._running) - polls
            free_uploads = max(0, self.settings.workers - uploads)
            free_polls = max(0, POLL_WORKERS - polls)
            free = free_uploads + free_polls
            claimed = 0
            if free > 0:  # both lanes in one transaction
                jobs = self.ledger.claim(self.owner, free_uploads, LEASE_SECONDS, self._only_ids,
                                         poll_limit=free_polls)
                for job in jobs:
                    self._submit(job)
                claimed = len(jobs)
            if time.monotonic() - last_renew > LEASE_SECONDS / 4:
                with self._lock:
                    ids = list(self._running)
                for jid in self.ledger.renew(self.owner, ids, LEASE_SECONDS):
                    self._cancel(jid)  # taken over: stop sending; its next write is refused
                last_renew = time.monotonic()
            # No second look when every free thread got a job: they are busy now, and each
            # one that finishes sets the wake-up event (cleared above, so none is missed).
            delay = 1.0
            if free > claimed:  # idle workers: sleep until the next retry/poll is due, or a wake-up
                nxt = self.ledger.next_wakeup()
                if nxt is not None:
                    delay = min(1.0, max(0.01, nxt - time.time()))
            self._wake.wait(delay)

    def _lease(self, job: Job) -> dict:
        """The fence every ledger write for `job` carries: this pool's lease as claimed."""
        return dict(owner=self.owner, generation=job.lease_gen)

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            entry = self._running.get(job_id)
        if entry is not None:
            entry[1].set()

    def _record_progress(self, job: Job, cancel: threading.Event, done: int, rate: float) -> None:
        try:
            self.ledger.progress(job.id, done, rate, self.owner, LEASE_SECONDS, generation=job.lease_gen)
        except LeaseLost:
            cancel.set()  # the upload stops; the refused write that follows reports the loss

    def _submit(self, job: Job) -> None:
        cancel = threading.Event()
        reporter = None if job.state == "committed" else ProgressReporter(
            job.size,
            record=lambda done, rate, j=job: self._record_progress(j, cancel, done, rate),
            announce=lambda done, rate, j=job: events.emit(
                "upload.progress", f"{j.path.name}: {100 * done // max(1, j.size)}% to {j.target}",
                bytes_done=done, percent=round(100 * done / max(1, j.size), 1), bytes_per_second=round(rate),
                **job_fields(j, self._provider_name(j))))
        with self._lock:
            poll = job.state == "committed"
            fut = (self._poller if poll else self._executor).submit(self._run, job, cancel, reporter)
            self._running[job.id] = (fut, cancel, reporter)
            if poll:
                self._polling.add(job.id)
        fut.add_done_callback(lambda f, jid=job.id: self._finished(jid))

    def _finished(self, job_id: int) -> None:
        with self._lock:
            self._running.pop(job_id, None)
            self._threads.pop(job_id, None)
            self._polling.discard(job_id)
        self._wake.set()

    def _provider_name(self, job: Job) -> str | None:
        t = self.targets.get(job.target)
        return t.provider if t else None

    # -- one job ----------------------------------------------------------------------------------
    def _run(self, job: Job, cancel: threading.Event, reporter: ProgressReporter | None) -> None:
        with self._lock:
            self._threads[job.id] = threading.current_thread()
        fields = job_fields(job, self._provider_name(job))
        provider = self.providers.get(job.target)
        try:
            if provider is None:
                self.ledger.failed(job.id, f"target {job.target!r} is not configured any more", **self._lease(job))
                events.emit("upload.failed", f"{job.path.name}: target {job.target} is not configured",
                            level="error", outcome="failure", **fields)
            elif job.state == "committed":
                self._poll_safely(job, provider, fields)
            else:
                assert reporter is not None
                self._settle(job, provider, cancel, reporter, fields)
        except LeaseLost:  # expired and taken over: the new holder's state stands; write nothing more
            events.emit("upload.lease_lost", f"{job.path.name}: lease on job {job.id} lost to another process; "
                        "leaving the job to it", level="warning", **fields)
        except Exception as e:  # the ledger itself failed (disk full): the lease runs out, the job comes back
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
            self.ledger.release(self.owner, [job.id], job.lease_gen)
            events.emit("upload.interrupted", f"{job.path.name}: stopped; will resume from its checkpoint",
                        **fields)
        except FileChanged as e:
            self.ledger.hold_for_change(job.id, str(e), **self._lease(job))
            events.emit("upload.restarted", f"{job.path.name} changed during upload; starting over once it is stable",
                        level="warning", reason="file changed", **fields)
            self._on_file_changed(job.path)
        except DuplicateRemoteId as e:
            events.emit("upload.duplicate_remote_id",
                        f"{job.path.name}: platform returned remote id {e.remote_id}, which job {e.other_job} "
                        "already holds for different content; needs attention", level="error", outcome="failure",
                        remote_id=e.remote_id, other_job_id=e.other_job, **fields)
        except ContentMismatch as e:  # rewritten with size and mtime kept: hash it again, send it again
            outcome = self.ledger.forget_content(job.id, self.owner, str(e), self.settings.retry.attempts,
                                                 job.lease_gen)
            if outcome is None:
                return  # no longer uploading
            state, attempts = outcome
            if state == "failed":
                events.emit("upload.failed", f"{job.path.name}: gave up after {attempts} attempts: {e}",
                            level="error", outcome="failure", error=str(e), error_type=type(e).__name__, **fields)
                return
            events.emit("upload.restarted", f"{job.path.name}: {job.target} says the content differs from its "
                        "fingerprint; hashing the file again and starting over", level="warning",
                        reason="content differs from its fingerprint", attempt=attempts, error=str(e), **fields)
        except PermanentError as e:
            self._fail(job, str(e), fields, type(e).__name__)
        except Exception as e:  # TransientError, OSError, or a bug: retry within limits, then fail
            self._transient(job, e, fields)

    def _transient(self, job: Job, e: BaseException, fields: dict) -> None:
        attempts = job.attempts + 1
        message = _describe(e)
        if attempts >= self.settings.retry.attempts:
            self._fail(job, f"gave up after {attempts} attempts: {message}", fields, type(e).__name__)
            return
        delay = self.settings.retry.delay(attempts)
        hint = getattr(e, "retry_after", None)
        if hint:
            delay = max(delay, min(float(hint), self.settings.retry.maximum))
        self.ledger.retry_later(job.id, message, delay, attempts, **self._lease(job))
        events.emit("upload.retrying", f"{job.path.name}: {message}; retry {attempts} in {delay:.1f}s",
                    level="warning", attempt=attempts, retry_in_seconds=round(delay, 2), error=message,
                    error_type=type(e).__name__, **fields)

    def _fail(self, job: Job, message: str, fields: dict, error_type: str) -> None:
        self.ledger.failed(job.id, message, **self._lease(job))
        events.emit("upload.failed", f"{job.path.name}: {message}", level="error", outcome="failure",
                    error=message, error_type=error_type, **fields)

    def _upload(self, job: Job, provider: Provider, cancel: threading.Event, reporter: ProgressReporter,
                fields: dict) -> None:
        try:
            st = os.stat(job.path)
            check_regular(job.path, st)  # a FIFO would block the worker in open(); a directory is no media
        except FileNotFoundError:
            self._fail(job, "file disappeared before it was uploaded", fields, "FileNotFoundError")
            return
        except NotRegularFile as e:  # permanent: no retries (queued by a one-shot of an older version)
            self._fail(job, e.reason, fields, type(e).__name__)
            return
        current = FileIdentity.of(st)
        if current != job.identity:
            raise FileChanged(f"{job.path} changed after it was queued")
        if job.md5 is None:  # the ledger's content column: an MD5, or "crc64:..." (see Provider.needs_md5)
            content = content_hash(job.path, job.identity, "md5" if provider.needs_md5 else "crc64", cancel=cancel,
                                   piece_size=provider.piece_size)
        else:
            content = ContentHash.from_fingerprint(job.md5)
        fingerprint, md5 = content.fingerprint, content.md5
        # One transaction records the fingerprint and looks for twins, so of two identical
        # files hashed at the same time exactly one is sent and the other waits for it.
        verdict, twin = self.ledger.record_content(job.id, fingerprint, self.settings.skip_duplicates,
                                                   **self._lease(job))
        if verdict == "skip":
            assert twin is not None
            self.ledger.skipped(job.id, f"same content as {twin.path} (job {twin.id})", twin.remote_id,
                                twin.remote_kind, **self._lease(job))
            events.emit("upload.skipped", f"{job.path.name}: identical content already on {job.target} "
                        f"as {twin.remote_id}", reason="duplicate content", remote_id=twin.remote_id,
                        remote_kind=twin.remote_kind, duplicate_of_job=twin.id, **fields)
            self.after.maybe_run(job)
            return
        if verdict == "wait":
            assert twin is not None
            self.ledger.retry_later(job.id, f"waiting for job {twin.id} with identical content", 2.0, job.attempts,
                                   **self._lease(job))
            return
        events.emit("upload.started", f"{job.path.name}: uploading to {job.target}", attempt=job.attempts + 1,
                    **fields)
        known: dict[str, str] = {}

        def remote_id_known(remote_id: str, remote_kind: str) -> None:
            if known.get(remote_id) == remote_kind:
                return
            if job.kind == "video" and remote_kind == "image":  # the video's cover: logged, not the job's id
                known[remote_id] = remote_kind
                events.emit("upload.remote_id", f"{job.path.name}: {job.target} assigned cover image id {remote_id}",
                            remote_id=remote_id, remote_kind=remote_kind, role="cover", **fields)
                return
            if job.remote_id == remote_id:  # recorded by an earlier attempt (the row as claimed)
                known[remote_id] = remote_kind
                return
            other = self.ledger.record_remote_id(job.id, remote_id, remote_kind, **self._lease(job))
            if other is not None:
                raise DuplicateRemoteId(remote_id, other)
            known[remote_id] = remote_kind
            events.emit("upload.remote_id", f"{job.path.name}: {job.target} assigned {remote_kind} id {remote_id}",
                        remote_id=remote_id, remote_kind=remote_kind, **fields)

        def note(action: str, message: str, level: str = "info", **extra: object) -> None:
            events.emit(action, f"{job.path.name}: {message}", level=level, **extra, **fields)

        ctx = UploadContext(checkpoint=self.ledger.checkpoint(job.id, self.owner, job.lease_gen), progress=reporter,
                            remote_id_known=remote_id_known, note=note, cancel=cancel, throttle=self.throttle,
                            retry=self.settings.request_retry)
        companions: dict[str, Path] = {}
        if job.kind == "video" and features(provider).cover:
            cover = cover_for(job.path)
            if cover is not None:
                companions["cover"] = cover
        request = UploadRequest(job_id=job.id, path=job.path, kind=job.kind, identity=job.identity, content=content,
                                metadata=job.metadata, companions=companions)
        started = time.monotonic()
        result = provider.upload(request, ctx)
        target = self.targets[job.target]
        final = not (target.wait_ready and features(provider).status)
        # the first status poll is scheduled in the same transaction (one fsync, not two)
        other = self.ledger.committed(job.id, result.remote_id, result.remote_kind, dict(result.details), final,
                                      poll_in=self.settings.poll_first, note="waiting for the platform to process it",
                                      **self._lease(job))
        if other is not None:
            raise DuplicateRemoteId(result.remote_id, other)
        elapsed = time.monotonic() - started
        events.emit("upload.completed", f"{job.path.name}: uploaded to {job.target} as {result.remote_id}",
                    outcome="success", remote_id=result.remote_id, remote_kind=result.remote_kind,
                    duration_seconds=round(elapsed, 3), bytes_per_second=round(job.size / elapsed) if elapsed else None,
                    md5=md5, crc64=None if md5 else fingerprint.partition(":")[2],
                    details=dict(result.details) or None, **fields)
        if final:
            self.after.maybe_run(job)

    def _poll_safely(self, job: Job, provider: Provider, fields: dict) -> None:
        """A status poll never sends the file again: errors only move the next poll or fail it."""
        try:
            self._poll(job, provider, fields)
        except LeaseLost:
            raise
        except PermanentError as e:
            self._media_failed(job, f"status check failed: {e}", fields)
        except Exception as e:  # transient or unexpected: poll again later, with backoff
            delay = min(self.settings.poll_max, self.settings.poll_first * (1.5 ** job.attempts))
            self.ledger.poll_later(job.id, delay, job.attempts + 1, f"status check failed: {_describe(e)}",
                                   **self._lease(job))

    def _poll(self, job: Job, provider: Provider, fields: dict) -> None:
        assert job.remote_id is not None and job.remote_kind is not None
        status = provider.media_status(job.remote_id, job.remote_kind)
        ids = dict(remote_id=job.remote_id, remote_kind=job.remote_kind)
        if status.state == "ready":
            self.ledger.done(job.id, status.remote_ids, **self._lease(job))
            events.emit("media.ready", f"{job.path.name}: {job.remote_id} is ready on {job.target}"
                        + (f" as {', '.join(status.remote_ids)}" if status.remote_ids else ""),
                        outcome="success", detail=status.detail or None, media_ids=list(status.remote_ids) or None,
                        **ids, **fields)
            self.after.maybe_run(job)
            return
        if status.state == "failed":
            self._media_failed(job, f"platform reports processing failed: {status.detail}", fields)
            return
        target = self.targets[job.target]
        waited = time.time() - (job.committed_at or time.time())
        if waited > target.ready_timeout:
            self._media_failed(job, f"not ready after {int(waited)}s (ready_timeout); last state {status.detail}",
                               fields)
            return
        delay = min(self.settings.poll_max, self.settings.poll_first * (1.5 ** job.attempts))
        self.ledger.poll_later(job.id, delay, job.attempts + 1, f"processing: {status.detail}",
                               **self._lease(job))

    def _media_failed(self, job: Job, message: str, fields: dict) -> None:
        self.ledger.failed(job.id, message, **self._lease(job))
        events.emit("media.failed", f"{job.path.name}: {message}", level="error", outcome="failure",
                    remote_id=job.remote_id, remote_kind=job.remote_kind, error=message, **fields)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and not isinstance(e, ProviderError) and e.strerror:
        text = f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return text

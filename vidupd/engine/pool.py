"""The worker pool: claims jobs from the ledger a bounded window at a time and runs them.

`workers` uploads at a time; each claimed job holds a lease renewed while it runs. A job is
either an upload (queued -> committed/done) or one status poll of a committed upload. Status
polls (one short request each) run on their own `POLL_WORKERS` threads, so a burst of
finished uploads waiting for "ready" never holds back the uploads still queued. Retries
by error type (vidupd.core.errors), their waits kept in the ledger (`not_before`): a waiting
retry holds no thread and survives a restart. A pause or `vidupd cancel` stops a running
upload through its cancel signal; vidupd.engine.stops says why and which outcome follows.

Every state change of a job is one `Ledger.apply` of an outcome value (vidupd.ledger.outcomes)
naming the lease the job was claimed with (`_lease`); the ledger commits it and returns the
event it implies, which `_apply` emits. Once one is refused (LeaseLost: the lease expired and
another process took the job) the job is dropped with a single `upload.lease_lost` event and
no further write, and a running upload whose lease a renewal or progress report finds lost
is stopped (LOST: no cancel, no abandon). The renewals, and stopping every upload when they
fail for half a lease, are vidupd.engine.lease_guard's; while it doubts the leases nothing
is claimed. One job, as a worker runs it, is vidupd.engine.job_steps (the Pool's mixin).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Mapping

from ..config import TargetConfig
from ..core import events
from ..core.announcements import Announcements
from ..core.errors import LeaseLost
from ..core.throttle import CancelSignal, Throttle
from ..ledger import Completed, Event, Job, Ledger, Outcome
from ..providers.base import Provider
from .after_upload import AfterUpload
from .claiming import claim_within_caps
from .job_steps import JobSteps
from .lease_guard import LeaseGuard
from .poll import describe as _describe
from .progress import ProgressReporter
from .pool_settings import POLL_WORKERS, PoolSettings, _left_behind, job_fields, settings_from, workers_left_behind
from .stops import CANCEL, LEASE, LOST, PAUSED, PauseScope, StopReasons

__all__ = ["Pool", "PoolSettings", "settings_from", "workers_left_behind"]


class Pool(JobSteps):
    def __init__(self, settings: PoolSettings, ledger: Ledger, targets: Mapping[str, TargetConfig],
                 providers: Mapping[str, Provider], throttle: Throttle, owner: str, after: AfterUpload,
                 on_file_changed: Callable[[Path], None] = lambda p: None, only_ids: list[int] | None = None,
                 announcements: Announcements | None = None):
        self.settings = settings
        self.announcements = announcements  # completions begun/ended around their event (core.announcements)
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
        self._uploads: dict[int, str] = {}  # the ids in _running that are uploads (not polls) -> their target
        self._claimed: dict[int, Job] = {}  # the jobs in _running, as claimed
        self._stranded: dict[int, int] = {}  # job id -> lease generation: ended with its outcome unrecorded
        self._stops = StopReasons()  # the pause in force; why a running upload was asked to stop
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_beat = time.monotonic()  # the dispatcher's heartbeat, for the systemd watchdog
        self.job_finished = threading.Event()  # set whenever a job's worker returns (for the one-shot's wait)
        self._guard = LeaseGuard(settings.lease, self._renew, self._held, self._taken_over, self._lease_expiring,
                                 where=ledger.where, is_failure=ledger.failure)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._guard.start()
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
            self._guard.lease = settings.lease
            self.targets = {**self.targets, **targets}
            self.providers = dict(providers)
        self._wake.set()

    def pause(self, everything: bool, targets: Collection[str], watches: Collection[str]) -> list[int]:
        """A pause: none of it is claimed, running uploads in it checkpoint and stop; their ids."""
        scope = self._stops.scope = PauseScope.of(everything, targets, watches)
        with self._lock:
            stopping = [jid for jid, job in self._claimed.items() if jid in self._uploads and scope.covers(job)]
        for jid in stopping:
            self._stops.mark(jid, PAUSED)
            self._cancel(jid)
        self._wake.set()
        return stopping

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
        self._guard.stop()
        left = [jid for jid, (fut, _, _) in running if not fut.done()]
        with self._lock:
            _left_behind.extend(t for jid, t in self._threads.items() if jid in left)
        try:
            self.ledger.release(self.owner)
        except Exception as e:  # cut off from the ledger: the leases run out by themselves instead
            if not self._guard.noticed(e):
                raise
        return left

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def positions(self) -> dict[int, tuple[int, float]]:
        """job id -> (bytes a progress bar shows, acknowledged bytes/s) of running uploads."""
        with self._lock:
            running = [(jid, p) for jid, (_, _, p) in self._running.items() if p is not None]
        return {jid: (p.shown, p.rate) for jid, p in running}

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
                if not self._guard.noticed(e):  # one ledger.unreachable per outage, not an error per try
                    events.emit("daemon.error", f"dispatcher: {_describe(e)}; retrying in 5 s", level="error",
                                error=_describe(e), error_type=type(e).__name__)
                self._stopping.wait(5.0)

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            self.last_beat = time.monotonic()
            if not self._guard.claims_ok():  # the leases are in doubt: claim nothing until the ledger answers
                self._wake.clear()
                self._wake.wait(1.0)
                continue
            self._unstrand()
            # Cleared before looking for work, not after the wait: a job that finishes (or a
            # file queued) while we claim sets it again and the wait below returns at once,
            # instead of leaving a worker idle for up to a second.
            self._wake.clear()
            with self._lock:
                per_target = list(self._uploads.values())  # the targets of the running uploads
                polls = len(self._running) - len(per_target)
            scope = self._stops.scope
            free_uploads = 0 if scope.everything else max(0, self.settings.workers - len(per_target))
            free_polls = max(0, POLL_WORKERS - polls)
            free = free_uploads + free_polls
            claimed = 0
            if free > 0:  # within the targets' caps (vidupd.engine.claiming); both lanes in one transaction
                claimed = claim_within_caps(self._claim, self._submit, dict(self.settings.target_workers),
                                            free_uploads, free_polls, per_target)
            if per_target:  # `vidupd cancel` of a job we hold: seen within a tick (<= 1 s)
                with self._lock:
                    ids = list(self._uploads)
                for jid in self.ledger.cancels_wanted(self.owner, ids):
                    self._stops.mark(jid, CANCEL)
                    self._cancel(jid)
            # No second look when every free thread got a job: they are busy now, and each
            # one that finishes sets the wake-up event (cleared above, so none is missed).
            delay = 1.0
            if free > claimed:  # idle workers: sleep until the next retry/poll is due, or a wake-up
                nxt = self.ledger.next_wakeup()
                if nxt is not None:
                    delay = min(1.0, max(0.01, nxt - time.time()))
            self._wake.wait(delay)

    def _claim(self, limit: int, polls: int, full: list[str]) -> list[Job]:
        """Full targets (their caps) and paused ones are skipped; paused watches too."""
        scope = self._stops.scope
        return self.ledger.claim(self.owner, limit, self.settings.lease, self._only_ids, poll_limit=polls,
                                 order=self.settings.order, skip_targets=sorted({*full, *scope.targets}),
                                 skip_watches=scope.watches)

    def _unstrand(self) -> None:
        """Give back the leases of jobs whose worker ended while the ledger took no writes (a
        full disk): queued again now, resumed from their checkpoints, instead of idling until
        the lease runs out (minutes after the disk had room again)."""
        with self._lock:
            stranded = {j: g for j, g in self._stranded.items() if j not in self._running}  # its worker is done
        for job_id, generation in stranded.items():
            try:
                self.ledger.release(self.owner, [job_id], generation)
            except LeaseLost:
                pass  # taken over meanwhile: the new holder's
            except Exception as e:
                if self._guard.noticed(e):
                    return  # still failing: the next turn tries again
                raise
            with self._lock:
                self._stranded.pop(job_id, None)

    # -- leases (vidupd.engine.lease_guard calls these) -------------------------------------------
    def ledger_failed(self, e: BaseException) -> bool:
        """Whether `e` (from a ledger call outside the pool: the watcher's intake) is the ledger
        failing; if so it counts towards the pool's one `ledger.unreachable` per outage."""
        return self._guard.noticed(e)

    def _renew(self, ids: list[int]) -> list[int]:
        if not ids:  # a probe: does the ledger take writes again? (a full disk still answers reads:
            self.ledger.check_writable()  # a read made ledger.unreachable/reachable flap every 5 s)
            return []
        return self.ledger.renew(self.owner, ids, self.settings.lease)

    def _held(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def _taken_over(self, job_id: int) -> None:
        self._stops.mark(job_id, LOST)  # stop sending; no write, no abandon: the new holder resumes it
        self._cancel(job_id)

    def _lease_expiring(self, waited: float) -> None:
        """The guard's LEASE stop: each running upload not told yet stops, with one event."""
        with self._lock:
            uploads = [job for jid, job in self._claimed.items() if jid in self._uploads]
        for job in uploads:
            if self._stops.reason(job.id) in (LEASE, LOST):
                continue
            self._stops.mark(job.id, LEASE)
            events.emit("upload.lease_expiring", f"{job.path.name}: no lease renewal for {waited:.0f} s (the ledger "
                        "does not answer); stopping the upload, for whichever host holds the job next to resume",
                        level="warning", waited_seconds=round(waited, 3), lease_seconds=self.settings.lease,
                        **job_fields(job, self._provider_name(job)))
            self._cancel(job.id)

    def _lease(self, job: Job) -> dict:
        """The fence every ledger write for `job` carries: this pool's lease as claimed."""
        return dict(owner=self.owner, generation=job.lease_gen)

    def _apply(self, job: Job, outcome: Outcome) -> Event | None:
        """Apply one outcome (fenced, committed) and emit the event it implied. A completion is
        bracketed in `announcements`, so a kill between the commit and its line is announced
        at the next start instead of lost."""
        guarded = self.announcements is not None and isinstance(outcome, Completed)
        if guarded:
            self.announcements.begin(job.id, job.lease_gen)
        try:
            event = self.ledger.apply(job.id, outcome, **self._lease(job))
            if event is not None:
                events.emit(event.action, event.message, level=event.level, provider=self._provider_name(job),
                            **event.fields)
        finally:
            if guarded:
                self.announcements.end(job.id)
        return event

    def _cancel(self, job_id: int) -> None:
        with self._lock:
            entry = self._running.get(job_id)
        if entry is not None:
            entry[1].set()

    def _record_progress(self, job: Job, cancel: threading.Event, done: int, rate: float) -> None:
        try:
            self.ledger.progress(job.id, done, rate, self.owner, self.settings.lease, generation=job.lease_gen)
        except LeaseLost:
            self._stops.mark(job.id, LOST)
            cancel.set()  # the upload stops; no write follows but the lease_lost event
        except Exception as e:  # the ledger does not answer: the upload goes on until the guard stops it
            if not self._guard.noticed(e):
                raise

    def _submit(self, job: Job) -> None:
        cancel = CancelSignal()  # also wakes the job's throttle waits at once
        if job.state != "committed" and self._stops.scope.covers(job):  # claimed as a pause came in
            self._stops.mark(job.id, PAUSED)
            cancel.set()
        reporter = None if job.state == "committed" else ProgressReporter(
            job.size,
            record=lambda done, rate, j=job: self._record_progress(j, cancel, done, rate),
            announce=lambda done, rate, j=job: events.emit(
                "upload.progress", f"{j.path.name}: {100 * done // max(1, j.size)}% to {j.target}",
                bytes_done=done, percent=round(100 * done / max(1, j.size), 1), bytes_per_second=round(rate),
                **job_fields(j, self._provider_name(j))))
        with self._lock:
            if job.state != "committed":  # an upload, not a status poll
                self._uploads[job.id] = job.target
            fut = (self._executor if job.id in self._uploads else self._poller).submit(self._run, job, cancel, reporter)
            self._running[job.id] = (fut, cancel, reporter)
            self._claimed[job.id] = job
        fut.add_done_callback(lambda f, jid=job.id: self._finished(jid))

    def _finished(self, job_id: int) -> None:
        with self._lock:
            self._running.pop(job_id, None)
            self._threads.pop(job_id, None)
            self._uploads.pop(job_id, None)
            self._claimed.pop(job_id, None)
        self._stops.forget(job_id)
        self._wake.set()
        self.job_finished.set()

    def _provider_name(self, job: Job) -> str | None:
        t = self.targets.get(job.target)
        return t.provider if t else None

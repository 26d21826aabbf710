"""`vidupd upload`: send given files now, through the same ledger, pool and providers as
the daemon (so a file the daemon already sent is not sent again), with a progress bar."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..config import Config
from ..core import events
from ..core.model import FileIdentity
from ..core.throttle import Throttle
from ..core.units import human_rate
from ..engine.after_upload import AfterUpload
from ..engine.pool import Pool, settings_from
from ..intake.examine import examine
from ..ledger import HELD, Job, Ledger, LedgerShared, lease_owner_id, open_ledger
from ..service.bandwidth import RateGovernor, announce
from ..service.controls import load_pause
from ..service.daemon import build_providers
from .status_view import human_duration

SETTLED = ("committed", "done", "skipped", "failed", "attention")
RESETTLE_SECONDS = 2.0
FINAL = ("done", "skipped", "failed", "attention")
STOP_TIMEOUT = 10.0  # at most this (or the config's stop_timeout) for uploads to checkpoint after Ctrl-C/SIGTERM


def upload_files(config: Config, target: str, files: list[Path], say: Callable[[str], None],
                 complain: Callable[[str], None], progress: bool = True, wait_ready: bool = False) -> int:
    """Upload `files` to `target`; return once each is committed (or, with `wait_ready`,
    processed by the platform). One result line per file goes to `say`, problems to
    `complain` (the CLI's stdout and stderr). Exit status 0 if all went through."""
    events.configure(config.log, mirror=False)  # its own result lines say what happened
    ledger = open_ledger(config, config.state_dir)
    shared = LedgerShared(ledger)
    if _paused(shared, target, complain):  # a paused target starts nothing, here as in the daemon
        ledger.close()
        return 1
    ledger.recover()
    provider = build_providers(config, ledger, only=target)[target]
    settled = FINAL if wait_ready else SETTLED
    ids: list[int] = []
    status = 0
    for f in files:
        path = f.expanduser().resolve()
        try:
            st = os.stat(path)
        except OSError as e:
            complain(f"{f}: {e.strerror}")
            status = 1
            continue
        # the same decision as the daemon's intake; a cover named on the command line is sent on its own
        seen = examine(path, st, "auto", {target: provider}, covers_travel_with_videos=False)
        if seen.not_regular is not None:  # a FIFO would block the upload in open(); no job for it
            complain(f"{f}: refused: {seen.refusal}")
            status = 1
            continue
        if not seen.wanted:
            complain(f"{f}: {provider.name} does not take this kind of file")
            status = 1
            continue
        if seen.sidecar_error is not None:
            complain(str(seen.sidecar_error))
            status = 1
            continue
        assert seen.metadata is not None
        (offer,) = ledger.offer(path, None, list(seen.wanted), seen.identity, seen.metadata)
        ids.append(offer.job_id)
    if not ids:
        ledger.close()
        return status or 1
    throttle = Throttle(None)
    governor = RateGovernor(throttle, LedgerShared(ledger), config)  # max_rate, and `vidupd limit` beside the daemon
    pool = Pool(settings_from(config), ledger, config.targets, {target: provider}, throttle,
                lease_owner_id(), AfterUpload(ledger, dict), only_ids=ids)
    total = sum(j.size for j in map(ledger.get, ids) if j)
    # SI units like `status`; the rate and ETA are vidupd's (acknowledged bytes, averaged), not tqdm's
    # guess from the bar's jumps; the bar itself moves as blocks go out (ProgressReporter.shown)
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr,
               disable=not (progress and sys.stderr.isatty()), desc=f"to {target}",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B{postfix}",
               miniters=1, mininterval=0.2)  # no dynamic miniters: a slow stretch still redraws
    pool.start()
    changed = _Resettle(ledger, target)
    handlers = _interrupt_on_sigterm()
    interrupted = False
    budget = min(config.stop_timeout, STOP_TIMEOUT)  # someone waits at a terminal
    next_look = time.monotonic() + 1.0
    try:
        while True:
            if time.monotonic() >= next_look:  # paused meanwhile: the uploads checkpoint and stop
                next_look = time.monotonic() + 1.0
                if _paused(shared, target, complain):
                    status = 1
                    break
            pool.job_finished.clear()  # before looking: a job that ends meanwhile wakes the wait below
            change = governor.tick()
            if change is not None:
                announce(change)
            jobs = [j for j in map(ledger.get, ids) if j]
            changed.check([j for j in jobs if j.not_before >= HELD])  # no watcher here: settle them ourselves
            running = pool.positions()
            done_bytes = sum(j.size if j.state in SETTLED else running.get(j.id, (j.bytes_done, 0.0))[0]
                             for j in jobs)
            bar.update(max(0, done_bytes - bar.n))
            rate = sum(r for _, r in running.values())
            left = f", ETA {human_duration((total - bar.n) / rate)}" if rate > 0 and bar.n < total else ""
            bar.set_postfix_str(f"{human_rate(rate)}{left}" if rate > 0 else "", refresh=False)
            if all(j.state in settled for j in jobs) and not pool.busy:
                break
            pool.job_finished.wait(0.2)  # the bar moves every 0.2 s; the end is seen at once
    except KeyboardInterrupt:
        status, interrupted = 1, True
        complain(f"stopping: running uploads get up to {budget:g}s to checkpoint (again to quit at once)")
    finally:
        _restore(handlers, force=interrupted)
        left = pool.stop(timeout=budget)
        bar.close()
    for jid in left:
        complain(f"job {jid}: still running after {budget:g}s; left to resume next time")
    for j in map(ledger.get, ids):
        if j is None:
            continue
        ok = j.state in ("committed", "done", "skipped")
        status = status if ok else 1
        # a URL pull's own id names the pull job; once it is done, the media it made are what counts
        shown = ",".join(j.media_ids) if j.media_ids else j.remote_id or ""
        say(f"{j.path}\t{j.target}\t{j.state}\t{shown}\t{'' if ok else j.last_error or ''}")
    provider.close()
    ledger.close()
    return status


def _paused(shared: LedgerShared, target: str, complain: Callable[[str], None]) -> bool:
    """Whether `vidupd pause` holds this target (or everything); says so. A one-shot does not
    wait for a resume: it exits 1, and a later `vidupd upload` continues from the checkpoint."""
    pause = load_pause(shared)
    if not pause.covers(target, None):
        return False
    entry = next(e for e in pause.entries if e.scope == "all" or (e.scope == "target" and e.name == target))
    since = time.strftime("%H:%M:%S", time.localtime(entry.since))
    complain(f"{target}: paused ({'everything' if entry.scope == 'all' else 'this target'}, since {since} by "
             f"{entry.by}); nothing more is sent until `vidupd resume`; run the upload again then")
    return True


def _interrupt_on_sigterm() -> dict[int, object] | None:
    """SIGTERM takes the Ctrl-C path (uploads checkpoint, leases are given back)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    return {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt), signal.SIGINT: signal.getsignal(signal.SIGINT)}


def _restore(handlers: dict[int, object] | None, force: bool) -> None:
    """Put the signal handlers back; after an interrupt, a second Ctrl-C or SIGTERM ends the
    process at once (the next start frees the leases of a process that is gone)."""
    if handlers is None:
        return
    for sig, previous in handlers.items():
        signal.signal(sig, signal.SIG_DFL if force else previous)  # type: ignore[arg-type]


class _Resettle:
    """A file that changed during a one-shot upload is held by the ledger until it is stable
    again; the daemon's watcher would notice that, here we look ourselves and offer it anew."""

    def __init__(self, ledger: Ledger, target: str):
        self._ledger = ledger
        self._target = target
        self._seen: dict[int, tuple[FileIdentity, float]] = {}

    def check(self, held: list[Job]) -> None:
        now = time.monotonic()
        for job in held:
            try:
                identity = FileIdentity.of(os.stat(job.path))
            except OSError:
                continue
            last = self._seen.get(job.id)
            if last is None or last[0] != identity:
                self._seen[job.id] = (identity, now)
            elif now - last[1] >= RESETTLE_SECONDS:
                self._ledger.offer(job.path, job.watch, [(self._target, job.kind)], identity, job.metadata)
                del self._seen[job.id]

"""Wiring of the running daemon: config -> watcher -> ledger -> pool -> providers, signals,
systemd notifications, reload and the status line.

Signals: SIGTERM/SIGINT stop gracefully (no new uploads, running ones checkpoint, exit 0);
SIGHUP reopens the event log and reloads the config (vidupd.service.reload says what can change).
Under systemd (NOTIFY_SOCKET): READY=1 once the ledger is recovered and the watches are up,
STATUS= kept current, WATCHDOG=1 while the dispatcher and watcher are alive,
RELOADING=1/READY=1 around a reload, STOPPING=1 on the way out.
Operator controls (`vidupd pause` / `resume`) are read from the ledger once per main-loop
tick (vidupd.service.controls) and applied to the pool; STATUS= says what is paused. The
same tick beats this process's heartbeat row (vidupd.service.heartbeat: `vidupd hosts`).
"""

from __future__ import annotations

import signal
import threading
import time

from .. import __version__, config as config_mod, providers
from ..config import Config, ConfigError
from ..core import events
from ..core.announcements import ANNOUNCEMENTS, Announcements
from ..core.secrets import redact
from ..core.state_lock import AlreadyRunning, DaemonLock
from ..core.statedir import make_dirs
from ..core.throttle import Throttle
from ..core.units import human_rate
from ..engine.after_upload import AfterUpload
from ..engine.pool import Pool, settings_from
from ..intake.offers import Intake
from ..intake.rescan_turn import RescanTurns
from ..intake.watcher import Watcher
from ..ledger import Ledger, LedgerShared, lease_owner_id, open_ledger
from ..providers.base import Provider
from . import reload as reload_mod
from .bandwidth import RateGovernor, announce
from .controls import PauseSet, load_pause
from .heartbeat import Heartbeat
from .housekeeping import Housekeeper
from .notify import Notifier
from .reemit import announce_pending, reemitter
from .webhooks import Webhooks

STOP_TIMEOUT = config_mod.STOP_TIMEOUT  # default `stop_timeout`: seconds running uploads get to checkpoint
# on SIGTERM (TimeoutStopSec=90s in the unit); after it the daemon exits without them
STUCK_AFTER = 120.0  # dispatcher silent this long (= the lease time) -> stop feeding the systemd watchdog
STATUS_EVERY = 1.0  # seconds between STATUS= checks (sent only when the line changed)


def _build_provider(config: Config, name: str, ledger: Ledger) -> Provider:
    target = config.targets[name]
    cls = providers.provider_class(target.provider)
    state = config.state_dir / "targets" / name
    make_dirs(state)
    return cls(name, target.settings, state, LedgerShared(ledger))


def build_providers(config: Config, ledger: Ledger, only: str | None = None) -> dict[str, Provider]:
    """Providers for every target, or just `only` (a one-shot command needs one); what they
    share between processes (rotating tokens) lives in `ledger`."""
    names = [only] if only is not None else list(config.targets)
    return {name: _build_provider(config, name, ledger) for name in names}


def healthy(pool: Pool, watcher: Watcher, now: float, stuck_after: float = STUCK_AFTER) -> str | None:
    """None when healthy, else why not (the systemd watchdog is then left to expire)."""
    silent = now - pool.last_beat
    if silent >= stuck_after:
        return f"dispatcher silent for {silent:.0f}s"
    if not watcher.alive:
        return "watcher thread stopped"
    return None


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.notifier = Notifier()
        self.providers: dict[str, Provider] = {}
        self.watches: dict = {}
        self._retired: list[Provider] = []  # replaced by a reload; closed when idle or at stop
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._unhealthy: str | None = None
        self._pause = PauseSet()  # as last applied (vidupd.service.controls)

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self, *_: object) -> None:
        self._reload.set()
        self._wake.set()

    # -- life cycle ------------------------------------------------------------------------
    def run(self) -> int:
        """The daemon's life; AlreadyRunning (the CLI exits 2) when another one holds state_dir.
        The lock comes first, so a refused second daemon writes nothing, not even events."""
        try:
            lock = DaemonLock(self.config.state_dir).acquire()
        except AlreadyRunning as e:
            self.notifier.status(f"failed to start: {e}")
            raise
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> int:
        config = self.config
        events.configure(config.log)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        for w in config.warnings:
            events.emit("config.warning", str(w), level="warning", key=w.key)
        self.notifier.status("starting: opening the ledger")
        try:
            ledger = open_ledger(config, config.state_dir)
            recovered = ledger.recover()
            self.providers = build_providers(config, ledger)
        except Exception as e:  # systemctl status shows why it did not start (the CLI prints it too)
            self.notifier.status(f"failed to start: {type(e).__name__}: {redact(str(e))}")
            raise
        self.throttle = Throttle(None)
        self.governor = RateGovernor(self.throttle, LedgerShared(ledger), config)  # max_rate, timetable, limit
        owner = lease_owner_id()
        self._heartbeat = Heartbeat(ledger, owner, lambda: pool.busy)  # `vidupd hosts`; beaten by the loop
        self.watches = {str(w.path): w for w in config.watches}
        after = AfterUpload(ledger, lambda: self.watches)
        watcher: Watcher | None = None
        announcements = Announcements(config.state_dir / ANNOUNCEMENTS)
        pool = Pool(settings_from(config), ledger, config.targets, self.providers, self.throttle, owner, after,
                    on_file_changed=lambda p: watcher.touch(p) if watcher else None, announcements=announcements)
        intake = Intake(ledger, lambda: self.config.targets, lambda: self.providers, pool.wake)
        watcher = Watcher(config.watches, config.rescan_interval, intake.files_ready,
                          lambda r: intake.refused(r.path, r.reason),
                          rescan_turn=RescanTurns(ledger, lambda: self.config.rescan_interval, owner),
                          ledger_failed=pool.ledger_failed)
        self.notifier.status(f"starting: scanning {len(config.watches)} folder(s)")
        hooks = Webhooks(config.notify).start()  # [[notify]]: read at start (a change needs a restart)
        endpoint = None
        if config.metrics_listen:  # imported only when on: prometheus-client costs nothing otherwise
            from .metrics import serve

            endpoint = serve(config.metrics_listen, ledger, lambda: len(pool.snapshot()),
                             lambda: healthy(pool, watcher, time.monotonic()), config.state_dir, config.targets)
        self._controls(LedgerShared(ledger), pool)  # a pause from before the restart holds from the first claim
        self._announce_pending(ledger, announcements)  # before the pool: it appends to the same file
        pool.start()
        watcher.start()
        events.emit("daemon.started", f"vidupd {__version__} watching {len(config.watches)} folder(s)",
                    version=__version__, config=str(config.source), workers=config.workers,
                    watches=[str(w.path) for w in config.watches], targets=sorted(config.targets),
                    recovered_leases=recovered, max_rate=self.governor.current.rate or events.NULL,
                    rate_source=self.governor.current.source)
        self.notifier.ready(self._status_line(ledger, pool, watcher))
        housekeeper = Housekeeper(ledger, lambda: self.config.retain_days)
        housekeeper.start()
        undo_reemit = events.on_completed_dropped(reemitter(ledger))
        self._loop(ledger, pool, watcher, LedgerShared(ledger))
        housekeeper.stop()

        events.emit("daemon.stopping", "stopping: running uploads checkpoint and stop", running=pool.busy)
        self.notifier.stopping(f"stopping: {pool.busy} upload(s) checkpointing")
        watcher.stop()
        budget = self.config.stop_timeout
        left = pool.stop(timeout=budget)
        if left:
            self._left_behind(ledger, left, budget)
        self._heartbeat.stopped()
        for p in [*self.providers.values(), *self._retired]:
            try:
                p.close()
            except Exception:  # closing must not turn a clean stop into a failure
                pass
        if endpoint is not None:
            endpoint.stop()
        hooks.stop()
        counts = ledger.counts()
        undo_reemit()
        announcements.close()
        ledger.close()
        events.emit("daemon.stopped", "stopped", jobs=counts, left_running=len(left) or None)
        return 0

    def _announce_pending(self, ledger: Ledger, announcements: Announcements) -> None:
        """Completions the previous process committed but was killed before logging."""
        try:
            announce_pending(ledger, announcements, lambda t: getattr(self.config.targets.get(t), "provider", None))
        except Exception as e:  # the ledger does not answer yet: the file is kept for the next start
            events.emit("daemon.error", f"could not check the completions of the previous run: "
                        f"{type(e).__name__}: {redact(str(e))}", level="error")

    @staticmethod
    def _left_behind(ledger: Ledger, left: list[int], budget: float) -> None:
        """The stop budget ran out with uploads still running (a worker stuck in a system call,
        a platform that stopped answering): say which; the daemon exits without them. Their
        leases are already given back (Pool.stop), so the next start resumes them at once."""
        jobs = [dict(job_id=j.id, path=str(j.path), target=j.target) for j in map(ledger.get, left) if j]
        names = ", ".join(f"job {j['job_id']} ({j['path']} to {j['target']})" for j in jobs)
        events.emit("daemon.stop_timeout", f"stop budget of {budget:g}s spent; exiting without {len(jobs)} "
                    f"upload(s) still running: {names}; the next start resumes them", level="warning",
                    outcome="failure", stop_timeout=budget, left=jobs)

    def _loop(self, ledger: Ledger, pool: Pool, watcher: Watcher, shared: LedgerShared) -> None:
        interval = self.notifier.watchdog_interval
        now = time.monotonic()
        next_status = now + STATUS_EVERY
        next_ping = now
        while not self._stop.is_set():
            self._wake.clear()
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload(ledger, pool, watcher)
            self._controls(shared, pool)
            change = self.governor.tick()  # the timetable, and `vidupd limit` (control.rate in the ledger)
            if change is not None:
                announce(change)
            self._heartbeat.tick()  # every BEAT_EVERY s; a failed beat is dropped
            events.flush()  # event lines a full log disk held back, once it takes them again
            now = time.monotonic()
            if interval and now >= next_ping:
                self._watchdog(pool, watcher, now)
                next_ping = now + interval
            if now >= next_status:
                self.notifier.status(self._status_line(ledger, pool, watcher))
                next_status = now + STATUS_EVERY
                if self._retired and pool.busy == 0:
                    self._close_retired()
            deadline = min(next_status, next_ping) if interval else next_status
            until = self.governor.current.until if self.governor.current else None
            left = until - time.time() if until is not None else -1.0
            if left > 0:  # wake at a timetable boundary or the end of a limit, not up to 1 s late
                deadline = min(deadline, now + left)
            self._wake.wait(max(0.01, deadline - time.monotonic()))

    def _controls(self, shared: LedgerShared, pool: Pool) -> None:
        """Apply the operator's controls stored in the ledger (`vidupd pause` / `resume`), once
        per tick; what changed is logged as `daemon.paused` / `daemon.resumed`."""
        try:
            new = load_pause(shared)
        except Exception:  # the ledger is busy or failing: the next tick looks again
            return
        old, self._pause = self._pause, new
        if new.key() == old.key():
            return
        stopping = pool.pause(new.everything, new.targets, new.watches)
        added = [e for e in new.entries if (e.scope, e.name) not in old.key()]
        gone = [e for e in old.entries if (e.scope, e.name) not in new.key()]
        if added:
            names = PauseSet(tuple(added)).names()
            events.emit("daemon.paused", f"paused: {', '.join(names)}; {len(stopping)} running upload(s) "
                        "checkpoint and stop", scope=names, paused=new.names(), by=sorted({e.by for e in added}),
                        stopping=stopping or None)
        if gone:
            names = PauseSet(tuple(gone)).names()
            still = f"; still paused: {new.describe()}" if new.entries else ""
            events.emit("daemon.resumed", f"resumed: {', '.join(names)}{still}", scope=names,
                        paused=new.names() or None)

    def _watchdog(self, pool: Pool, watcher: Watcher, now: float) -> None:
        problem = healthy(pool, watcher, now)
        if problem is None:
            if self._unhealthy is not None:
                events.emit("daemon.recovered", f"healthy again after: {self._unhealthy}")
                self._unhealthy = None
            self.notifier.watchdog()
            return
        if self._unhealthy is None:
            events.emit("daemon.unhealthy", f"{problem}; no more watchdog pings, systemd will restart vidupd",
                        level="error", outcome="failure", reason=problem)
            self.notifier.status(f"unhealthy: {problem}", force=True)
        self._unhealthy = problem

    # -- reload ------------------------------------------------------------------------------
    def _do_reload(self, ledger: Ledger, pool: Pool, watcher: Watcher) -> None:
        """SIGHUP: reopen the event log, then apply the config file again if it is valid."""
        self.notifier.reloading("reloading configuration")
        events.reopen()
        try:
            self._apply(pool, watcher)
        except Exception as e:  # a bug must not take the running daemon down with it
            events.emit("daemon.reload_failed", f"reload failed: {type(e).__name__}: {redact(str(e))}",
                        level="error", outcome="failure", config=str(self.config.source),
                        error=redact(str(e)), error_type=type(e).__name__)
        finally:
            self.notifier.ready(self._status_line(ledger, pool, watcher))

    def _refuse(self, problems: list[str]) -> None:
        problems = [redact(p) for p in problems]
        events.emit("daemon.reload_failed",
                    f"reload refused, still running the previous configuration: {'; '.join(problems)}",
                    level="error", outcome="failure", config=str(self.config.source), problems=problems)

    def _apply(self, pool: Pool, watcher: Watcher) -> None:
        old = self.config
        try:
            new = config_mod.load(old.source)
        except ConfigError as e:
            self._refuse([str(p) for p in e.problems if not p.warning] or [str(e)])
            return
        plan = reload_mod.plan(old, new)
        if plan.problems:
            self._refuse(list(plan.problems))
            return
        built: dict[str, Provider] = {}
        try:
            for name in new.targets:
                if name not in plan.keep_providers:
                    built[name] = _build_provider(new, name, pool.ledger)
        except Exception as e:
            for p in built.values():
                p.close()
            self._refuse([f"{new.source}: targets.{name}: {type(e).__name__}: {e}"])
            return
        for name, p in self.providers.items():
            if name not in plan.keep_providers:
                self._retired.append(p)  # running jobs may still use it
        self.providers = {name: built.get(name) or self.providers[name] for name in new.targets}
        self.config = new
        self.watches = {str(w.path): w for w in new.watches}
        rate_change = self.governor.reconfigure(new)
        pool.reconfigure(settings_from(new), new.targets, self.providers)
        watcher.rescan_interval = new.rescan_interval
        unwatched = watcher.set_watches(new.watches)
        summary = "; ".join(plan.changes) or "no changes"
        # logged before the new log settings apply: a reload to level "warning" still records itself
        events.emit("daemon.reloaded", f"configuration reloaded: {summary}", config=str(new.source),
                    changes=list(plan.changes), workers=new.workers, watches=[str(w.path) for w in new.watches],
                    targets=sorted(new.targets))
        if rate_change is not None:
            announce(rate_change)
        if new.log != old.log:
            events.configure(new.log)
        for w in new.warnings:
            events.emit("config.warning", str(w), level="warning", key=w.key)
        for path, why in unwatched:
            events.emit("watch.failed", f"{path}: cannot watch for changes ({why}); only the periodic rescan "
                        f"(every {new.rescan_interval:.0f}s) finds files there", level="error", outcome="failure",
                        path=str(path), error=why)

    def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for p in retired:
            try:
                p.close()
            except Exception:
                pass

    # -- status ------------------------------------------------------------------------------
    def _status_line(self, ledger: Ledger, pool: Pool, watcher: Watcher) -> str:
        counts = ledger.counts()
        snap = pool.snapshot()
        n = len(self.config.watches)
        parts = [f"watching {n} folder{'s' if n != 1 else ''}"]
        if self._pause.entries:
            parts.append(f"paused: {self._pause.describe()}")
        if snap:
            done = sum(s[1] for s in snap)
            size = sum(s[2] for s in snap) or 1
            rate = sum(s[3] for s in snap)
            parts.append(f"{len(snap)} uploading ({100 * done // size}%, {human_rate(rate)})")
        force = self.governor.current
        if force is not None and (force.rate or force.reason != "config"):
            parts.append(f"max_rate {force.describe()}")  # where the cap comes from: config, timetable, limit
        queued = counts.get("queued", 0)
        parts.append(f"{queued} queued")
        if watcher.pending:
            parts.append(f"{watcher.pending} settling")
        if counts.get("committed"):
            parts.append(f"{counts['committed']} processing")
        parts.append(f"{counts.get('done', 0)} done")
        if counts.get("failed"):
            parts.append(f"{counts['failed']} failed")
        if counts.get("attention"):
            parts.append(f"{counts['attention']} need attention")
        if self._unhealthy:
            parts.append(f"unhealthy: {self._unhealthy}")
        return "; ".join(parts)

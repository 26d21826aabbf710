"""Wiring of the running daemon: config -> watcher -> ledger -> pool -> providers, signals,
systemd notifications and the status line."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from . import __version__, events, providers
from .after_upload import AfterUpload
from .config import Config
from .intake import Intake
from .ledger import Ledger, lease_owner_id
from .notify import Notifier
from .pool import Pool, settings_from
from .providers.base import Provider
from .throttle import Throttle
from .watcher import Watcher

STOP_TIMEOUT = 60.0  # seconds running uploads get to checkpoint on SIGTERM
STUCK_AFTER = 120.0  # dispatcher silent this long -> stop feeding the systemd watchdog


def build_providers(config: Config) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for name, target in config.targets.items():
        cls = providers.provider_class(target.provider)
        state = config.state_dir / "targets" / name
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        out[name] = cls(name, target.settings, state)
    return out


def human_rate(bps: float) -> str:
    for unit in ("B/s", "kB/s", "MB/s", "GB/s"):
        if bps < 1000 or unit == "GB/s":
            return f"{bps:.1f} {unit}" if unit != "B/s" else f"{bps:.0f} {unit}"
        bps /= 1000
    return ""


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.notifier = Notifier()
        self._stop = threading.Event()
        self._reload = threading.Event()

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        config = self.config
        events.configure(config.log)
        for w in config.warnings:
            events.emit("config.warning", str(w), level="warning", key=w.key)
        ledger = Ledger(config.state_dir)
        recovered = ledger.recover()
        provs = build_providers(config)
        throttle = Throttle(config.max_rate)
        owner = lease_owner_id()
        watches = {str(w.path): w for w in config.watches}
        after = AfterUpload(ledger, lambda: watches)
        watcher: Watcher | None = None
        pool = Pool(settings_from(config), ledger, config.targets, provs, throttle, owner, after,
                    on_file_changed=lambda p: watcher.touch(p) if watcher else None)
        intake = Intake(ledger, lambda: config.targets, lambda: provs, pool.wake)
        watcher = Watcher(config.watches, config.rescan_interval, intake.files_ready,
                          lambda r: intake.refused(r.path, r.reason))
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        pool.start()
        watcher.start()
        events.emit("daemon.started", f"vidupd {__version__} watching {len(config.watches)} folder(s)",
                    version=__version__, config=str(config.source), workers=config.workers,
                    watches=[str(w.path) for w in config.watches], targets=sorted(config.targets),
                    recovered_leases=recovered)
        self.notifier.ready(self._status_line(ledger, pool, watcher))
        last_status = 0.0
        last_ping = 0.0
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                events.reopen()
                events.emit("daemon.reopened", "event log reopened")
            if now - last_status >= 2.0:
                self.notifier.status(self._status_line(ledger, pool, watcher))
                last_status = now
            interval = self.notifier.watchdog_interval
            if interval and now - last_ping >= interval and now - pool.last_beat < STUCK_AFTER:
                self.notifier.watchdog()
                last_ping = now
        events.emit("daemon.stopping", "stopping: running uploads checkpoint and stop", running=pool.busy)
        self.notifier.stopping("stopping: checkpointing uploads")
        watcher.stop()
        pool.stop(timeout=STOP_TIMEOUT)
        for p in provs.values():
            p.close()
        counts = ledger.counts()
        ledger.close()
        events.emit("daemon.stopped", "stopped", jobs=counts)
        return 0

    def _status_line(self, ledger: Ledger, pool: Pool, watcher: Watcher) -> str:
        counts = ledger.counts()
        snap = pool.snapshot()
        parts = [f"watching {len(self.config.watches)} folder{'s' if len(self.config.watches) != 1 else ''}"]
        if snap:
            done = sum(s[1] for s in snap)
            size = sum(s[2] for s in snap) or 1
            rate = sum(s[3] for s in snap)
            parts.append(f"{len(snap)} uploading ({100 * done // size}%, {human_rate(rate)})")
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
        return "; ".join(parts)

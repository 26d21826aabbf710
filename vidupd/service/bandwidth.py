"""Which bandwidth cap is in force, and setting it on the throttle as it changes.

The cap is `vidupd limit`'s override while it lasts (vidupd.service.controls), else the
configured `max_rate` (a rate, or the timetable entry in force in the host's local time).
Per-target caps (`[targets.NAME] max_rate`) follow their own schedules under it. The daemon
(and a one-shot `vidupd upload` beside it) calls `RateGovernor.tick` once per main-loop tick;
a change applies to the throttle at once and comes back as a `RateChange` for the
`rate.changed` event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from ..config import Config
from ..core import events
from ..core.model import SharedStore
from ..core.rate_schedule import RateSchedule
from ..core.throttle import Throttle
from ..core.units import human_rate
from .rate_override import RateOverride, load_rate_override


@dataclass(frozen=True)
class InForce:
    """The global cap now: `rate` bytes/s (None: no cap), and where it comes from."""

    rate: int | None
    reason: str  # "config", "timetable" or "limit"
    source: str  # for people: "config", "timetable entry 08:00,10M", "vidupd limit until 10:00:00 (by ...)"
    until: float | None = None  # when it changes next, if known (epoch seconds)

    def describe(self) -> str:
        shown = human_rate(self.rate) if self.rate else "no cap"
        return f"{shown} ({self.source})"


def _clock_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def in_force(schedule: RateSchedule | None, override: RateOverride | None, now: float) -> InForce:
    if override is not None and override.active(now):
        until = f"until {_clock_time(override.until)}" if override.until else "until cleared"
        return InForce(override.rate, "limit", f"vidupd limit {until}, by {override.by}", override.until)
    if schedule is None:
        return InForce(None, "config", "config: no max_rate")
    if not schedule.is_timetable:
        return InForce(schedule.rate_at(now), "config", "config")
    entry = schedule.entry_at(now)
    nxt = schedule.next_change(now)
    return InForce(entry.rate, "timetable", f"timetable entry {entry.text}", nxt)


def global_in_force(config: Config, store: SharedStore, now: float | None = None) -> InForce:
    """What `status` and `vidupd limit` show: the override if it lasts, else the config's."""
    return in_force(config.max_rate, load_rate_override(store), time.time() if now is None else now)


@dataclass(frozen=True)
class RateChange:
    """The global cap changed: to `now` (InForce), because of `reason` (timetable, limit,
    reload, expired)."""

    now: InForce
    reason: str


class RateGovernor:
    """Keeps the throttle's caps at what is in force; `tick` is cheap (one ledger read)."""

    def __init__(self, throttle: Throttle, store: SharedStore, config: Config):
        self._throttle = throttle
        self._store = store
        self._schedule = config.max_rate
        self._targets: Mapping[str, RateSchedule | None] = {n: t.max_rate for n, t in config.targets.items()}
        self._override: RateOverride | None = None
        self.current: InForce | None = None
        self.tick()

    def reconfigure(self, config: Config) -> RateChange | None:
        """A reload: the new schedules apply at once."""
        self._schedule = config.max_rate
        self._targets = {n: t.max_rate for n, t in config.targets.items()}
        return self.tick(reason="reload")

    def tick(self, now: float | None = None, reason: str | None = None) -> RateChange | None:
        """Apply what is in force at `now`; a RateChange when the global cap or its source
        changed (`reason`: given by the caller, else limit, expired or timetable)."""
        now = time.time() if now is None else now
        try:
            override = load_rate_override(self._store)
        except Exception:  # a busy or failing ledger read must not stop the loop: keep the last one
            override = self._override
        self._override = override
        for name, schedule in self._targets.items():
            rate = schedule.rate_at(now) if schedule is not None else None
            cap = self._throttle.child(name)
            if cap.rate != (rate or 0):
                cap.rate = rate
        force = in_force(self._schedule, override, now)
        before, self.current = self.current, force
        if self._throttle.rate != (force.rate or 0):
            self._throttle.rate = force.rate
        if before is None or (before.rate, before.source) == (force.rate, force.source):
            return None  # at the start daemon.started says it
        if reason is None:
            if force.reason == "limit":
                reason = "limit"
            elif before.reason == "limit":
                reason = "limit" if override is None else "expired"  # cleared, or ran out
            else:
                reason = "timetable"
        return RateChange(force, reason)


def announce(change: RateChange) -> None:
    """The `rate.changed` event: vidupd.max_rate (bytes/s, null: no cap), vidupd.reason."""
    force = change.now
    events.emit("rate.changed", f"max_rate now {force.describe()}", max_rate=force.rate or events.NULL,
                reason=change.reason, rate_source=force.source)

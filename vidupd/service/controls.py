"""The operator's controls of a running daemon, kept in the ledger's `shared` table so they
survive a restart, are seen by one-shot commands and by every host of a shared ledger: no
socket, no port. The daemon reads them once per main-loop tick (<= 1 s).

`control.pause` (`vidupd pause` / `vidupd resume`), stored as
    {"all": {"since": EPOCH, "by": "user@host"} | null,
     "targets": {NAME: {"since", "by"}}, "watches": {PATH: {"since", "by"}}}
A paused scope starts no uploads; running ones checkpoint and stop (queued again, no attempt
counted) and continue the same upload on resume. Status polls of committed uploads go on.

`control.rate` (`vidupd limit`) sits beside it: vidupd.service.rate_override.
"""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..core.model import SharedValue
from ..ledger import Job, LedgerShared

PAUSE_KEY = "control.pause"
ALL, TARGET, WATCH = "all", "target", "watch"


@dataclass(frozen=True)
class Paused:
    """One paused scope: everything (`name` ""), a target or a watch path."""

    scope: str
    name: str
    since: float
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "name": self.name or None, "since": self.since, "by": self.by}


@dataclass(frozen=True)
class PauseSet:
    """What is paused (an empty set: nothing)."""

    entries: tuple[Paused, ...] = ()

    @property
    def everything(self) -> bool:
        return any(e.scope == ALL for e in self.entries)

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(e.name for e in self.entries if e.scope == TARGET)

    @property
    def watches(self) -> frozenset[str]:
        return frozenset(e.name for e in self.entries if e.scope == WATCH)

    def names(self) -> list[str]:
        """"all", target names, watch paths: what `status` and the STATUS= line show."""
        return ["all" if e.scope == ALL else e.name for e in self.entries]

    def describe(self) -> str:
        return ", ".join(self.names())

    def covers(self, target: str, watch: str | None) -> bool:
        return self.everything or target in self.targets or (watch is not None and watch in self.watches)

    def covers_job(self, job: Job) -> bool:
        return self.covers(job.target, job.watch)

    def key(self) -> frozenset[tuple[str, str]]:
        """What is paused, without who and since (for telling what changed)."""
        return frozenset((e.scope, e.name) for e in self.entries)

    def paused(self, scope: str, name: str, by: str, now: float) -> "PauseSet":
        """This set with (scope, name) added; an entry already there keeps its since and by."""
        if (scope, name) in self.key():
            return self
        return PauseSet((*self.entries, Paused(scope, name, now, by)))

    def resumed(self, scope: str | None, name: str = "") -> "PauseSet":
        """This set without (scope, name); scope None: without anything."""
        if scope is None:
            return PauseSet()
        return PauseSet(tuple(e for e in self.entries if (e.scope, e.name) != (scope, name)))

    def to_json(self) -> dict[str, Any]:
        def entry(e: Paused) -> dict[str, Any]:
            return {"since": e.since, "by": e.by}

        return {"all": next((entry(e) for e in self.entries if e.scope == ALL), None),
                "targets": {e.name: entry(e) for e in self.entries if e.scope == TARGET},
                "watches": {e.name: entry(e) for e in self.entries if e.scope == WATCH}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "PauseSet":
        """The stored value; anything malformed in it reads as not paused for that entry."""
        if not isinstance(data, Mapping):
            return cls()
        out: list[Paused] = []

        def add(scope: str, name: str, e: Any) -> None:
            if isinstance(e, Mapping):
                out.append(Paused(scope, name, float(e.get("since") or 0.0), str(e.get("by") or "")))

        add(ALL, "", data.get("all"))
        for scope, group in ((TARGET, "targets"), (WATCH, "watches")):
            items = data.get(group)
            for name, e in (items.items() if isinstance(items, Mapping) else ()):
                add(scope, str(name), e)
        return cls(tuple(out))


def operator() -> str:
    """Who is asking: user@host, recorded with a pause."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name for this uid (a container)
        user = "?"
    return f"{user}@{socket.gethostname()}"


def load_pause(shared: LedgerShared) -> PauseSet:
    value = shared.load(PAUSE_KEY)
    return PauseSet.from_json(value.data if value is not None else None)


def change_pause(shared: LedgerShared, change: Callable[[PauseSet], PauseSet]) -> PauseSet:
    """Change the stored pause set under the shared lock (compare-and-set): concurrent
    `pause` and `resume` commands never lose each other's change."""
    def update(current: SharedValue | None) -> Mapping[str, Any]:
        return change(PauseSet.from_json(current.data if current else None)).to_json()

    stored = shared.update(PAUSE_KEY, update)
    return PauseSet.from_json(stored.data if stored else None)


def pause_now(scope: str, name: str = "") -> Callable[[PauseSet], PauseSet]:
    by, now = operator(), time.time()
    return lambda current: current.paused(scope, name, by, now)

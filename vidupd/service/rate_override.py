"""`vidupd limit`'s override of the configured bandwidth, kept beside the pause in the
ledger's `shared` table (see vidupd.service.controls: no socket, no port; every process of
the ledger sees it, it survives a restart, and the daemon reads it once per main-loop tick).

`control.rate` is {rate (bytes/s, null: no cap), until (epoch seconds, null: until
cleared), set_at, by}. Clearing it stores {} (the configured schedule applies again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..core.model import SharedStore
from .controls import operator

RATE_KEY = "control.rate"


@dataclass(frozen=True)
class RateOverride:
    """`vidupd limit RATE [--for D]`: the rate in force instead of the configured one."""

    rate: int | None  # bytes/s; None: no cap
    until: float | None  # epoch seconds it ends; None: until `vidupd limit --clear`
    set_at: float
    by: str  # user@host, for `vidupd limit` and status to say who

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def as_data(self) -> dict[str, Any]:
        return {"rate": self.rate, "until": self.until, "set_at": self.set_at, "by": self.by}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "RateOverride | None":
        if "set_at" not in data:
            return None  # cleared
        rate = data.get("rate")
        until = data.get("until")
        return cls(int(rate) if rate else None, float(until) if until is not None else None,
                   float(data["set_at"]), str(data.get("by", "")))


def load_rate_override(store: SharedStore) -> RateOverride | None:
    """The stored override, expired or not (None: none or cleared)."""
    value = store.load(RATE_KEY)
    return RateOverride.from_data(value.data) if value is not None else None


def set_rate_override(store: SharedStore, rate: int | None, seconds: float | None,
                      now: float | None = None) -> RateOverride:
    now = time.time() if now is None else now
    override = RateOverride(rate, now + seconds if seconds else None, now, operator())
    store.update(RATE_KEY, lambda _current: override.as_data())
    return override


def clear_rate_override(store: SharedStore) -> None:
    store.update(RATE_KEY, lambda current: {} if current is not None and current.data else None)

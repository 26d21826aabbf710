"""`max_rate` as a timetable in rclone's `--bwlimit` form: "08:00,10M 12:00,off Mon-08:00,5M".

Each entry is `[DAY-]HH:MM,RATE` (entries separated by spaces or semicolons; a lone RATE is
one entry in force all week). An entry without a day applies every day, one with a day
(Mon..Sun, or the full name) every week on that day. The entry in force at a moment is the
latest one at or before it within the week, wrapping around to the week's last entry (so
"08:00,10M 19:00,off" is off from 19:00 to 08:00). Two entries at the same day and time: the
later one in the text wins ("08:00,10M Mon-08:00,5M" is 5M on Mondays from 08:00).
Times are the host's local time (`time.localtime`, so TZ and daylight saving apply): a
change falls at the local wall-clock minute named, whatever its UTC offset that day.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from .units import parse_rate

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class RateEntry:
    """One entry: from `minute` of the week (0 = Monday 00:00; None: a lone rate) the rate is
    `rate` bytes/s (None: no cap). `text` is the entry as written, for messages."""

    minute: int | None
    rate: int | None
    text: str
    daily: bool = False


@dataclass(frozen=True)
class RateSchedule:
    """A bandwidth cap over time. A single rate is a schedule with one entry."""

    entries: tuple[RateEntry, ...]
    text: str = ""
    _slots: tuple[tuple[int, RateEntry], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        slots: dict[int, RateEntry] = {}  # a daily entry stands for seven; the later one wins a minute
        for e in self.entries:
            if e.minute is None:
                continue
            for day in range(7) if e.daily else (0,):
                slots[(e.minute + day * 24 * 60) % WEEK_MINUTES] = e
        object.__setattr__(self, "_slots", tuple(sorted(slots.items())))

    @property
    def is_timetable(self) -> bool:
        return any(e.minute is not None for e in self.entries)

    def entry_at(self, t: float) -> RateEntry:
        """The entry in force at epoch seconds `t` (local time)."""
        if not self._slots:
            return self.entries[-1]
        i = bisect.bisect_right(self._slots, _week_minute(t), key=lambda slot: slot[0])
        return self._slots[i - 1][1]  # i == 0 wraps around: the week's last slot still holds

    def rate_at(self, t: float) -> int | None:
        """Bytes/s in force at epoch seconds `t`; None: no cap."""
        return self.entry_at(t).rate

    def next_change(self, t: float) -> float | None:
        """Epoch seconds after `t` when another entry takes over (None: never), for showing and
        for waking on time. Each slot's local time in the coming eight days goes through
        mktime, so DST moves it with the wall clock. (An entry in an hour a DST jump skips
        takes over at the jump, as `rate_at` says; this may then name a time up to an hour
        later. The daemon evaluates `rate_at` every second, so the cap itself is on time.)"""
        if len({id(e) for _, e in self._slots}) < 2:
            return None
        current = self.entry_at(t)
        lt = time.localtime(t)
        candidates = []
        for day in range(8):
            weekday = (lt.tm_wday + day) % 7
            for minute, _ in self._slots:
                wd, hm = divmod(minute, 24 * 60)
                if wd == weekday:
                    at = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + day, hm // 60, hm % 60, 0, 0, 0, -1))
                    if at > t:
                        candidates.append(at)
        for at in sorted(candidates):
            if self.entry_at(at) is not current:
                return float(at)
        return None

    def __str__(self) -> str:
        return self.text


def _week_minute(t: float) -> int:
    lt = time.localtime(t)
    return lt.tm_wday * 24 * 60 + lt.tm_hour * 60 + lt.tm_min


def _parse_when(when: str) -> tuple[int, bool]:
    """("Mon-08:00" | "08:00") -> (minute of the week, daily)."""
    day, sep, hhmm = when.rpartition("-")
    daily = not sep
    offset = 0
    if not daily:
        name = day.lower()
        if name in DAYS:
            offset = DAYS.index(name)
        elif name in _FULL_DAYS:
            offset = _FULL_DAYS.index(name)
        else:
            raise ValueError(f"unknown day {day!r} (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    hh, colon, mm = hhmm.partition(":")
    if not colon or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2 or len(hh) > 2:
        raise ValueError(f"time {hhmm!r} is not HH:MM")
    if int(hh) > 23 or int(mm) > 59:
        raise ValueError(f"time {hhmm!r} is not a time of day (00:00 to 23:59)")
    return offset * 24 * 60 + int(hh) * 60 + int(mm), daily


def parse_schedule(value: str | int) -> RateSchedule:
    """A `max_rate` value: a rate (see units.parse_rate) or a timetable. ValueError names the
    entry that is wrong."""
    if not isinstance(value, str) or "," not in value:
        rate = parse_rate(value)
        return RateSchedule((RateEntry(None, rate, str(value)),), str(value))
    entries: list[RateEntry] = []
    for item in value.replace(";", " ").split():
        when, comma, rate_text = item.partition(",")
        if not comma:
            raise ValueError(f"entry {item!r}: a timetable entry is [DAY-]HH:MM,RATE (e.g. 08:00,10M or Mon-08:00,off)")
        try:
            minute, daily = _parse_when(when)
            rate = parse_rate(rate_text)
        except ValueError as e:
            raise ValueError(f"entry {item!r}: {e}") from None
        entries.append(RateEntry(minute, rate, item, daily))
    if not entries:
        raise ValueError("is an empty timetable")
    return RateSchedule(tuple(entries), value)

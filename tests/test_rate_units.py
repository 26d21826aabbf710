"""Rates people write and rclone-style timetables (issue 12): one parser for every rate."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from vidupd.core.rate_schedule import RateSchedule, parse_schedule
from vidupd.core.units import parse_duration, parse_rate


@pytest.mark.parametrize("text, want", [
    ("10M", 10_000_000), ("10MB/s", 10_000_000), ("10mb", 10_000_000), ("10 MB/s", 10_000_000),
    ("10MiB/s", 10 * 2**20), ("8Mi", 8 * 2**20), ("10KiB", 10240), ("1.5G", 1_500_000_000), ("500k", 500_000),
    ("80Mbit/s", 10_000_000), ("80Mbps", 10_000_000), ("8kbit", 1000),
    ("1000000", 1_000_000), (1_000_000, 1_000_000), ("500B/s", 500),
    ("off", None), ("OFF", None), ("0", None), (0, None),
])
def test_rate_forms(text, want):
    assert parse_rate(text) == want


@pytest.mark.parametrize("text, says", [
    ("10MX", "unknown unit 'MX'"), ("fast", "is not a rate"), ("-5M", "is not a rate"), (-5, "negative"),
    ("10M/x", "unknown unit"), ("0.1", "less than one byte"), (True, "must be a rate"), ("", "is not a rate"),
])
def test_rate_errors_say_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_rate(text)


def test_durations():
    assert parse_duration("2h") == 7200 and parse_duration("90m") == 5400 and parse_duration("3s") == 3
    assert parse_duration(90) == 90.0
    assert parse_duration("0") == 0.0  # a zero settle_seconds is allowed; `limit --for 0` is refused by limit
    for bad in ("x", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


@contextlib.contextmanager
def local_zone(tz: str):
    """The process's local time zone is `tz` (POSIX TZ) inside, the previous one after."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def utc():
    """A DST-free zone for exact times (the daemon uses the host's local zone)."""
    with local_zone("UTC"):
        yield


def at(day: int, hh: int, mm: int, ss: int = 0) -> float:
    """Epoch seconds of (Monday + day) HH:MM:SS UTC in the week of 2026-11-30 (a Monday)."""
    return time.mktime((2026, 11, 30 + day, hh, mm, ss, 0, 0, 0))


def test_a_single_rate_is_a_one_entry_schedule(utc):
    s = parse_schedule("10MB/s")
    assert isinstance(s, RateSchedule) and len(s.entries) == 1 and not s.is_timetable
    assert s.rate_at(at(0, 3, 0)) == 10_000_000 and s.next_change(at(0, 3, 0)) is None
    assert parse_schedule(2_000_000).rate_at(0) == 2_000_000 and parse_schedule("off").rate_at(0) is None


def test_daily_entries_wrap_around_the_day(utc):
    s = parse_schedule("08:00,512k 12:00,10M 19:00,off")
    assert s.rate_at(at(2, 7, 59)) is None  # before the day's first entry: the last one of the day before
    assert s.rate_at(at(2, 8, 0)) == 512_000 and s.rate_at(at(2, 11, 59, 59)) == 512_000
    assert s.rate_at(at(2, 12, 0)) == 10_000_000 and s.rate_at(at(2, 23, 0)) is None
    assert s.next_change(at(2, 7, 0)) == at(2, 8, 0)
    assert s.next_change(at(2, 20, 0)) == at(3, 8, 0)  # across midnight
    assert s.next_change(at(2, 8, 0)) == at(2, 12, 0)


def test_weekday_entries_wrap_around_the_week(utc):
    s = parse_schedule("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off")
    assert s.rate_at(at(0, 0, 0)) == 512 and s.rate_at(at(3, 12, 0)) == 512  # Thursday
    assert s.rate_at(at(4, 23, 59)) == 10_000_000 and s.rate_at(at(5, 9, 0)) == 10_000_000
    assert s.rate_at(at(5, 10, 0)) == 1_000_000 and s.rate_at(at(6, 21, 0)) is None
    assert s.next_change(at(6, 21, 0)) == at(7, 0, 0)  # Sunday night -> next Monday 00:00
    only = parse_schedule("Wed-10:00,1M Fri-10:00,2M")
    assert only.rate_at(at(0, 9, 0)) == 2_000_000  # Monday: still Friday's, from the week before
    assert only.next_change(at(0, 9, 0)) == at(2, 10, 0)


def test_daily_and_weekly_entries_mix(utc):
    s = parse_schedule("08:00,10M 12:00,off Mon-08:00,5M")
    assert s.rate_at(at(0, 9, 0)) == 5_000_000  # Monday 08:00: the weekday entry, written later, wins
    assert s.rate_at(at(1, 9, 0)) == 10_000_000  # Tuesday: the daily one
    assert s.rate_at(at(0, 12, 30)) is None and s.rate_at(at(0, 7, 0)) is None
    assert s.next_change(at(0, 7, 0)) == at(0, 8, 0) and s.next_change(at(0, 8, 0)) == at(0, 12, 0)
    assert parse_schedule("08:00,1M;12:00,2M").rate_at(at(0, 13, 0)) == 2_000_000  # semicolons separate too


def test_local_time_follows_tz():
    """An offset with seconds: the boundary falls at the local minute, not the UTC one."""
    with local_zone("VID-0:13:27"):  # local = UTC + 13 min 27 s
        s = parse_schedule("10:00,1M 10:01,3M")
        base = time.mktime((2026, 12, 2, 10, 0, 30, 0, 0, 0))  # local 10:00:30
        assert s.rate_at(base) == 1_000_000
        change = s.next_change(base)
        assert change == base + 30 and time.localtime(change)[3:6] == (10, 1, 0)
        assert s.rate_at(change) == 3_000_000 and s.rate_at(change - 0.5) == 1_000_000


@pytest.mark.parametrize("text, says", [
    ("08:00,10M Mox-12:00,off", "entry 'Mox-12:00,off': unknown day"),
    ("25:00,10M", "entry '25:00,10M': time '25:00' is not a time of day"),
    ("08:00,fast", "entry '08:00,fast': 'fast' is not a rate"),
    ("08:00,10M 12:00", "entry '12:00'"),
    ("8h,10M", "is not HH:MM"),
])
def test_bad_entries_are_named(text, says):
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)


def test_daylight_saving_moves_entries_with_the_wall_clock():
    with local_zone("CET-1CEST,M3.5.0,M10.5.0/3"):  # POSIX rules, no tzdata needed: 2026-03-29 02:00 -> 03:00
        s = parse_schedule("08:00,1M 20:00,2M")
        before = time.mktime((2026, 3, 28, 21, 0, 0, 0, 0, -1))  # Saturday 21:00 CET
        change = s.next_change(before)
        assert time.localtime(change)[:5] == (2026, 3, 29, 8, 0) and change - before == 10 * 3600  # 11 h of wall clock
        assert s.rate_at(change) == 1_000_000 and s.rate_at(change - 1) == 2_000_000

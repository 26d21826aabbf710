"""ProgressReporter (issue 11): the rate is acknowledged bytes over a window, so a part
acknowledged at once is not a burst; `shown` moves with the bytes sent, forward only,
never at the end before the platform acknowledged everything."""

from __future__ import annotations

import threading

from vidupd.core.throttle import Throttle
from vidupd.engine.progress import ProgressReporter


def test_rate_is_acknowledged_bytes_over_the_window():
    now = [0.0]
    r = ProgressReporter(100_000_000, record=lambda d, rate: None, announce=lambda d, rate: None,
                         clock=lambda: now[0], window=10.0)
    for second in range(1, 9):  # 8 MB parts acknowledged every 8 s at a 1 MB/s link: 0 ... 8 MB at once
        now[0] = float(second * 8)
        r(second * 8_000_000)
        assert r.rate <= 1_000_000 * 1.01, (second, r.rate)
    assert r.rate >= 0.5e6  # and not zero either: the window spans the last acknowledgement


def test_shown_follows_bytes_sent_forward_only_and_stops_short_of_the_end():
    r = ProgressReporter(1000, record=lambda d, rate: None, announce=lambda d, rate: None)
    throttle = Throttle(None).share(count=r.note_sent)
    throttle.take(300, threading.Event())
    assert (r.done, r.shown) == (0, 300)
    throttle.take(2000)  # a retry sends bytes again: never past the end before the acknowledgement
    assert r.shown == 999
    r(500)
    assert r.shown == 999  # forward only
    r(1000)
    assert r.shown == 1000
    shared = Throttle(5)
    metered = shared.share(count=r.note_sent)
    shared.rate = 7  # a reload changes the shared cap, and every upload's share sees it
    assert shared.rate == 7 == metered.rate

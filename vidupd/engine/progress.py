"""Progress of one upload: rate-limited events, ledger updates for `status`, lease renewal."""

from __future__ import annotations

import threading
import time
from typing import Callable


class ProgressReporter:
    """Called by providers with cumulative acknowledged bytes (from any thread).

    Writes to the ledger at most once a second (that also renews the job's lease) and asks
    for an `upload.progress` event at most every `event_every` seconds or `event_step` of the
    file, whichever comes first. The rate is an exponentially weighted bytes/s.
    """

    def __init__(self, size: int, record: Callable[[int, float], None], announce: Callable[[int, float], None],
                 event_every: float = 5.0, event_step: float = 0.10, record_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.size = size
        self._record = record
        self._announce = announce
        self._event_every = event_every
        self._step = max(1, int(size * event_step))
        self._record_every = record_every
        self._clock = clock
        self._lock = threading.Lock()
        start = clock()
        self.done = 0
        self.rate = 0.0
        self._last_sample = (start, 0)
        self._last_record = start - record_every  # the first report is recorded at once
        self._last_event = (start, 0)

    def __call__(self, done: int) -> None:
        now = self._clock()
        with self._lock:
            if done < self.done:
                return  # out-of-order report from a slower thread
            self.done = done
            t0, b0 = self._last_sample
            if now - t0 >= 0.5:
                inst = (done - b0) / (now - t0)
                self.rate = inst if self.rate == 0 else 0.7 * self.rate + 0.3 * inst
                self._last_sample = (now, done)
            record = now - self._last_record >= self._record_every and done < self.size  # the end is recorded by commit
            if record:
                self._last_record = now
            te, be = self._last_event
            event = now - te >= self._event_every or done - be >= self._step
            if event:
                self._last_event = (now, done)
            rate = self.rate
        if record:
            self._record(done, rate)
        if event and done < self.size:
            self._announce(done, rate)

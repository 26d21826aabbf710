"""Progress of one upload: rate-limited events, ledger updates for `status`, lease renewal,
and what a progress bar shows.

Two counts per upload: the bytes the platform has acknowledged (`done`: a part or slice
counts once its answer is in; this is what the ledger, `status` and the events say), and
the bytes handed to the network so far (`sent`: every block read for sending goes through
the job's throttle Share, which counts it). A bar drawn from `done` alone sits at 0 and jumps a whole part
at a time; `shown` moves with the blocks as they go out, and never runs ahead of the file.
The rate is always from acknowledged bytes, averaged over the last RATE_WINDOW seconds (a
part acknowledged at once no longer reads as a burst far above `max_rate`); SI units, as
everywhere (vidupd.core.units).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


RATE_WINDOW = 10.0  # seconds of acknowledged bytes the rate is averaged over
_SAMPLE_EVERY = 0.5  # seconds between the samples of that window (at most ~20 kept)


class ProgressReporter:
    """Called by providers with cumulative acknowledged bytes (from any thread).

    Writes to the ledger at most once a second (that also renews the job's lease) and asks
    for an `upload.progress` event at most every `event_every` seconds or `event_step` of the
    file, whichever comes first.
    """

    def __init__(self, size: int, record: Callable[[int, float], None], announce: Callable[[int, float], None],
                 event_every: float = 5.0, event_step: float = 0.10, record_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, window: float = RATE_WINDOW):
        self.size = size
        self._record = record
        self._announce = announce
        self._event_every = event_every
        self._step = max(1, int(size * event_step))
        self._record_every = record_every
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        start = clock()
        self.done = 0
        self.sent = 0
        self._shown = 0
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])
        self._last_record = start - record_every  # the first report is recorded at once
        self._last_event = (start, 0)

    @property
    def rate(self) -> float:
        """Acknowledged bytes per second over the last `window` seconds."""
        with self._lock:
            return self._rate(self._clock())

    def _rate(self, now: float) -> float:
        t0, b0 = self._samples[0]
        return (self.done - b0) / (now - t0) if now - t0 >= 0.2 else 0.0

    @property
    def shown(self) -> int:
        """Where a bar stands: the acknowledged bytes, or further as blocks go out (below the
        end until the platform acknowledged it all). Only moves forward."""
        with self._lock:
            ahead = min(self.sent, self.size - 1) if self.done < self.size else self.size
            self._shown = max(self._shown, self.done, ahead)
            return self._shown

    def note_sent(self, n: int) -> None:
        """`n` more bytes read for sending (counted by the job's throttle Share)."""
        with self._lock:
            self.sent += n

    def __call__(self, done: int) -> None:
        now = self._clock()
        with self._lock:
            if done < self.done:
                return  # out-of-order report from a slower thread
            self.done = done
            if now - self._samples[-1][0] >= _SAMPLE_EVERY:
                self._samples.append((now, done))
                while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
                    self._samples.popleft()  # keep one sample at least `window` old
            rate = self._rate(now)
            record = now - self._last_record >= self._record_every and done < self.size  # the end is recorded by commit
            if record:
                self._last_record = now
            te, be = self._last_event
            event = now - te >= self._event_every or done - be >= self._step
            if event:
                self._last_event = (now, done)
        if record:
            self._record(done, rate)
        if event and done < self.size:
            self._announce(done, rate)

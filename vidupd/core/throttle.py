"""The bandwidth caps (`max_rate`, global and per target), shared fairly between uploads.

One token bucket shared by every thread was first come, first served: an upload with four
part threads asked four times as often as one with a single thread and took four times the
bandwidth (one VOD upload at 80% while a Youku upload sat at 0%). Now every upload takes
through its own `Share`, and each cap grants its bytes by start-time fair queueing between
the shares waiting: every request gets a tag (where its upload's bytes would start if each
upload were served in turn), and the one with the lowest tag goes next. So two uploads under
one cap get equal shares whatever their thread counts, and an idle upload banks nothing: its
share goes to the others while it is idle.

Cheap by construction: no scheduler thread, no polling. A request that finds the cap free and
nobody waiting goes straight through; otherwise it waits on its own lock, and exactly one
waiter (the keeper) sleeps until the cap is free again and grants the next request, which
it wakes. A rate change converts the bytes still owed to the new rate and wakes the keeper,
so it applies to waiting requests at once; a job's `CancelSignal` wakes its waiters at once.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, Iterable

from .errors import UploadCancelled

BURST = 0.1  # seconds of credit an idle cap grants at once (a short burst, not a second's worth)
SMALL_BLOCK = 64 << 10  # reads get this small at low rates, so bytes leave evenly, not in 1 MiB bursts
_POLL = 0.5  # seconds between checks of a plain threading.Event that cannot wake a waiter itself


class CancelSignal(threading.Event):
    """A job's cancel flag that also wakes what waits on the job's behalf (its throttle
    requests), so a stop never waits for a bandwidth grant."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def on_set(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
        if self.is_set():
            listener()

    def set(self) -> None:
        super().set()
        for listener in list(self._listeners):
            listener()


class _Flow:
    """One upload's bookkeeping at one cap: where its next bytes' tag starts."""

    __slots__ = ("finish", "cancel")

    def __init__(self, cancel: threading.Event | None):
        self.finish = 0.0
        self.cancel = cancel


class _Ticket:
    __slots__ = ("tag", "seq", "n", "flow", "granted", "cancelled", "signalled", "lock")

    def __init__(self, tag: float, seq: int, n: int, flow: _Flow):
        self.tag, self.seq, self.n, self.flow = tag, seq, n, flow
        self.granted = self.cancelled = self.signalled = False
        self.lock = threading.Lock()
        self.lock.acquire()

    def __lt__(self, other: "_Ticket") -> bool:
        return (self.tag, self.seq) < (other.tag, other.seq)


class Throttle:
    """One cap in bytes per second (None or 0: none), granted fairly between the `Share`s
    taking through it. `child(name)` is a cap under this one (a target's `max_rate`)."""

    def __init__(self, rate: int | None = None, *, clock: Callable[[], float] = time.monotonic,
                 burst: float = BURST):
        self._rate = rate or 0
        self._clock = clock
        self._burst = burst
        self._lock = threading.Lock()
        self._free_at = clock()  # when the bytes granted so far are paid for
        self._vtime = 0.0  # the tag of the request granted last
        self._waiting: list[_Ticket] = []  # heap by tag
        self._keeper: _Ticket | None = None  # the one waiter that sleeps until the cap is free
        self._seq = itertools.count()
        self._children: dict[str, Throttle] = {}
        self._default = Share([self])  # what callers without a share of their own take through

    # -- the rate ----------------------------------------------------------------------------
    @property
    def rate(self) -> int:
        return self._rate

    @rate.setter
    def rate(self, value: int | None) -> None:
        """Applies at once: what is still owed is paid at the new rate, waiters are woken."""
        value = value or 0
        with self._lock:
            now = self._clock()
            if self._rate > 0 and value > 0 and self._free_at > now:
                self._free_at = now + (self._free_at - now) * self._rate / value
            elif self._free_at > now:
                self._free_at = now
            self._rate = value
            if value <= 0:
                for t in self._waiting:
                    t.granted = True
                    self._wake(t)
                self._waiting.clear()
            elif self._keeper is not None:
                self._wake(self._keeper)
            elif self._waiting:
                self._wake(self._waiting[0])

    def child(self, name: str) -> "Throttle":
        """The cap of `name` (a target) under this one; no cap until its rate is set."""
        with self._lock:
            if name not in self._children:
                self._children[name] = Throttle(None, clock=self._clock, burst=self._burst)
            return self._children[name]

    def share(self, target: str | None = None, count: Callable[[int], None] | None = None,
              cancel: threading.Event | None = None) -> "Share":
        """A new upload's handle: its bytes count against `target`'s cap and this one."""
        caps = [self.child(target), self] if target is not None else [self]
        return Share(caps, count, cancel)

    def take(self, n: int, cancel: threading.Event | None = None) -> None:
        """For callers without a share of their own: all of them share one."""
        self._default.take(n, cancel)

    def block(self, size: int) -> int:
        """How much to read at once: `size`, or less at a low rate (a twentieth of a second's
        worth, at least SMALL_BLOCK), so the bytes a cap lets through go out evenly."""
        rate = self._rate
        return size if rate <= 0 else max(min(size, rate // 20), min(size, SMALL_BLOCK))

    # -- granting ----------------------------------------------------------------------------
    def _take(self, flow: _Flow, n: int, cancel: threading.Event | None) -> None:
        wakes_itself = isinstance(cancel, CancelSignal)
        with self._lock:
            if self._rate <= 0:
                return
            now = self._clock()
            tag = max(self._vtime, flow.finish)
            flow.finish = tag + n
            if not self._waiting and self._free_at <= now:  # free and nobody waiting: no ticket
                self._vtime = tag
                self._pay(n, now)
                return
            ticket = _Ticket(tag, next(self._seq), n, flow)
            heapq.heappush(self._waiting, ticket)
            woke = False
            while True:
                if woke:
                    ticket.signalled = False
                if not ticket.granted:
                    if cancel is not None and cancel.is_set():
                        ticket.cancelled = True
                        self._leave(ticket)
                        raise UploadCancelled("stopping")
                    now = self._clock()
                    self._grant(now)
                if ticket.granted:
                    self._leave(ticket)
                    return
                if self._keeper is None:
                    self._keeper = ticket
                timeout = self._free_at - now if self._keeper is ticket else -1.0
                if not wakes_itself:
                    timeout = _POLL if timeout < 0 else min(timeout, _POLL)
                self._lock.release()
                try:
                    woke = ticket.lock.acquire(timeout=timeout)
                finally:
                    self._lock.acquire()

    def _pay(self, n: int, now: float) -> None:
        self._free_at = max(self._free_at, now - self._burst) + n / self._rate

    def _grant(self, now: float) -> None:
        while self._waiting and self._free_at <= now:
            t = heapq.heappop(self._waiting)
            if t.cancelled:
                continue
            self._vtime = t.tag
            self._pay(t.n, now)
            t.granted = True
            self._wake(t)

    def _leave(self, ticket: _Ticket) -> None:
        if self._keeper is ticket:
            self._keeper = None
            for t in self._waiting:  # someone else keeps time now
                if not t.cancelled:
                    self._wake(t)
                    break

    @staticmethod
    def _wake(ticket: _Ticket) -> None:
        if not ticket.signalled:
            ticket.signalled = True
            ticket.lock.release()

    def _wake_flow(self, flow: _Flow) -> None:
        with self._lock:
            for t in self._waiting:
                if t.flow is flow:
                    self._wake(t)


class Share:
    """One upload's way through its caps (its target's, then the global one): `take(n)`
    blocks until n more bytes may go, and counts them (`count`: the upload's `sent`)."""

    def __init__(self, caps: Iterable[Throttle], count: Callable[[int], None] | None = None,
                 cancel: threading.Event | None = None):
        self._caps = tuple(caps)
        self._flows = tuple(_Flow(cancel) for _ in self._caps)
        self._count = count
        if isinstance(cancel, CancelSignal):
            cancel.on_set(self._wake)

    @property
    def rate(self) -> int:
        """The tightest cap this upload is under (0: none)."""
        rates = [c.rate for c in self._caps if c.rate > 0]
        return min(rates) if rates else 0

    def take(self, n: int, cancel: threading.Event | None = None) -> None:
        if n <= 0:
            return
        for cap, flow in zip(self._caps, self._flows):
            cap._take(flow, n, cancel)
        if self._count is not None:
            self._count(n)

    def block(self, size: int) -> int:
        return min(cap.block(size) for cap in self._caps)

    def _wake(self) -> None:
        for cap, flow in zip(self._caps, self._flows):
            cap._wake_flow(flow)

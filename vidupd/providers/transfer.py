"""The chunk transfer engine: parallel chunk uploads written once for every provider.

In the spirit of rclone's lib/multipart + ChunkWriter: a backend says how a worker gets its
first chunk and how to send one (the answer naming the worker's next chunk, as Youku's
upload_slice does; `run_fixed` covers a fixed list of missing parts, as OSS multipart
has). The engine owns everything around that: the worker threads (bounded by the
concurrency option and never more than there are chunks; one worker runs in the caller's
thread), stopping every worker between chunks on the first error or on cancellation,
raising the `most_telling` of the errors, and counting what went out. `ForwardProgress`
is the one "progress only moves forward" for answers arriving out of order.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from ..core.errors import UploadCancelled
from .base import most_telling

C = TypeVar("C")

_WATCH_INTERVAL = 0.1  # how often the caller's thread looks for cancellation while workers run


class ForwardProgress:
    """Reports cumulative acknowledged bytes, clamped to [0, size], only when they grew.

    The lock is held while reporting, so the callback sees values in increasing order
    whichever thread's answer arrives first."""

    def __init__(self, report: Callable[[int], None], size: int):
        self._report = report
        self._size = size
        self._lock = threading.Lock()
        self._acked = 0

    def __call__(self, acknowledged: int) -> None:
        with self._lock:
            value = min(max(acknowledged, 0), self._size)
            if value > self._acked:
                self._acked = value
                self._report(value)

    @property
    def value(self) -> int:
        with self._lock:
            return self._acked


def run_chunks(first: Callable[[threading.Event], C | None], send: Callable[[C, threading.Event], C | None], *,
               concurrency: int, chunks: int, cancel: threading.Event, name: str, unit: str = "chunks",
               restart: tuple[type[BaseException], ...] = ()) -> int:
    """Run up to `concurrency` workers (at most `chunks`, the most chunks there can be) until
    no chunk is left; returns how many chunks were sent.

    Each worker calls `first(stop)`, then `send(chunk, stop)` with what the last call
    returned, until that is None. `stop` is set for all of them when one fails or `cancel`
    is set, and they stop between chunks (the functions pass it on to their retries). The
    most telling error is raised (`restart` ranks the backend's "start over" errors), else
    UploadCancelled when cancelled. One worker runs in the caller's thread with `cancel` as
    its stop: no thread is started for a one-chunk upload.
    """
    lock = threading.Lock()
    sent = [0]

    def worker(stop: threading.Event) -> None:
        chunk = first(stop)
        while chunk is not None:
            if stop.is_set():
                return
            chunk = send(chunk, stop)
            with lock:
                sent[0] += 1

    n = max(1, min(concurrency, chunks))
    if n == 1:
        worker(cancel)  # errors propagate as they are
    else:
        stop = threading.Event()
        with ThreadPoolExecutor(n, thread_name_prefix=name) as pool:
            futures = [pool.submit(worker, stop) for _ in range(n)]
            pending: set[Future[None]] = set(futures)
            while pending:
                done, pending = wait(pending, timeout=_WATCH_INTERVAL, return_when=FIRST_EXCEPTION)
                if cancel.is_set() or any(f.exception() is not None for f in done):
                    stop.set()
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise most_telling(errors, restart=restart)
    if cancel.is_set():
        raise UploadCancelled(f"stopping between {unit}")
    return sent[0]


def run_fixed(parts: Sequence[C], send: Callable[[C, threading.Event], None], *, concurrency: int,
              cancel: threading.Event, name: str, unit: str = "parts",
              restart: tuple[type[BaseException], ...] = ()) -> int:
    """`run_chunks` over a fixed list: each worker takes the next part still waiting, in order."""
    queue = list(reversed(parts))
    lock = threading.Lock()

    def take(stop: threading.Event) -> C | None:
        with lock:
            return queue.pop() if queue else None

    def send_then_take(part: C, stop: threading.Event) -> C | None:
        send(part, stop)
        return take(stop)

    return run_chunks(take, send_then_take, concurrency=concurrency, chunks=len(parts), cancel=cancel, name=name,
                      unit=unit, restart=restart)

"""The chunk transfer engine on its own (fake chunks, no network): workers, stopping on the
first error with the most telling one raised, cancellation, thread bounds, forward-only progress."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vidupd.core.errors import FileChanged, PermanentError, TransientError, UploadCancelled
from vidupd.providers.transfer import ForwardProgress, run_chunks, run_fixed

WAIT = 10.0  # generous bound on any wait below; no test relies on timing


class Recorder:
    """A backend's send for `run_fixed` that records which thread sent which part."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[Any] = []
        self.threads: set[int] = set()

    def record(self, part: Any) -> None:
        with self.lock:
            self.sent.append(part)
            self.threads.add(threading.get_ident())


def test_every_part_is_sent_once_and_counted() -> None:
    rec = Recorder()
    n = run_fixed(list(range(1, 31)), lambda part, stop: rec.record(part), concurrency=4,
                  cancel=threading.Event(), name="t-engine")
    assert n == 30 and sorted(rec.sent) == list(range(1, 31))


def test_first_error_stops_the_others_and_the_most_telling_is_raised() -> None:
    """Parts 0 to 3 are in flight at once; 0 and 1 fail (a transient error and a changed
    file), 2 and 3 wait until the workers are told to stop; nothing after them is sent."""
    rec = Recorder()
    all_in_flight = threading.Barrier(4, timeout=WAIT)
    stopped_in_flight: list[bool] = []

    def send(part: int, stop: threading.Event) -> None:
        all_in_flight.wait()
        if part == 0:
            raise TransientError("part 0: connection reset")
        if part == 1:
            raise FileChanged("the file changed while part 1 was read")
        stopped_in_flight.append(stop.wait(WAIT))  # released by the engine's stop, not by time
        rec.record(part)

    with pytest.raises(FileChanged):
        run_fixed(list(range(12)), send, concurrency=4, cancel=threading.Event(), name="t-engine")
    assert stopped_in_flight == [True, True]
    assert sorted(rec.sent) == [2, 3]  # the workers stopped between parts
    assert not [t for t in threading.enumerate() if t.name.startswith("t-engine")]


def test_the_backends_start_over_error_outranks_a_permanent_one() -> None:
    class StartOver(TransientError):
        pass

    both = threading.Barrier(2, timeout=WAIT)

    def send(part: int, stop: threading.Event) -> None:
        both.wait()
        raise (StartOver("upload gone") if part == 1 else PermanentError("refused"))

    with pytest.raises(StartOver):
        run_fixed([0, 1], send, concurrency=2, cancel=threading.Event(), name="t-engine", restart=(StartOver,))
    with pytest.raises(PermanentError):
        run_fixed([0, 1], send, concurrency=2, cancel=threading.Event(), name="t-engine")


def test_cancellation_stops_between_chunks() -> None:
    cancel = threading.Event()
    rec = Recorder()
    in_flight = threading.Barrier(3, timeout=WAIT)

    def send(part: int, stop: threading.Event) -> None:
        if part < 3:
            in_flight.wait()
            if part == 0:
                cancel.set()
            assert stop.wait(WAIT)  # the engine passes the cancellation on to every worker
        rec.record(part)

    with pytest.raises(UploadCancelled, match="stopping between parts"):
        run_fixed(list(range(20)), send, concurrency=3, cancel=cancel, name="t-engine")
    assert sorted(rec.sent) == [0, 1, 2]


def test_cancellation_in_the_callers_thread() -> None:
    cancel = threading.Event()
    rec = Recorder()

    def send(part: int, stop: threading.Event) -> None:
        assert stop is cancel
        rec.record(part)
        if part == 2:
            cancel.set()

    with pytest.raises(UploadCancelled, match="stopping between slices"):
        run_fixed(list(range(10)), send, concurrency=1, cancel=cancel, name="t-engine", unit="slices")
    assert rec.sent == [0, 1, 2]


def test_never_more_threads_than_chunks() -> None:
    rec = Recorder()
    together = threading.Barrier(3, timeout=WAIT)  # all three parts in flight at once

    def send(part: int, stop: threading.Event) -> None:
        together.wait()
        rec.record(part)

    assert run_fixed([1, 2, 3], send, concurrency=8, cancel=threading.Event(), name="t-engine") == 3
    assert len(rec.threads) == 3 and threading.get_ident() not in rec.threads
    assert not [t for t in threading.enumerate() if t.name.startswith("t-engine")]  # all joined


def test_handed_out_chunks_use_at_most_the_chunk_bound() -> None:
    """Youku-style: each worker asks for its first chunk, each answer names the next; with
    `chunks=2` only two workers ask, however high the concurrency."""
    lock = threading.Lock()
    tasks = iter(range(6))
    asked: list[int] = []
    threads: set[int] = set()

    def hand_out() -> int | None:
        with lock:
            return next(tasks, None)

    def first(stop: threading.Event) -> int | None:
        with lock:
            asked.append(threading.get_ident())
        return hand_out()

    def send(chunk: int, stop: threading.Event) -> int | None:
        with lock:
            threads.add(threading.get_ident())
        return hand_out()

    assert run_chunks(first, send, concurrency=16, chunks=2, cancel=threading.Event(), name="t-engine") == 6
    assert len(asked) == 2 and len(threads) <= 2


def test_a_one_chunk_upload_runs_in_the_callers_thread() -> None:
    rec = Recorder()
    assert run_fixed(["only"], lambda part, stop: rec.record(part), concurrency=4, cancel=threading.Event(),
                     name="t-engine") == 1
    assert rec.threads == {threading.get_ident()}

    def fail(part: str, stop: threading.Event) -> None:
        rec.record(part)
        raise PermanentError("boom")

    with pytest.raises(PermanentError, match="boom"):  # its error comes out as it is
        run_fixed(["only"], fail, concurrency=4, cancel=threading.Event(), name="t-engine")
    assert rec.threads == {threading.get_ident()}


def test_nothing_to_send_sends_nothing() -> None:
    assert run_chunks(lambda stop: None, lambda c, stop: None, concurrency=4, chunks=3, cancel=threading.Event(),
                      name="t-engine") == 0


def test_progress_never_goes_backwards_with_out_of_order_completions() -> None:
    """Four parts finish in reverse order, each reporting its own cumulative count (as a
    slow thread's older answer would); the reports only ever grow, clamped to the size."""
    seen: list[int] = []
    progress = ForwardProgress(seen.append, 400)
    turns = [threading.Event() for _ in range(4)]

    def send(part: int, stop: threading.Event) -> None:
        assert turns[part].wait(WAIT)
        progress(100 * (part + 1) + (50 if part == 3 else 0))  # part 3 claims more than the file
        if part > 0:
            turns[part - 1].set()  # the next to finish is the one before

    turns[3].set()
    run_fixed([0, 1, 2, 3], send, concurrency=4, cancel=threading.Event(), name="t-engine")
    assert seen == [400] and progress.value == 400

    seen.clear()
    progress = ForwardProgress(seen.append, 1000)
    for value in (300, 100, -5, 300, 700, 650, 2000, 900):
        progress(value)
    assert seen == [300, 700, 1000]

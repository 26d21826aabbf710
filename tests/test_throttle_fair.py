"""The bandwidth caps (issue 12): fair between uploads whatever their thread counts, a rate
change applies to waiting requests at once, a cancel wakes them at once, per-target caps
hold under the global one."""

from __future__ import annotations

import threading
import time

import pytest

from vidupd.core.errors import UploadCancelled
from vidupd.core.throttle import CancelSignal, Throttle

BLOCK = 64 << 10


def _run(shares: dict[str, tuple], seconds: float) -> dict[str, int]:
    """Each share's threads take BLOCKs until `seconds` pass; bytes taken per share."""
    got = {name: 0 for name in shares}
    lock = threading.Lock()
    stop = threading.Event()

    def work(name: str, share) -> None:
        while not stop.is_set():
            share.take(BLOCK)
            with lock:
                got[name] += BLOCK

    threads = [threading.Thread(target=work, args=(name, share), daemon=True)
               for name, (share, n) in shares.items() for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    return got


def test_two_uploads_get_equal_shares_whatever_their_thread_counts():
    cap = Throttle(4_000_000)
    got = _run({"vod": (cap.share("vod"), 4), "youku": (cap.share("youku"), 1)}, 2.0)
    assert min(got.values()) >= 0.75 * max(got.values()), got
    assert sum(got.values()) <= 4_000_000 * 2.0 * 1.1 + 4 * BLOCK, got  # and the cap holds


def test_one_shared_bucket_was_unfair():
    """What the old single bucket did, kept as a check on the test above: the same load taken
    through one share (first come, first served) gives the 4-thread upload most of it."""
    cap = Throttle(4_000_000)
    one = cap.share()
    got = _run({"vod": (one, 4), "youku": (one, 1)}, 1.5)
    assert got["vod"] > 2 * got["youku"], got


def test_an_idle_upload_banks_nothing():
    cap = Throttle(4_000_000)
    a, late = cap.share("a"), cap.share("b")
    alone = _run({"a": (a, 2)}, 0.5)  # b idle meanwhile: its share went to a, and b banks no credit
    assert alone["a"] >= 0.7 * 4_000_000 * 0.5, alone
    got = _run({"a": (a, 2), "b": (late, 1)}, 1.0)
    assert 0.75 * got["a"] <= got["b"] <= 1.3 * got["a"], got


def test_a_rate_change_applies_to_a_waiting_request_at_once():
    cap = Throttle(10_000)  # 1 MiB owed at 10 kB/s: the next request would wait ~100 s
    share = cap.share()
    share.take(1 << 20)
    done = threading.Event()
    t = threading.Thread(target=lambda: (share.take(BLOCK), done.set()), daemon=True)
    t.start()
    assert not done.wait(0.3)
    cap.rate = 100_000_000
    assert done.wait(5), "the waiting request still waits for the old rate"


def test_off_releases_every_waiter():
    cap = Throttle(10_000)
    share = cap.share()
    share.take(1 << 20)
    done = threading.Event()
    threading.Thread(target=lambda: (share.take(BLOCK), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    cap.rate = None
    assert done.wait(5)


def test_cancel_wakes_a_waiting_request_at_once():
    cap = Throttle(10_000)
    cancel = CancelSignal()
    share = cap.share("t", cancel=cancel)
    share.take(1 << 20)
    raised = []

    def wait() -> None:
        try:
            share.take(BLOCK, cancel)
        except UploadCancelled:
            raised.append(time.monotonic())

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    time.sleep(0.2)
    set_at = time.monotonic()
    cancel.set()
    t.join(5)
    assert raised and raised[0] - set_at < 0.25  # woken, not found by a poll (0.5 s)


def test_a_target_cap_holds_under_a_looser_global_one():
    cap = Throttle(8_000_000)
    cap.child("slow").rate = 1_000_000
    got = _run({"slow": (cap.share("slow"), 2), "fast": (cap.share("fast"), 2)}, 1.5)
    assert got["slow"] <= 1_000_000 * 1.5 * 1.2 + 2 * BLOCK, got
    assert got["fast"] > 3 * got["slow"], got  # the global cap's rest goes to the other target


def test_uncapped_takes_never_block_and_count():
    seen = []
    share = Throttle(None).share("t", seen.append)
    start = time.monotonic()
    for _ in range(1000):
        share.take(1 << 20)
    assert time.monotonic() - start < 5 and sum(seen) == 1000 << 20


def test_reads_get_smaller_at_low_rates():
    assert Throttle(None).block(1 << 20) == 1 << 20
    assert Throttle(100_000_000).block(1 << 20) == 1 << 20
    assert Throttle(1_000_000).block(1 << 20) == 64 << 10
    assert Throttle(4_000_000).block(1 << 20) == 200_000
    assert Throttle(1_000_000).block(1000) == 1000


@pytest.mark.parametrize("rate", [2_000_000])
def test_the_cap_holds(rate):
    cap = Throttle(rate)
    start = time.monotonic()
    got = _run({"a": (cap.share("a"), 3)}, 1.5)
    elapsed = time.monotonic() - start
    assert got["a"] <= rate * elapsed * 1.05 + 0.1 * rate + 3 * BLOCK

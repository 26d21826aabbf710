"""The SQLite claim stays O(limit), not O(queue), for every `order` and with skipped targets
and watches: no statement of a claim sorts or scans the queue (EXPLAIN QUERY PLAN), and the
work SQLite does per claim (virtual machine steps, counted by a progress handler: no clock)
hardly grows from 200 to 20,000 waiting jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Intent, Ledger
from vidupd.ledger.claim_order import ORDERS

META = Metadata(title="t")
CLAIMS = [dict(), dict(skip_targets=["slow"]), dict(skip_watches=["/a"]), dict(skip_targets=["fast"],
                                                                              skip_watches=["/b"])]


def fill(ledger: Ledger, root: Path, n: int) -> None:
    """n waiting jobs: most of them for a "slow" target, in two watches, sizes and priorities mixed."""
    intents = [Intent(root / f"{i:06d}.mp4", "/a" if i % 3 else "/b", (("slow" if i % 10 else "fast", "video"),),
                      FileIdentity(1, i + 1, 1000 + (i * 7919) % 5000, 1), META, i % 4) for i in range(n)]
    ledger.offer_many(intents)


@pytest.fixture
def big(tmp_path: Path):
    ledger = Ledger(tmp_path / "state")
    fill(ledger, tmp_path, 3000)
    yield ledger
    ledger.close()


@pytest.mark.parametrize("order", ORDERS)
def test_no_claim_statement_sorts_or_scans_the_queue(big: Ledger, order: str):
    seen: list[str] = []
    big.store._db.set_trace_callback(seen.append)
    try:
        for kw in CLAIMS:
            assert len(big.claim("A", 3, 60, order=order, poll_limit=2, **kw)) == 3
    finally:
        big.store._db.set_trace_callback(None)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 4 * len(CLAIMS)
    for sql in selects:
        steps = [r[3] for r in big.store._db.execute(f"EXPLAIN QUERY PLAN {sql}")]
        plan = " | ".join(steps)
        # a SCAN is only allowed of a one-row subquery's co-routine (the group walk's two seeks), never of jobs
        coroutines = {s.split()[-1] for s in steps if s.startswith("CO-ROUTINE ")}
        scans = [s for s in steps if "SCAN" in s and not (s.startswith("SCAN ") and s.split()[1] in coroutines)]
        assert "TEMP B-TREE" not in plan and not scans, (sql, plan)


def _steps(ledger: Ledger, order: str, kw: dict) -> int:
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    ledger.store._db.set_progress_handler(count, 100)
    try:
        assert len(ledger.claim("A", 3, 60, order=order, **kw)) == 3
    finally:
        ledger.store._db.set_progress_handler(None, 0)
    return steps[0]


@pytest.mark.parametrize("order", ["oldest", "largest"])
def test_claim_work_does_not_grow_with_the_queue(tmp_path: Path, order: str):
    small, large = Ledger(tmp_path / "small"), Ledger(tmp_path / "large")
    fill(small, tmp_path, 200)
    fill(large, tmp_path, 20_000)
    try:
        for kw in CLAIMS:
            a, b = _steps(small, order, kw), _steps(large, order, kw)
            assert b <= 2 * a + 20, (kw, a, b)  # 100x the queue: about the same work (a few index levels more)
    finally:
        small.close()
        large.close()

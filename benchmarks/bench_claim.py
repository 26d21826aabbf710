#!/usr/bin/env python3
"""How long one `Ledger.claim` takes as the queue grows (issue 12: priority, order, per-target
caps and paused work must not make a claim O(queue)).

    .venv/bin/python benchmarks/bench_claim.py [--jobs 1000,100000] [--claims 200] [--limit 3] [--tmp DIR]

For each queue size a fresh SQLite ledger under --tmp gets that many queued jobs (90% for a
"slow" target, in two watches, mixed sizes and priorities 0-3), then, for every `order` and
for a claim that skips nothing, one that skips the slow target (a full target) and one that
skips a watch (paused), --claims claims of --limit jobs are timed (each released again, so
the queue stays the same). Prints the median and 95th percentile microseconds per claim;
asserts nothing. Expected: about the same figures for every queue size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vidupd.core.model import FileIdentity, Metadata  # noqa: E402
from vidupd.ledger import Intent, Ledger  # noqa: E402
from vidupd.ledger.claim_order import ORDERS  # noqa: E402

SKIPS = {"none": {}, "full target": {"skip_targets": ["slow"]}, "paused watch": {"skip_watches": ["/a"]}}


def fill(ledger: Ledger, root: Path, n: int) -> None:
    meta = Metadata(title="t")
    batch: list[Intent] = []
    for i in range(n):
        batch.append(Intent(root / f"{i:07d}.mp4", "/a" if i % 3 else "/b", (("slow" if i % 10 else "fast", "video"),),
                            FileIdentity(1, i + 1, 1000 + (i * 7919) % 100_000, 1), meta, i % 4))
        if len(batch) == 10_000:
            ledger.offer_many(batch)
            batch = []
    if batch:
        ledger.offer_many(batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="1000,100000", help="queue sizes, comma-separated")
    ap.add_argument("--claims", type=int, default=200, help="claims timed per case")
    ap.add_argument("--limit", type=int, default=3, help="jobs per claim")
    ap.add_argument("--tmp", type=Path, default=None, help="where the ledgers go (default: the system's temp)")
    args = ap.parse_args()
    print(f"{'jobs':>8} {'order':>9} {'skip':>13} {'median us':>10} {'p95 us':>8}")
    for n in (int(x) for x in args.jobs.split(",")):
        with tempfile.TemporaryDirectory(dir=args.tmp) as d:
            ledger = Ledger(Path(d) / "state")
            fill(ledger, Path(d), n)
            for order in ORDERS:
                for name, kw in SKIPS.items():
                    took = []
                    for _ in range(args.claims):
                        t0 = time.perf_counter()
                        jobs = ledger.claim("bench", args.limit, 60, order=order, **kw)
                        took.append(time.perf_counter() - t0)
                        ledger.release("bench", [j.id for j in jobs])
                    took.sort()
                    p95 = took[int(len(took) * 0.95) - 1]
                    print(f"{n:>8} {order:>9} {name:>13} {statistics.median(took) * 1e6:>10.0f} {p95 * 1e6:>8.0f}")
            ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

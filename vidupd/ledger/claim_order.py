"""The order in which waiting jobs are claimed: priority (higher first), then the configured
`order` for jobs of equal priority, then the job id. Backend-neutral: the column list every
backend's index and ORDER BY follow, and the same order as a Python sort key, for merging
the per-(target, watch) candidate lists a claim collects (see vidupd.ledger.sqlite_claim).

Why per (target, watch) groups: a claim that skips a full target or a paused watch must not
walk past that group's waiting jobs one by one (100,000 of them would make every claim
O(queue)); walking each remaining group's index from its head and merging takes at most
`limit` rows of each group."""

from __future__ import annotations

from typing import Any, Callable

ORDERS = ("oldest", "smallest", "largest", "name")
DEFAULT_ORDER = "oldest"

# order -> (the index's columns after (state, target, watch), its name in the SQLite schema)
_COLUMNS = {
    "oldest": ("priority DESC", "id"),
    "smallest": ("priority DESC", "size", "id"),
    "largest": ("priority DESC", "size DESC", "id"),
    "name": ("priority DESC", "path", "id"),
}


def check_order(order: str) -> str:
    """`order`, or ValueError naming the allowed values."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    return order


def index_name(order: str) -> str:
    return f"jobs_queue_{check_order(order)}"


def order_by(order: str) -> str:
    """The ORDER BY clause of `order` (after the group's equality columns)."""
    return ", ".join(_COLUMNS[check_order(order)])


def sort_key(order: str) -> Callable[[Any], tuple]:
    """A key over rows with `id`, `priority`, `size` and `path` that sorts as `order_by`
    does in SQL: a path stored as TEXT sorts before one stored as BLOB (a non-UTF-8
    name), each by its bytes (UTF-8 keeps code-point order, so str comparison agrees)."""
    check_order(order)

    def key(r: Any) -> tuple:
        if order == "smallest":
            middle: tuple = (r["size"],)
        elif order == "largest":
            middle = (-r["size"],)
        elif order == "name":
            path = r["path"]
            middle = (isinstance(path, (bytes, memoryview)), bytes(path) if isinstance(path, memoryview) else path)
        else:
            middle = ()
        return (-r["priority"], *middle, r["id"])

    return key

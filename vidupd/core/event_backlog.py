"""Event lines held back while the event log cannot be written (a full log disk).

Bounded in lines and bytes, so an outage that lasts for days costs a fixed amount of
memory. Beyond the cap the least important line goes first: progress and debug lines,
then ordinary events, and an `upload.completed` (the line with a remote id that Filebeat
pipelines wait for) only when nothing else is left; for those the oldest @timestamp is
kept, so the service layer can re-emit their remote ids from the ledger (the ledger
keeps the facts; this module never touches it).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass

MAX_LINES = 20_000  # held back at most ...
MAX_BYTES = 8 << 20  # ... and at most this many bytes of them

LOW, NORMAL, KEEP = 0, 1, 2  # importance: progress/debug, other events, completed uploads
_NAMES = ("progress", "events", "completed")


def importance(line: str) -> int:
    """How much a rendered line matters (read from its text: no JSON parsing per line)."""
    if '"event.action": "upload.completed"' in line:
        return KEEP
    if '"event.action": "upload.progress"' in line or '"log.level": "debug"' in line:
        return LOW
    return NORMAL


@dataclass(frozen=True)
class Dropped:
    """What the cap threw away during one outage."""

    by_kind: dict[str, int]  # "progress" / "events" / "completed" -> lines
    completed_since: str | None  # @timestamp of the oldest dropped upload.completed, if any

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


class Backlog:
    """Lines in the order they were emitted, three queues by importance."""

    def __init__(self, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES):
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self._queues: tuple[deque[tuple[int, str]], ...] = (deque(), deque(), deque())
        self._seq = itertools.count()
        self._bytes = 0
        self._dropped = [0, 0, 0]
        self._completed_since: str | None = None

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, line: str) -> None:
        rank = importance(line)
        self._queues[rank].append((next(self._seq), line))
        self._bytes += len(line) + 1
        while len(self) > self.max_lines or self._bytes > self.max_bytes:
            self._drop_one()

    def _drop_one(self) -> None:
        for rank, q in enumerate(self._queues):
            if q:
                _, line = q.popleft()
                self._bytes -= len(line) + 1
                self._dropped[rank] += 1
                if rank == KEEP and self._completed_since is None:
                    self._completed_since = _timestamp(line)
                return

    def head(self) -> str | None:
        """The oldest line held back (the next to write), or None."""
        heads = [q[0] for q in self._queues if q]
        return min(heads)[1] if heads else None

    def pop(self) -> None:
        """Forget the head: it was written."""
        rank = min((q[0][0], r) for r, q in enumerate(self._queues) if q)[1]
        _, line = self._queues[rank].popleft()
        self._bytes -= len(line) + 1

    def take_dropped(self) -> Dropped | None:
        """What was dropped since the last call (None: nothing), and start counting afresh."""
        if not any(self._dropped):
            return None
        out = Dropped(dict(zip(_NAMES, self._dropped)), self._completed_since)
        self._dropped = [0, 0, 0]
        self._completed_since = None
        return out


def _timestamp(line: str) -> str | None:
    try:
        value = json.loads(line).get("@timestamp")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None

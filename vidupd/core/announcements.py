"""Completions being announced: the window between the ledger's commit and the event line.

A job's `upload.completed` line is written after the ledger has committed the completion
(the ledger returns the event only then, so a refused write never logs one). A SIGKILL in
the microseconds between the two left a job done in the ledger with no `upload.completed`
line (the 300-kill crash soak found one). This file, in the host's own state dir, closes
that gap: `begin(job, generation)` is appended before the ledger call, `end(job)` after the
line was written; at start-up, a `begin` without its `end` names a completion that may not
have been announced, and the daemon announces it from the ledger if the job finished under
that same lease generation (so a job another host took over and finished is not claimed).

Lines are two small appends per completion (`B id gen`, `E id`), no fsync: they only have
to survive the process, not the machine (the event line they guard is not fsynced either).
The file is emptied once nothing is outstanding and it has grown past a bound. A write that
fails (a full state disk) is skipped: the ledger's own write fails there too.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

ANNOUNCEMENTS = "announcements"  # the file's name in the state dir
MAX_BYTES = 1 << 20  # emptied at this size once no completion is outstanding


@dataclass(frozen=True)
class Pending:
    """A completion begun and not seen announced: the job and the lease generation it was under."""

    job_id: int
    generation: int


class Announcements:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._fd: int | None = None

    def pending(self) -> list[Pending]:
        """What the previous process begun and did not end (read before `begin` is used)."""
        try:
            text = self.path.read_bytes().decode("ascii", "replace")
        except FileNotFoundError:
            return []
        begun: dict[int, int] = {}
        for line in text.splitlines():
            parts = line.split()
            try:
                if len(parts) == 3 and parts[0] == "B":
                    begun[int(parts[1])] = int(parts[2])
                elif len(parts) == 2 and parts[0] == "E":
                    begun.pop(int(parts[1]), None)
            except ValueError:  # a torn last line (killed mid-append): nothing was begun by it
                continue
        return [Pending(j, g) for j, g in sorted(begun.items())]

    def reset(self) -> None:
        """Start empty (after the start-up replay)."""
        with self._lock:
            self._close()
            try:
                os.truncate(self.path, 0)
            except OSError:  # not there (nothing to empty), or the disk refuses: best effort
                pass

    def begin(self, job_id: int, generation: int) -> None:
        with self._lock:
            self._open.add(job_id)
            self._append(f"B {job_id} {generation}\n")

    def end(self, job_id: int) -> None:
        with self._lock:
            self._open.discard(job_id)
            self._append(f"E {job_id}\n")
            if not self._open and self._fd is not None:
                try:
                    if os.fstat(self._fd).st_size > MAX_BYTES:
                        os.ftruncate(self._fd, 0)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            self._close()

    def _append(self, line: str) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(self._fd, line.encode("ascii"))
        except OSError:
            pass  # best effort: see the module's docstring

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

"""Human-readable event lines for the systemd journal, with the event's fields attached.

Under systemd, stdout/stderr are connected to the journal and $JOURNAL_STREAM names that
stream ("DEV:INODE", systemd.exec(5)). When the JSON event log goes to a file, every event
is also written to the journal as one readable line (its `message`), at the event's
priority, with its fields as journal fields: `event.action` -> EVENT_ACTION,
`vidupd.job_id` -> VIDUPD_JOB_ID, `vidupd.remote_id` -> VIDUPD_REMOTE_ID, and so on:

    journalctl -u vidupd EVENT_ACTION=upload.completed -o verbose

The fields go through the journal's native protocol (systemd.journal.sendv). If that socket
cannot be reached, lines are written to the journal stream instead, prefixed with the
syslog priority ("<6>...") that journald understands; the fields are lost then, not the line.

When events go to stdout and stdout is the journal stream, the JSON lines are already in
the journal, and nothing more is written. Outside systemd this module is silent.
Secrets are scrubbed from every message and field (secrets.redact).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from typing import Any, Callable, TextIO

from . import secrets

try:
    from systemd import journal as _journal
except ImportError:  # pragma: no cover - systemd-python is a Linux dependency
    _journal = None

PRIORITIES = {"debug": 7, "info": 6, "warn": 4, "warning": 4, "error": 3, "critical": 2}
QUIET_ACTIONS = {"upload.progress": 7}  # frequent: kept in the journal at debug priority
_SKIP = {"@timestamp", "message", "log.level"}
_BAD = re.compile(r"[^A-Z0-9_]")


def journal_field(name: str) -> str:
    """ECS / vidupd name -> journal field name (upper case, digits, '_'; no leading '_')."""
    out = _BAD.sub("_", name.upper()).lstrip("_")
    if not out or not out[0].isalpha():
        out = "F_" + out
    return out[:64]


def _stream_is(fd: int, spec: str) -> bool:
    try:
        dev, ino = (int(x) for x in spec.split(":"))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalOutput:
    """Writes events as human lines to the journal (natively, or to the journal stream)."""

    def __init__(self, stream: TextIO, native: bool = True,
                 sendv: Callable[..., Any] | None = None):
        self._stream = stream
        self._sendv = sendv or (_journal.sendv if _journal is not None else None)
        self.native = native and self._sendv is not None
        self._lock = threading.Lock()

    @classmethod
    def detect(cls, events_destination: str) -> "JournalOutput | None":
        """An output if a standard stream is connected to the journal, else None."""
        spec = os.environ.get("JOURNAL_STREAM", "")
        if not spec:
            return None
        if _stream_is(2, spec):
            stream: TextIO = sys.stderr
        elif _stream_is(1, spec):
            if events_destination == "-":
                return None  # the JSON lines themselves already go to the journal
            stream = sys.stdout
        else:
            return None  # JOURNAL_STREAM inherited, but our streams were redirected elsewhere
        return cls(stream, native=os.path.exists("/run/systemd/journal/socket"))

    def write(self, event: dict[str, Any]) -> None:
        level = str(event.get("log.level", "info"))
        action = str(event.get("event.action", ""))
        priority = min(PRIORITIES.get(level, 6), 7)
        priority = max(priority, QUIET_ACTIONS.get(action, priority))
        message = secrets.redact(str(event.get("message", "")))
        if self.native:
            fields = [f"MESSAGE={message}", f"PRIORITY={priority}", "SYSLOG_IDENTIFIER=vidupd"]
            for key, value in event.items():
                if key in _SKIP or value is None:
                    continue
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                fields.append(f"{journal_field(key)}={secrets.redact(text)}")
            try:
                assert self._sendv is not None
                self._sendv(*fields)
                return
            except OSError:
                self.native = False  # no journal socket after all: the stream keeps the lines
        line = " ".join(message.split())  # one event, one journal line
        with self._lock:
            try:
                self._stream.write(f"<{priority}>{line}\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass

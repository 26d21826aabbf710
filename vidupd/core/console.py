"""Events as one readable, coloured line each, for a person at a terminal.

The JSON event log is for machines (Filebeat); on a terminal the same events are shown as

    20:21:01 INFO  upload.completed  clip.mp4: uploaded to youku as XMTAx  job=3

(local time, level, action, the event's message, then the few fields a person acts on that
the message does not already say: the job, the remote id, the error). Colours come from
rich, which honours NO_COLOR and FORCE_COLOR and leaves them out when the stream is no
terminal. A line is never wrapped: a long one runs on, as in `tail -f`. Secrets are
scrubbed (secrets.redact) like everywhere else.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Any, TextIO

from rich.color import ColorSystem
from rich.console import Console
from rich.text import Text

from . import secrets

FORMATS = ("auto", "json", "console")  # [log] format: human on a terminal / always JSON / always human

# rich's names for what a terminal can show (Console.color_system; None: no colours at all)
_COLOR_SYSTEMS = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT,
                  "truecolor": ColorSystem.TRUECOLOR, "windows": ColorSystem.WINDOWS}
_LEVEL_STYLES = {"debug": ("DEBUG", "dim"), "info": ("INFO ", "green"), "warn": ("WARN ", "yellow"),
                 "error": ("ERROR", "bold red"), "critical": ("CRIT ", "bold white on red")}
# fields worth a glance, in this order, when the message does not already show their value
_SHOWN = (("vidupd.job_id", "job", "cyan"), ("vidupd.remote_id", "id", "bold green"),
          ("media.id", "media", "bold green"), ("vidupd.attempt", "attempt", ""),
          ("vidupd.retry_in_seconds", "retry in", "yellow"), ("vidupd.reason", "reason", "yellow"),
          ("error.message", "error", "red"))


def _action_style(action: str, level: str) -> str:
    if level in ("error", "critical"):
        return "bold red"
    if level == "warn":
        return "yellow"
    if action.endswith((".completed", ".ready", ".started")) and action != "upload.started":
        return "bold green"
    if action == "upload.progress":
        return "dim cyan"
    return "cyan"


def human_line(event: dict[str, Any]) -> Text:
    """The rich Text of one ECS event dict (as events._to_ecs builds it)."""
    level = str(event.get("log.level", "info"))
    action = str(event.get("event.action", ""))
    message = secrets.redact(str(event.get("message", "")))
    text = Text(no_wrap=True, overflow="ignore")
    text.append(_clock(event.get("@timestamp")), style="dim")
    word, style = _LEVEL_STYLES.get(level, (level.upper()[:5].ljust(5), ""))
    text.append(" ")
    text.append(word, style=style)
    text.append(" ")
    text.append(action.ljust(17) if action else "", style=_action_style(action, level))
    text.append(" ")
    text.append(message, style="dim" if action == "upload.progress" else "")
    for key, label, field_style in _SHOWN:
        value = event.get(key)
        if value is None or value == "" or (isinstance(value, str) and value in message):
            continue
        if key == "vidupd.retry_in_seconds":
            value = f"{value}s"
        text.append("  ")
        text.append(f"{label}=", style="dim")
        text.append(secrets.redact(str(value)), style=field_style)
    return text


def _clock(stamp: Any) -> str:
    """Local wall-clock time of an ECS @timestamp (UTC), HH:MM:SS."""
    try:
        when = _dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return when.astimezone().strftime("%H:%M:%S")
    except ValueError:
        return str(stamp)[11:19]


class ConsoleOutput:
    """Writes human event lines to one stream (stdout or stderr), thread-safely."""

    def __init__(self, stream: TextIO, force: bool = False):
        self.stream = stream
        self._console = Console(file=stream, soft_wrap=True, highlight=False, markup=False, emoji=False,
                                force_terminal=True if force else None, log_path=False)
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        text = self.ansi(human_line(event)) + "\n"
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed terminal must not stop uploads
                pass

    def ansi(self, line: Text) -> str:
        """`line` as this terminal shows it: its styles as ANSI codes (colours left out under
        NO_COLOR, everything on a stream that is no terminal), never wrapped or cropped."""
        system = _COLOR_SYSTEMS.get(self._console.color_system or "")
        if system is None:
            return line.plain
        parts = []
        for seg in line.render(self._console, end=""):
            style = seg.style.without_color if seg.style and self._console.no_color else seg.style
            parts.append(style.render(seg.text, color_system=system) if style else seg.text)
        return "".join(parts)


def wanted(fmt: str, stream: TextIO) -> bool:
    """Whether events on `stream` are shown as human lines: `console` always, `json` never,
    `auto` when the stream is a terminal."""
    if fmt == "console":
        return True
    if fmt == "json":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

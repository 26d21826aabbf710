"""The event log: one JSON object per line, ECS field names, secrets scrubbed.

structlog is configured once (`configure`). Code emits events with `emit(action, message,
**fields)`; short field names are mapped to ECS names here and nowhere else. Library
logging (urllib3, oss2, watchdog, ...) goes through the same pipeline as action "log".
Under systemd, each event is also written to the journal as a readable line with its
fields attached (vidupd.core.journal), when the JSON lines go to a file.

On a terminal, events are shown as one readable line each (vidupd.core.console): `[log]
format = "auto"` (the default) renders the events on stdout as human lines when stdout is
a terminal, and mirrors them on stderr when they go to a file and stderr is a terminal
(`vidupd run` by hand); `"json"` keeps JSON everywhere, `"console"` forces human lines.
The JSON lines themselves never change with the format: a file, a pipe or the journal get
them as they are.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from .. import __version__
from . import secrets
from .console import ConsoleOutput, wanted as _console_wanted
from .event_backlog import Dropped
from .event_sink import EventSink
from .ecs import ECS_VERSION, FAILING as _FAILING, MOVED, categorise as _categorise
from .fsnames import safe_text
from .journal import JournalOutput


@dataclass(frozen=True)
class LogConfig:
    """Where the JSON lines go and from which level: the config's [log] table."""

    events: str = "-"  # a path, or "-" for stdout
    level: str = "info"
    format: str = "auto"  # "auto" | "json" | "console": how a terminal sees the events (vidupd.core.console)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# short names used in code -> ECS / vidupd field names in the log
FIELD_NAMES = {
    "action": "event.action",
    "outcome": "event.outcome",
    "path": "file.path",
    "size": "file.size",
    "target": "vidupd.target",
    "provider": "vidupd.provider",
    "job_id": "vidupd.job_id",
    "remote_id": "vidupd.remote_id",
    "remote_kind": "vidupd.remote_kind",
    "error": "error.message",
    "error_type": "error.type",
    "logger": "log.logger",
}


class _SinkLogger:
    """structlog logger whose every method writes one rendered line to the current sink."""

    def msg(self, message: str) -> None:
        sink = _sink
        if sink is not None:
            sink.write(message)

    debug = info = warning = error = critical = log = msg


_HOST = socket.gethostname()
_ID_PREFIX = uuid.uuid4().hex[:16]  # per process; with a counter, unique without a syscall per event
_ids = itertools.count(1)


def _next_event_id() -> str:
    """A stable id per event line, so Filebeat can ship a line twice without a duplicate document."""
    return f"{_ID_PREFIX}-{next(_ids):x}"


def _to_ecs(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    level = "warn" if method == "warning" else method
    action = str(event.get("action", "log"))
    kind, category, types = _categorise(action, level)
    out: dict[str, Any] = {
        "@timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "log.level": level,
        "message": safe_text(str(event.pop("event", ""))),
        "event.id": _next_event_id(),
        "event.dataset": "vidupd.events",
        "event.kind": kind,
        "service.name": "vidupd",
        "service.version": __version__,
        "ecs.version": ECS_VERSION,
        "host.hostname": _HOST,
        "process.pid": os.getpid(),
    }
    if category:
        out["event.category"] = category
    out["event.type"] = types
    failing = level in _FAILING
    for key, value in event.items():
        if not failing and key in ("error", "error_type"):
            # error.* only on failures (ECS; error views): a retried 5xx is the reason of a retry
            # (vidupd.cause where the event already names its reason)
            key = ("reason" if "reason" not in event else "cause") + ("" if key == "error" else "_type")
        elif key in MOVED and value is not None:
            ecs = MOVED[key]
            out[ecs] = int(round(float(value) * 1e9)) if key == "duration_seconds" else _valid_text(value)
        if isinstance(value, secrets.Secret):
            value = "***"
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        name = FIELD_NAMES.get(key) or (key if "." in key or key.startswith("@") else f"vidupd.{key}")
        out[name] = _valid_text(value)
    return out


def _valid_text(value: Any) -> Any:
    """Strings made valid UTF-8 (a non-UTF-8 file name shows as `\\xff`), nested ones too:
    a lone surrogate would make the line unwritable, and the event would be lost."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, (list, tuple)):
        return [_valid_text(v) for v in value]
    if isinstance(value, dict):
        return {safe_text(str(k)): _valid_text(v) for k, v in value.items()}
    return value


def _render(logger: Any, method: str, event: dict[str, Any]) -> str:
    return secrets.redact(json.dumps(event, ensure_ascii=False, default=lambda o: safe_text(str(o))))


_sink: EventSink | None = None
_journal: JournalOutput | None = None
_console: ConsoleOutput | None = None
_console_replaces_sink = False  # events on stdout, shown as human lines there instead of JSON
_lost_before = 0  # lines lost by sinks a reload replaced
_config_lock = threading.Lock()


def _to_journal(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    out = _journal
    if out is not None:
        try:
            out.write(event)
        except Exception:  # the journal is a convenience; the event log must not depend on it
            pass
    return event


_line_observers: tuple[Callable[[dict[str, Any]], None], ...] = ()


def observe_lines(fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Call `fn(line)` with every event line as the log has it (the ECS dict, event.id and
    all; `as_json(line)` is its JSON): only what the [log] level lets through. For webhooks;
    `fn` runs in the emitting thread, must be quick and never emit. Returns the undo."""
    global _line_observers
    with _config_lock:
        _line_observers = (*_line_observers, fn)

    def undo() -> None:
        global _line_observers
        with _config_lock:
            _line_observers = tuple(o for o in _line_observers if o is not fn)

    return undo


def as_json(line: dict[str, Any]) -> str:
    """The JSON text of an event line, exactly as the event log writes it."""
    return _render(None, "", line)


def _to_line_observers(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    for fn in _line_observers:
        try:
            fn(event)
        except Exception:  # an observer's bug must not lose the event
            pass
    return event


def _to_console(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    out = _console
    if out is not None:
        out.write(event)
        if _console_replaces_sink:
            raise structlog.DropEvent
    return event


class _StdlibBridge(logging.Handler):
    """Routes library log records into the event pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not kill the daemon
            message = str(record.msg)
        fields: dict[str, Any] = {"action": "log", "logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        level = record.levelname.lower()
        emit_level = level if level in ("debug", "info", "warning", "error") else "error"
        getattr(structlog.get_logger("vidupd"), emit_level)(message, **fields)


class _AsDebug(logging.Filter):
    """aliyunsdkcore's client logs every ServerException at error level ("ServerException
    occurred ... HTTP Status: 500 ... please retry"), also for the requests vidupd retries and
    then reports itself (upload.retrying, upload.failed, with the platform's code): those
    lines made `log.level:error` and `journalctl -p warning` fire for uploads that went
    through. They are kept, at debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_DEMOTED = ("aliyunsdkcore.client",)  # loggers of failures vidupd reports in its own events


def _console_for(log: LogConfig, mirror: bool) -> tuple[ConsoleOutput | None, bool]:
    """The human output, if any, and whether it takes the JSON lines' place (stdout)."""
    force = log.format == "console"
    if log.events == "-":
        return (ConsoleOutput(sys.stdout, force), True) if _console_wanted(log.format, sys.stdout) else (None, False)
    if mirror and _journal is None and _console_wanted(log.format, sys.stderr):
        return ConsoleOutput(sys.stderr, force), False
    return None, False


def configure(log: LogConfig, mirror: bool = True) -> EventSink:
    """Set up the pipeline once per process (again on reload, replacing the sink).

    `mirror`: with events going to a file, also show them on stderr when that is a
    terminal (the daemon run by hand); a one-shot command with its own output says no."""
    global _sink, _journal, _console, _console_replaces_sink, _lost_before
    with _config_lock:
        old = _sink
        if old is not None and old.destination == log.events != "-":
            old.reopen()  # same file (a reload): keep the sink, only pick up a rotated file
            old = None
        else:
            _sink = EventSink(log.events, current=lambda: _sink, on_resumed=_resumed,
                              backlog=old.backlog if old is not None else None)  # held-back lines move on
        _journal = JournalOutput.detect(log.events)
        _console, _console_replaces_sink = _console_for(log, mirror)
        level = _LEVELS[log.level]
        structlog.configure(
            processors=[_to_ecs, _to_journal, _to_line_observers, _to_console, _render],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=lambda *args: _SinkLogger(),
            cache_logger_on_first_use=False,
        )
        root = logging.getLogger()
        for h in list(root.handlers):
            if isinstance(h, _StdlibBridge):
                root.removeHandler(h)
        root.addHandler(_StdlibBridge())
        root.setLevel(level)
        # chatty libraries speak at warning unless we debug
        for name in ("urllib3", "oss2", "watchdog", "aliyunsdkcore", "requests"):
            logging.getLogger(name).setLevel(level if level == logging.DEBUG else logging.WARNING)
        for name in _DEMOTED:  # a logger's filters see only what is logged on it: name the one that logs
            lib = logging.getLogger(name)
            if not any(isinstance(f, _AsDebug) for f in lib.filters):
                lib.addFilter(_AsDebug())
        if old is not None:
            _lost_before += old.lost_total
            old.close()
        return _sink


def reopen() -> None:
    if _sink is not None:
        _sink.reopen()


def flush() -> None:
    """Try again to write the lines a full log disk held back (the daemon, once a tick)."""
    if _sink is not None:
        _sink.flush()


CompletedLost = Callable[[str | None, int], None]
_completed_lost: tuple[CompletedLost, ...] = ()


def on_completed_dropped(fn: CompletedLost) -> Callable[[], None]:
    """Call `fn(oldest @timestamp, count)` when held-back `upload.completed` lines had to be
    dropped (the backlog's cap): the service layer re-emits their remote ids from the
    ledger. `fn` runs in the emitting thread, may emit, must not raise. Returns the undo."""
    global _completed_lost
    with _config_lock:
        _completed_lost = (*_completed_lost, fn)

    def undo() -> None:
        global _completed_lost
        with _config_lock:
            _completed_lost = tuple(o for o in _completed_lost if o is not fn)

    return undo


def _resumed(late: int, dropped: Dropped | None) -> None:
    """The log disk takes lines again: one event says how many came late and were lost."""
    gone = dropped.total if dropped else 0
    message = f"event log writable again: {late} held-back line(s) written late"
    if dropped:
        kinds = ", ".join(f"{n} {k}" for k, n in dropped.by_kind.items() if n)
        message += f", {gone} dropped to keep memory bounded ({kinds})"
    emit("event_log.resumed", message, level="warning" if gone else "info", late=late, dropped=gone,
         dropped_by_kind=dropped.by_kind if dropped else None,
         completed_dropped_since=dropped.completed_since if dropped else None)
    if dropped and dropped.by_kind.get("completed"):
        for fn in _completed_lost:
            try:
                fn(dropped.completed_since, dropped.by_kind["completed"])
            except Exception:  # re-emitting is a courtesy; the ledger keeps the facts anyway
                pass


Observer = Callable[[str, str, dict[str, Any]], None]
_observers: tuple[Observer, ...] = ()


def observe(fn: Observer) -> Callable[[], None]:
    """Call `fn(action, level, fields)` for every event emitted, whatever the log level lets
    through (the metrics count events the log may filter); returns the undo. `fn` runs in
    the emitting thread and must be quick and never raise."""
    global _observers
    with _config_lock:
        _observers = (*_observers, fn)

    def undo() -> None:
        global _observers
        with _config_lock:
            _observers = tuple(o for o in _observers if o is not fn)

    return undo


def lines_lost() -> int:
    """Event lines the sink could not write since the process started (a full log disk)."""
    return _lost_before + (_sink.lost_total if _sink is not None else 0)


NULL: Any = type("_Null", (), {"__repr__": lambda self: "NULL"})()  # a field written as JSON null (None is left out)


def emit(action: str, message: str, level: str = "info", **fields: Any) -> None:
    """One event. `fields` use the short names of FIELD_NAMES or become `vidupd.<name>`;
    a field that is None is left out, one that is NULL is written as null."""
    fields = {k: (None if v is NULL else v) for k, v in fields.items() if v is not None}
    for fn in _observers:
        try:
            fn(action, level, fields)
        except Exception:  # an observer's bug must not lose the event
            pass
    getattr(structlog.get_logger("vidupd"), level)(message, action=action, **fields)

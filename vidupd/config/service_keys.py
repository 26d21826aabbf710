"""The config's service tables: [log], [metrics] and [[notify]] (what the daemon tells the
outside world), read by the loader (vidupd.config.loader) with its typed getters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.console import FORMATS
from ..core.events import LogConfig
from ..providers.base import Option
from .model import LEVELS, NOTIFY_EVENTS, NotifyConfig, parse_listen


def absolute(base: Path, value: str) -> Path:
    """A config path: `~` expanded, relative to the config file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


class ServiceKeys:
    """Mixin of the loader (it provides error, _take, _checked, _strings, _unknown, _secret)."""

    def _log(self, table: Any, base: Path) -> LogConfig:
        if not isinstance(table, dict):
            self.error("log", "must be a table")
            return LogConfig()
        self._unknown(table, {"events", "level", "format"}, "log")
        events = self._take(table, "events", "log", str, "-")
        level = self._checked(table, "level", "log", Option(str, "info", choices=LEVELS))
        fmt = self._checked(table, "format", "log", Option(str, "auto", choices=FORMATS))
        if events and events != "-":
            events = str(absolute(base, events))
        return LogConfig(events=events or "-", level=level, format=fmt)

    def _metrics(self, table: Any) -> str | None:
        if not isinstance(table, dict):
            self.error("metrics", "must be a table")
            return None
        self._unknown(table, {"listen"}, "metrics")
        listen = self._take(table, "listen", "metrics", str, None)
        if listen is None:
            return None
        try:
            parse_listen(listen)
        except ValueError as e:
            self.error("metrics.listen", str(e))
            return None
        return listen

    def _notify(self, tables: Any) -> tuple[NotifyConfig, ...]:
        if isinstance(tables, dict):
            tables = [tables]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.error("notify", "must be [[notify]] tables")
            return ()
        out = []
        for n, table in enumerate(tables):
            where = f"notify[{n}]"
            self._unknown(table, {"url", "events", "secret", "timeout", "attempts", "queue"}, where)
            url = self._take(table, "url", where, str)
            if url is not None and not url.startswith(("http://", "https://")):
                self.error(f"{where}.url", f"must be an http:// or https:// URL, not {url!r}")
                url = None
            wanted = self._strings(table, "events", where, NOTIFY_EVENTS)
            for action in wanted or ():
                if action.startswith("notify."):
                    self.error(f"{where}.events", f"{action}: notify.* events are not sent (they are about sending)")
            secret = None
            if isinstance(table.get("secret"), dict):
                secret = self._secret(table["secret"], f"{where}.secret")
            elif "secret" in table:
                secret = self._option(table, "secret", Option(str, None, secret=True), where)
            timeout = self._checked(table, "timeout", where, Option(float, 10.0, positive=True, maximum=300))
            attempts = self._checked(table, "attempts", where, Option(int, 5, minimum=1, maximum=100))
            queue = self._checked(table, "queue", where, Option(int, 1000, minimum=1, maximum=1_000_000))
            if url is not None:
                out.append(NotifyConfig(url=url, events=tuple(wanted or NOTIFY_EVENTS), secret=secret,
                                        timeout=timeout, attempts=attempts, queue=queue))
        return tuple(out)

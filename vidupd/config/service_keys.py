"""The config's service tables: [log], [metrics] and [[notify]] (what the daemon tells the
outside world), read by the loader (vidupd.config.loader) with its typed getters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.events import LogConfig
from ..core.writable import append_problem
from .model import NOTIFY_EVENTS, NotifyConfig, parse_listen
from .options import LOG, METRICS, NOTIFY


def absolute(base: Path, value: str) -> Path:
    """A config path: `~` expanded, relative to the config file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


class ServiceKeys:
    """Mixin of the loader (it provides error, _take, _checked, _strings, _unknown, _secret,
    read_secrets: False for a read-only command, which never writes the event log)."""

    def _log(self, table: Any, base: Path) -> LogConfig:
        if not isinstance(table, dict):
            self.error("log", "must be a table")
            return LogConfig()
        self._unknown(table, set(LOG.options), "log")
        events, level, fmt = (self._checked(table, key, "log", LOG.options[key]) for key in ("events", "level", "format"))
        if events and events != "-":
            events = str(absolute(base, events))
            # what `run` would fail on (FileNotFoundError, exit 1, a restart loop), found without writing
            problem = append_problem(Path(events)) if self.read_secrets else None
            if problem:
                self.error("log.events", problem)
        return LogConfig(events=events or "-", level=level, format=fmt)

    def _metrics(self, table: Any) -> str | None:
        if not isinstance(table, dict):
            self.error("metrics", "must be a table")
            return None
        self._unknown(table, set(METRICS.options), "metrics")
        listen = self._checked(table, "listen", "metrics", METRICS.options["listen"])
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
            opt = NOTIFY.options
            self._unknown(table, set(opt), where)
            url = self._checked(table, "url", where, opt["url"])
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
                secret = self._option(table, "secret", opt["secret"], where)
            timeout, attempts, queue = (self._checked(table, key, where, opt[key]) for key in ("timeout", "attempts", "queue"))
            if url is not None:
                out.append(NotifyConfig(url=url, events=tuple(wanted or NOTIFY_EVENTS), secret=secret,
                                        timeout=timeout, attempts=attempts, queue=queue))
        return tuple(out)

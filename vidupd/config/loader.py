"""Reads a TOML config into the values of config.model; every problem names the file and the key.

Secrets may be given inline (`key = "value"`), from the environment
(`key = { env = "NAME" }`), from a file (`key = { file = "/path" }`) or from a systemd
credential (`key = { credential = "name" }`, read from $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import providers
from ..core.filters import PathFilter
from ..core.rate_schedule import RateSchedule, parse_schedule
from ..core.retry import RetryPolicy
from ..core.secrets import Secret
from ..providers.base import REQUIRED, Option
from .model import DEFAULT_PATH, Config, ConfigError, Problem, TargetConfig, WatchConfig
from .options import RETRY, TARGET, TOP, TOP_KEYS, WATCH
from .ledger_keys import LedgerKeys
from .secret_refs import SecretRefs, exposed as _exposed
from .service_keys import ServiceKeys, absolute as _abs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

def default_path() -> Path:
    return Path(os.environ.get("VIDUPD_CONFIG") or DEFAULT_PATH)


def load(path: Path | str | None = None, *, read_secrets: bool = True) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem.

    `read_secrets=False` is for read-only commands (`status`, `health`): a secret given by
    reference is checked for its form but not read (no environment variable, file or systemd
    credential is needed), and holds a value that refuses to be revealed; nor need the event
    log be writable (they never write it)."""
    return _Loader(Path(path) if path else default_path(), read_secrets).load()


class _Loader(SecretRefs, ServiceKeys, LedgerKeys):
    def __init__(self, path: Path, read_secrets: bool = True):
        self.path = path
        self.file = str(path)
        self.read_secrets = read_secrets
        self.problems: list[Problem] = []
        self.exposed = ""  # how the config file is open to group/other ("" if it is not)

    # -- reporting -------------------------------------------------------------------
    def error(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, key, message))

    def warn(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, key, message, warning=True))

    # -- typed getters ---------------------------------------------------------------
    def _take(self, table: dict, key: str, where: str, kind: type | tuple, default: Any = REQUIRED,
              secret: bool = False) -> Any:
        """table[key] if it has the type `kind` (an int is taken as a float); a secret's
        value is never quoted, whatever was given instead."""
        full = f"{where}.{key}" if where else key
        if key not in table:
            if default is REQUIRED:
                self.error(full, "is required")
            return None if default is REQUIRED else default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            shown = " (the value of a secret is not shown)" if secret else f" ({value!r})"
            self.error(full, f"must be {names}, not {_type_name(type(value))}{shown}")
            return None if default is REQUIRED else default
        return value

    def _checked(self, table: dict, key: str, where: str, spec: Option) -> Any:
        """The value of `key` as `spec` declares it (type, then choices, units and range); on
        a problem it is reported and the default (None if required) comes back."""
        value = self._take(table, key, where, spec.types, spec.default, secret=spec.secret)
        if key not in table or value is None:
            return value
        value, problem = spec.check(value)
        if problem:
            self.error(f"{where}.{key}" if where else key, problem)
            return None if spec.default is REQUIRED else spec.default
        return value

    def _strings(self, table: dict, key: str, where: str, default: Any = REQUIRED) -> tuple[str, ...] | None:
        value = self._take(table, key, where, (list, str), default)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            self.error(f"{where}.{key}" if where else key, "must be a list of strings")
            return None
        return tuple(value)

    def _unknown(self, table: dict, allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                full = f"{where}.{key}" if where else key
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(full, f"unknown key{hint}")

    def _no_nul(self, table: Any, where: str) -> None:
        """A NUL in a string (TOML allows \\u0000) is no path, name or secret: each is
        reported, and shown as `\\x00` to the checks after, which the OS would refuse."""
        items = table.items() if isinstance(table, dict) else enumerate(table) if isinstance(table, list) else ()
        for key, value in items:
            full = f"{where}[{key}]" if isinstance(table, list) else f"{where}.{key}" if where else str(key)
            if isinstance(value, str) and "\0" in value:
                self.error(full, "must not contain a NUL character")
                table[key] = value.replace("\0", "\\x00")
            else:
                self._no_nul(value, full)

    # -- the file ----------------------------------------------------------------------
    def load(self) -> Config:
        try:
            with open(self.path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError([Problem(self.file, "-", "config file not found")]) from None
        except PermissionError:
            raise ConfigError([Problem(self.file, "-", "config file is not readable")]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([Problem(self.file, "-", f"not valid TOML: {e}")]) from None
        except UnicodeDecodeError as e:
            raise ConfigError([Problem(self.file, "-", f"not UTF-8 text (byte {e.start})")]) from None
        except RecursionError:
            raise ConfigError([Problem(self.file, "-", "not valid TOML: nested too deeply")]) from None
        base = self.path.parent
        self.exposed = _exposed(self.path)
        self._no_nul(raw, "")

        self._unknown(raw, TOP_KEYS, "")
        top = TOP.options
        state_raw = self._checked(raw, "state_dir", "", top["state_dir"])
        state_dir = _abs(base, state_raw) if state_raw else Path("/nonexistent")
        workers = self._checked(raw, "workers", "", top["workers"])
        max_rate = self._rate(raw)
        rescan = self._checked(raw, "rescan_interval", "", top["rescan_interval"])
        skip_dup = self._checked(raw, "skip_duplicates", "", top["skip_duplicates"])
        stop_timeout = self._checked(raw, "stop_timeout", "", top["stop_timeout"])
        retain = self._checked(raw, "retain_days", "", top["retain_days"])
        order = self._checked(raw, "order", "", top["order"])
        retry = self._retry(raw.get("retry", {}))
        log = self._log(raw.get("log", {}), base)
        metrics = self._metrics(raw.get("metrics", {}))
        notify = self._notify(raw.get("notify", []))
        ledger = self._ledger(raw.get("ledger", {}))
        targets = self._targets(raw.get("targets"), state_dir)
        for name, t in targets.items():
            if t.workers is not None and workers is not None and t.workers > workers:
                self.error(f"targets.{name}.workers", f"must be at most the global workers ({workers}), not {t.workers}")
        watches = self._watches(raw.get("watch"), base, targets, state_dir)

        errors = [p for p in self.problems if not p.warning]
        if errors:
            raise ConfigError(self.problems)
        return Config(
            source=self.path, state_dir=state_dir, targets=MappingProxyType(targets), watches=watches,
            workers=workers, max_rate=max_rate, rescan_interval=rescan, skip_duplicates=skip_dup,
            stop_timeout=stop_timeout,
            retry=retry, log=log, retain_days=retain, metrics_listen=metrics, notify=notify, warnings=tuple(self.problems),
            ledger=ledger,
            order=order,
        )

    def _rate(self, raw: dict, where: str = "") -> RateSchedule | None:
        """`max_rate`: a rate (10M, 10MB/s, 10MiB/s, 80Mbit/s, a number of bytes/s, "off") or an
        rclone-style timetable ("08:00,10M 12:00,off Mon-08:00,5M"); None when not given."""
        value = self._take(raw, "max_rate", where, (int, str), None)
        if value is None:
            return None
        try:
            return parse_schedule(value)
        except ValueError as e:
            self.error(f"{where}.max_rate" if where else "max_rate", str(e))
            return None

    def _retry(self, table: Any) -> RetryPolicy:
        if not isinstance(table, dict):
            self.error("retry", "must be a table")
            return RetryPolicy()
        self._unknown(table, set(RETRY.options), "retry")
        attempts, initial, maximum = (self._checked(table, key, "retry", RETRY.options[key])
                                      for key in ("attempts", "initial_backoff", "max_backoff"))
        if "max_backoff" not in table:
            maximum = max(maximum, initial)  # the default cap follows a long initial_backoff
        elif maximum < initial:
            self.error("retry.max_backoff", f"must not be less than initial_backoff ({initial:g})")
        return RetryPolicy(attempts=attempts, initial=initial, maximum=maximum)

    def _targets(self, table: Any, state_dir: Path) -> dict[str, TargetConfig]:
        if table is None:
            self.error("targets", "at least one [targets.NAME] table is required")
            return {}
        if not isinstance(table, dict):
            self.error("targets", "must be a table of [targets.NAME] tables")
            return {}
        out: dict[str, TargetConfig] = {}
        for name, body in table.items():
            where = f"targets.{name}"
            if not isinstance(body, dict):
                self.error(where, "must be a table")
                continue
            provider = self._checked(body, "provider", where, TARGET.options["provider"])
            if provider is None:
                continue
            try:
                cls = providers.provider_class(provider)
            except KeyError:
                self.error(f"{where}.provider", f"unknown provider {provider!r} (known: {', '.join(providers.names())})")
                continue
            except ImportError as e:
                self.error(f"{where}.provider", f"provider {provider!r} cannot be loaded: {e}")
                continue
            self._unknown(body, set(TARGET.options) | set(cls.options), where)
            wait_ready = self._checked(body, "wait_ready", where, TARGET.options["wait_ready"])
            ready_timeout = self._checked(body, "ready_timeout", where, TARGET.options["ready_timeout"])
            target_workers = self._checked(body, "workers", where, TARGET.options["workers"])
            max_rate = self._rate(body, where)  # this target's cap, under the global one
            settings = {key: self._option(body, key, spec, where) for key, spec in cls.options.items()}
            for key, message in cls.settings_problems(settings):
                self.error(f"{where}.{key}", message)
            out[name] = TargetConfig(name=name, provider=provider, settings=MappingProxyType(settings),
                                     wait_ready=bool(wait_ready), ready_timeout=ready_timeout,
                                     workers=target_workers, max_rate=max_rate)
        if not out and not any(p.key.startswith("targets") for p in self.problems):
            self.error("targets", "at least one [targets.NAME] table is required")
        return out

    def _option(self, table: dict, key: str, spec: Option, where: str) -> Any:
        full = f"{where}.{key}"
        if spec.secret and isinstance(table.get(key), dict):
            return self._secret(table[key], full)
        value = self._checked(table, key, where, spec)
        if spec.type is list or (isinstance(spec.type, tuple) and list in spec.type):
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                self.error(full, "must be a list of strings")
        if spec.secret and isinstance(value, str):
            if self.exposed and key in table:  # (not the default "" of an optional secret)
                self.warn(full, f"secret given inline in {self.file}, which {self.exposed}; chmod 600 it, or give "
                          "the secret as { credential = \"NAME\" }, { file = \"PATH\" } or { env = \"NAME\" }")
            return Secret(value, "inline")
        if key.endswith("_dir") or key in ("dest",):
            return _abs(self.path.parent, value) if isinstance(value, str) else value
        return value

    def _watches(self, items: Any, base: Path, targets: dict[str, TargetConfig], state_dir: Path) -> tuple[WatchConfig, ...]:
        if items is None:
            self.error("watch", "at least one [[watch]] table is required")
            return ()
        if not isinstance(items, list):
            self.error("watch", "must be an array of tables ([[watch]])")
            return ()
        out: list[WatchConfig] = []
        allowed, opt = set(WATCH.options), WATCH.options
        for i, body in enumerate(items):
            where = f"watch[{i}]"
            if not isinstance(body, dict):
                self.error(where, "must be a table")
                continue
            self._unknown(body, allowed, where)
            raw_path = self._checked(body, "path", where, opt["path"])
            if raw_path == "":  # else the watch was dropped without a word ("ok (0 watch(es))")
                self.error(f"{where}.path", "must not be empty")
            path = _abs(base, raw_path) if raw_path else None
            names = self._strings(body, "targets", where)
            if names is not None and not names:
                self.error(f"{where}.targets", "must name at least one target")
            for twice in sorted({n for k, n in enumerate(names or ()) if n in names[:k]}):
                self.error(f"{where}.targets", f"target {twice!r} is listed more than once")
            for n in names or ():
                if n not in targets and not any(p.key.startswith(f"targets.{n}") for p in self.problems):
                    self.error(f"{where}.targets", f"unknown target {n!r} (defined: {', '.join(targets) or 'none'})")
            w = dict(
                include=self._strings(body, "include", where, opt["include"].default) or opt["include"].default,
                exclude=self._strings(body, "exclude", where, opt["exclude"].default) or (),
                **{key: self._checked(body, key, where, opt[key]) for key in (
                    "recursive", "settle_seconds", "after_upload", "poll", "poll_interval", "ready_marker", "kind",
                    "priority")},
            )
            if w["ready_marker"] is not None and not w["ready_marker"].startswith("."):
                self.error(f"{where}.ready_marker", "must be a suffix starting with '.', e.g. \".done\"")
            move_raw = self._checked(body, "move_to", where, opt["move_to"])
            move_to = _abs(base, move_raw) if move_raw else None
            if w["after_upload"] == "move" and move_to is None:
                self.error(f"{where}.move_to", "is required when after_upload = \"move\"")
            if path is None:
                continue
            if not path.is_dir():
                self.error(f"{where}.path", f"{path} is not a directory")
            if _inside(path, state_dir) or _inside(state_dir, path):
                self.error(f"{where}.path", f"{path} and state_dir {state_dir} must not contain one another")
            if any(o.path == path for o in out):
                self.error(f"{where}.path", f"{path} is watched twice")
            out.append(WatchConfig(path=path, targets=names or (), move_to=move_to, **w))
        for i, w in enumerate(out):
            if w.move_to is None:
                continue
            for other in out:
                if _inside(w.move_to, other.path) and _sees(other, w.move_to):
                    self.error(f"watch[{i}].move_to", f"{w.move_to} is inside watched folder {other.path}; "
                               "exclude it there or move files elsewhere")
            if _inside(w.move_to, state_dir) or _inside(state_dir, w.move_to):
                self.error(f"watch[{i}].move_to", f"{w.move_to} must not be inside state_dir {state_dir}")
        return tuple(out)


def _sees(watch: WatchConfig, folder: Path) -> bool:
    """Whether files moved into `folder` would be picked up again by `watch`."""
    rel = folder.relative_to(watch.path)
    if rel == Path("."):
        return True
    if not watch.recursive:
        return False
    return PathFilter(watch).enters(rel)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, t.__name__)

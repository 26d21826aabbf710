"""The config's values: frozen dataclasses every layer above reads, and the problems a check reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.events import LogConfig
from ..core.model import KINDS
from ..core.rate_schedule import RateSchedule
from ..core.retry import RetryPolicy
from ..ledger.location import LedgerSettings

DEFAULT_PATH = Path("/etc/vidupd/vidupd.toml")
AFTER_UPLOAD = ("keep", "delete", "move")
LEVELS = ("debug", "info", "warning", "error")
STOP_TIMEOUT = 60.0  # seconds a stop waits for running uploads before the daemon exits without them
WATCH_KINDS = ("auto",) + KINDS
RETAIN_DAYS = 90.0  # default `retain_days`

# Names a writer uses while a file is incomplete, and names that are never media.
DEFAULT_EXCLUDES = (
    ".*", "*.part", "*.partial", "*.tmp", "*.temp", "*.crdownload", "*.filepart", "*.download",
    "*~", "*.swp", "*.swx", "#*#", "~$*", "*.!sync", "*.lock", "*.json", "Thumbs.db", "desktop.ini",
)


def parse_listen(text: str) -> tuple[str, int]:
    """`[metrics] listen`: "127.0.0.1:9464", "[::1]:9464", ":9464" (every IPv4 interface)
    -> (host, port); ValueError saying what is wrong otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


NOTIFY_EVENTS = ("upload.completed", "upload.failed", "media.ready", "media.failed", "upload.duplicate_remote_id")


@dataclass(frozen=True)
class NotifyConfig:
    """One [[notify]] webhook: the events POSTed to `url`, signed with `secret` (HMAC-SHA256)."""

    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS
    secret: Any = None  # a core.secrets.Secret, or None: unsigned
    timeout: float = 10.0  # seconds per request
    attempts: int = 5  # tries per notification, with backoff, before notify.failed
    queue: int = 1000  # notifications waiting at most; more are dropped (uploads never wait)


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """One or more problems; str() lists them one per line, `FILE: KEY: what is wrong`."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class TargetConfig:
    name: str
    provider: str
    settings: Mapping[str, Any]  # the provider's own options, validated; secrets as Secret
    wait_ready: bool = True  # poll the platform after upload until the media is playable
    ready_timeout: float = 7200.0
    workers: int | None = None  # concurrent uploads to this target at most (None: the global `workers`)
    max_rate: RateSchedule | None = None  # this target's bandwidth cap, under the global one


@dataclass(frozen=True)
class WatchConfig:
    path: Path
    targets: tuple[str, ...]
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    recursive: bool = False
    settle_seconds: float = 10.0
    after_upload: str = "keep"
    move_to: Path | None = None
    poll: bool = False
    poll_interval: float = 5.0
    ready_marker: str | None = None
    kind: str = "auto"
    priority: int = 0  # jobs this watch queues are claimed before those of lower priority

    @property
    def excludes(self) -> tuple[str, ...]:
        return DEFAULT_EXCLUDES + self.exclude


@dataclass(frozen=True)
class Config:
    source: Path
    state_dir: Path
    targets: Mapping[str, TargetConfig]
    watches: tuple[WatchConfig, ...]
    workers: int = 2
    max_rate: RateSchedule | None = None  # a rate or a timetable (vidupd.core.rate_schedule)
    rescan_interval: float = 300.0
    skip_duplicates: bool = True
    stop_timeout: float = STOP_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=8, initial=2.0, maximum=300.0))
    log: LogConfig = field(default_factory=LogConfig)
    retain_days: float = RETAIN_DAYS  # finished jobs older than this are pruned from the ledger (0: never)
    metrics_listen: str | None = None  # [metrics] listen: HOST:PORT of /metrics and /healthz (off: None)
    notify: tuple["NotifyConfig", ...] = ()  # [[notify]] webhooks
    warnings: tuple[Problem, ...] = ()
    order: str = "oldest"  # jobs of equal priority: oldest, smallest, largest, name (ledger.claim_order)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)  # [ledger]: SQLite under state_dir unless url

    def target_caps(self) -> tuple[tuple[str, int], ...]:
        """(target, how many uploads to it may run at once) for targets capped below `workers`."""
        return tuple((t.name, t.workers) for t in self.targets.values() if t.workers and t.workers < self.workers)

"""Where the ledger lives, and the one way every command opens it (`open_ledger`).

Default: SQLite under state_dir. With `[ledger] url = "postgresql://user@host/db"` the
jobs, checkpoints and shared tokens live in PostgreSQL, shared by every host pointed at it;
state_dir still holds the daemon lock, scratch files and provider state. The password comes
from `[ledger] password` (a secret: env, file or credential) or libpq's own sources
(PGPASSWORD, ~/.pgpass), never from the URL, and a URL is shown only through `scrub_url`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .sqlite import Ledger

SCHEMES = ("postgresql", "postgres")
DEFAULT_LEASE = 120.0  # seconds: `[ledger] lease`


@dataclass(frozen=True)
class LedgerSettings:
    """[ledger]: `url` None is the SQLite ledger under state_dir; `password` a core.secrets.Secret;
    `lease` the seconds a claim lasts without a renewal (vidupd.engine.lease_guard)."""

    url: str | None = None
    password: Any = None
    lease: float = DEFAULT_LEASE

    @property
    def shared(self) -> bool:
        return bool(self.url)

    def describe(self, state_dir: Path) -> str:
        """The ledger's name for messages and `status` (no password)."""
        return scrub_url(self.url) if self.url else str(state_dir / "ledger.sqlite3")


def scrub_url(url: str) -> str:
    """`url` without a password (in the user part or as a `password=` parameter) or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, hosts = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{hosts}"
    query = "&".join(p for p in parts.query.split("&") if p and p.split("=")[0].lower() != "password")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_password(url: str) -> bool:
    """Whether `url` carries a password itself (refused by the config: use [ledger] password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or any(p.split("=")[0].lower() == "password" for p in parts.query.split("&"))


def open_ledger(source: Any, state_dir: Path, readonly: bool = False) -> Ledger:
    """The daemon's ledger: `source` is a Config (its `ledger`), LedgerSettings, a URL or
    None (SQLite under `state_dir`). Read-only opens never write (`vidupd status`)."""
    settings = getattr(source, "ledger", source)
    if isinstance(settings, str):
        settings = LedgerSettings(settings)
    if settings is None or not settings.url:
        return Ledger(state_dir, readonly)
    from .postgresql import PostgresStore

    return Ledger(store=PostgresStore(settings.url, settings.password, readonly=readonly))

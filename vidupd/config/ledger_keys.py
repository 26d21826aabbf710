"""The config's [ledger] table: where the ledger lives. Absent (or no `url`): SQLite under
state_dir, as always. `url = "postgresql://user@host/db"`: a PostgreSQL ledger shared by
every host pointed at it; `password` is a secret (env, file or credential, or inline),
never part of the URL, which vidupd shows in messages (without a password in any case).

check-config checks the URL's form and that psycopg is installed, without connecting: a
config check must not depend on the database server being up (`run` says so if it is not).
"""

from __future__ import annotations

from typing import Any

from ..ledger.location import SCHEMES, LedgerSettings, scrub_url, url_password
from .options import LEDGER

KEYS = set(LEDGER.options)
INSTALL = "pip install 'vidupd[postgresql]'"


def _url_problem(url: str) -> str | None:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        return f"must be a postgresql:// URL (e.g. postgresql://vidupd@db.example/vidupd), not {scrub_url(url)!r}"
    if url_password(url):
        return ("holds a password; give it as [ledger] password = { env = ... } (or { file = ... }, "
                "{ credential = ... }) instead: the URL is shown in messages")
    try:
        from psycopg import conninfo
    except ImportError:
        return f"a PostgreSQL ledger needs psycopg, which is not installed ({INSTALL})"
    try:
        conninfo.conninfo_to_dict(url)
    except Exception as e:  # psycopg.ProgrammingError: what libpq cannot parse
        return f"not a valid PostgreSQL URL ({' '.join(str(e).split())})"
    return None


class LedgerKeys:
    """Mixin of the loader (it provides error, _take, _unknown, _secret, _option, read_secrets)."""

    def _ledger(self, table: Any) -> LedgerSettings:
        if not isinstance(table, dict):
            self.error("ledger", "must be a table")
            return LedgerSettings()
        self._unknown(table, KEYS, "ledger")
        url = self._checked(table, "url", "ledger", LEDGER.options["url"])
        if url is not None:
            problem = _url_problem(url)
            if problem:
                self.error("ledger.url", problem)
                url = None
        password = None
        if "password" in table:
            if url is None and "url" not in table:
                self.error("ledger.password", "only means something with ledger.url (the SQLite ledger has none)")
            else:
                password = self._ledger_password(table)
        lease = self._checked(table, "lease", "ledger", LEDGER.options["lease"])
        return LedgerSettings(url=url or None, password=password, lease=lease)

    def _ledger_password(self, table: dict) -> Any:
        """Read even by read-only commands: `status` reads a PostgreSQL ledger with it."""
        keep, self.read_secrets = self.read_secrets, True
        try:
            if isinstance(table.get("password"), dict):
                return self._secret(table["password"], "ledger.password")
            return self._option(table, "password", LEDGER.options["password"], "ledger")
        finally:
            self.read_secrets = keep

"""A throwaway PostgreSQL server for the tests and benchmarks: `initdb` + `pg_ctl start`
in a temporary folder, on a free port of 127.0.0.1 only (and a unix socket in that folder),
stopped and removed at the end. Nothing has to be running on the machine: the binaries come
from Debian's `postgresql` package (scripts/bootstrap installs it), found through
`pg_config --bindir` or /usr/lib/postgresql/*/bin.

initdb and postgres refuse to run as root; as root (CI) they run as the `postgres` system
user the Debian package creates (`runuser`), in a folder that user owns. Host connections
need the superuser's password (scram-sha-256), so the password path of the ledger is the
one the tests use. Durability is off (fsync, synchronous_commit): a test server is thrown
away, and the tests then spend their time on vidupd, not on disk flushes.

Profiling (opt-in): `VIDUPD_PG_SETTINGS`, or `start(settings=...)`, adds server settings,
e.g. `shared_preload_libraries=pg_stat_statements log_statement=all` (space-separated
name=value pairs; see benchmarks/pg_profile.py).
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "vidupd_test"
SETTINGS_ENV = "VIDUPD_PG_SETTINGS"  # extra `name=value` server settings, space-separated (profiling)
RUN_AS = "postgres"  # as root: the Debian package's system user
START_TIMEOUT = 60  # seconds for pg_ctl start -w (a loaded 2-core machine)


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when they are not installed."""
    candidates: list[str] = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        candidates.append(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(n) for n in re.findall(r"\d+", p)], reverse=True)
    candidates += versions
    for c in candidates:
        if c and all(os.access(Path(c) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server; `url(db)` names a database on it, `admin()` connects as superuser."""

    def __init__(self, bindir: Path, settings: dict[str, str] | None = None, also_listen: tuple[str, ...] = (),
                 admit: tuple[str, ...] = ()):
        """`settings`: extra server settings; `also_listen`: addresses to listen on besides
        127.0.0.1; `admit`: client networks (CIDR) let in with the password besides loopback
        (the network-namespace test's veth)."""
        self.bindir = bindir
        self.settings = dict(settings or {})
        self.also_listen = also_listen
        self.admit = admit
        self.root = Path(tempfile.mkdtemp(prefix="vidupd-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._as_root = os.geteuid() == 0
        self._started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> "PgServer":
        if self._as_root:
            shutil.chown(self.root, RUN_AS, RUN_AS)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as_root:
            shutil.chown(pwfile, RUN_AS, RUN_AS)
        done = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile), "-E", "UTF8",
                         "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        if self.admit:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.writelines(f"host all all {a} scram-sha-256\n" for a in self.admit)
        listen = ",".join(("127.0.0.1", *self.also_listen))
        for _ in range(5):  # a free port may be taken before the server binds it: another one
            self.port = _free_port()
            opts = (f"-c listen_addresses={listen} -p {self.port} -k {self.root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
                    + "".join(f" -c {k}={v}" for k, v in self.settings.items()))
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                             "-t", str(START_TIMEOUT), "-o", opts, "start", timeout=START_TIMEOUT + 30)
            if done.returncode == 0:
                self._started = True
                atexit.register(self.stop)
                return self
            time.sleep(0.2)
        log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log}")

    def url(self, dbname: str = "postgres", schema: str | None = None, host: str = "127.0.0.1") -> str:
        """A URL without the password (the ledger takes it apart: [ledger] password)."""
        url = f"postgresql://{SUPERUSER}@{host}:{self.port}/{dbname}"
        return url + (f"?options={quote(f'-csearch_path={schema}')}" if schema else "")

    def admin(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def env_settings() -> dict[str, str]:
    """The settings `VIDUPD_PG_SETTINGS` asks for (none unless set)."""
    pairs = (item.partition("=") for item in os.environ.get(SETTINGS_ENV, "").split())
    return {k: v for k, _, v in pairs if k and v}


def start(settings: dict[str, str] | None = None, also_listen: tuple[str, ...] = (),
          admit: tuple[str, ...] = ()) -> PgServer | None:
    """A started server (with `settings` and those of VIDUPD_PG_SETTINGS, listening also on
    `also_listen` and admitting `admit`), or None when the PostgreSQL binaries are not installed."""
    bindir = find_bindir()
    if bindir is None:
        return None
    server = PgServer(bindir, {**env_settings(), **(settings or {})}, also_listen, admit)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


SKIP_REASON = ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: Debian's postgresql package "
               "provides them (scripts/bootstrap installs it)")

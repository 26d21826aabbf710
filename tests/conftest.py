from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402
from helpers import SandboxSite, write_config  # noqa: E402

# A shell starts a background job (`pytest ... &`, nohup, some CI runners) with SIGINT
# ignored, and an ignored signal stays ignored across exec: every daemon and one-shot the
# tests start would then shrug off the Ctrl-C the tests send it. A handler (unlike SIG_IGN)
# is reset to the default at exec, so the children get Ctrl-C as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_daemon_left_behind():
    """Whatever happens in a test, no daemon it started outlives it."""
    yield
    while helpers.RUNNING:
        d = helpers.RUNNING.pop()
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=10)


@pytest.fixture
def site(tmp_path: Path):
    """A watched folder, a state dir, a delivery folder and a config writer."""

    class Site:
        root = tmp_path
        outbox = tmp_path / "outbox"
        state = tmp_path / "state"
        dest = tmp_path / "dest"
        events = tmp_path / "events.jsonl"
        config = tmp_path / "vidupd.toml"

        def write(self, top: dict | None = None, watch: dict | None = None, target: dict | None = None,
                  targets: dict | None = None, watches: list | None = None) -> Path:
            top = {"state_dir": str(self.state), "workers": 2, **(top or {})}
            targets = targets or {"arch": {"provider": "directory", "dest": str(self.dest), **(target or {})}}
            watches = watches or [{"path": str(self.outbox), "targets": list(targets), "settle_seconds": 1,
                                   **(watch or {})}]
            return write_config(self.config, top, targets, watches, {"events": str(self.events), "level": "info"})

    s = Site()
    s.outbox.mkdir()
    s.dest.mkdir()
    return s


@pytest.fixture
def tmpfs(tmp_path: Path):
    """make(name, size) mounts a small real tmpfs at tmp_path/name; all unmounted after the test."""
    mounted: list[Path] = []

    def make(name: str, size: str) -> Path:
        p = tmp_path / name
        helpers.mount_tmpfs(p, size)
        mounted.append(p)
        return p

    yield make
    for p in mounted:
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain, quiet HTTP server on 127.0.0.1 serving the folder tmp_path/www (for URL pulls):
    yields (that folder, its base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., SandboxSite]]:
    """make_site(SiteClass, **kw) builds SiteClass(tmp_path, **kw); each one made is closed on teardown."""
    made: list[SandboxSite] = []

    def make(cls: type[SandboxSite], **kw: Any) -> SandboxSite:
        s = cls(tmp_path, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


_PG_SCHEMAS = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the session (tests/pg_server.py); skipped, saying
    why, only where the PostgreSQL binaries are not installed."""
    import pg_server as pg

    server = pg.start()
    if server is None:
        pytest.skip(pg.SKIP_REASON)
    yield server
    server.stop()


@pytest.fixture
def pg_ledger_url(pg_server) -> str:
    """A URL whose search_path is a new, empty schema of the throwaway server: one ledger
    per test, at the cost of a CREATE SCHEMA (a database per test would copy a template)."""
    name = f"t_{next(_PG_SCHEMAS)}"
    with pg_server.admin() as db:
        db.execute(f"CREATE SCHEMA {name}")
    return pg_server.url(schema=name)

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402
from helpers import write_config  # noqa: E402


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

"""Issue 8, point 7: the state dir is private. The ledger (its checkpoints carry upload tokens)
and its -wal/-shm files are 0600, folders under state_dir 0700, whatever the umask; an
existing state dir open to group/other is tightened, with a warning, by the commands that
write state, and left alone by the read-only ones."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest
from helpers import DaemonProcess, actions, vidupd, wait_for

from vidupd.ledger import Ledger


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """022, as on most systems: files and folders come out 0644/0755 unless vidupd says otherwise
    (the daemons and commands started here inherit it)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose_state(state: Path) -> None:
    """A state dir as `vidupd sandbox` used to make it (0755), holding a ledger from a
    vidupd that made it 0644."""
    Ledger(state).close()
    os.chmod(state, 0o755)
    os.chmod(state / "ledger.sqlite3", 0o644)
    assert (mode(state), mode(state / "ledger.sqlite3")) == (0o755, 0o644)


def test_a_daemon_run_leaves_only_private_files(site):
    site.write()
    d = DaemonProcess(site.config, site.events)
    with d.start():
        (site.outbox / "a.mp4").write_bytes(os.urandom(50_000))
        wait_for(lambda: actions(site.events, "upload.completed"), 30, what="upload.completed")
        files = {p.name: mode(p) for p in site.state.iterdir() if p.name.startswith("ledger.")}
        assert files == {"ledger.sqlite3": 0o600, "ledger.sqlite3-wal": 0o600, "ledger.sqlite3-shm": 0o600}
        folders = [site.state, *(p for p in site.state.rglob("*") if p.is_dir())]
        assert site.state / "targets" / "arch" in folders
        assert {str(p): oct(mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
        assert d.stop() == 0
    assert not actions(site.events, "config.warning")  # it made them itself: nothing to warn about


def test_daemon_tightens_an_existing_state_dir_and_says_so(site):
    loose_state(site.state)
    site.write()
    d = DaemonProcess(site.config, site.events)
    with d.start():
        warnings = [e["message"] for e in actions(site.events, "config.warning")]
        assert d.stop() == 0
    assert any(f"state_dir: {site.state} was mode 755" in m and "changed to 700" in m for m in warnings), warnings
    assert any(f"{site.state / 'ledger.sqlite3'} was mode 644" in m for m in warnings), warnings
    assert mode(site.state) == 0o700 and mode(site.state / "ledger.sqlite3") == 0o600


def test_one_shot_upload_tightens_and_warns(site):
    loose_state(site.state)
    site.write()
    f = site.root / "b.mp4"
    f.write_bytes(os.urandom(20_000))
    out = vidupd("upload", "-c", str(site.config), "--target", "arch", "--no-progress", str(f))
    assert out.returncode == 0, out.stderr
    assert f"warning: {site.config}: state_dir: {site.state} was mode 755" in out.stderr
    assert mode(site.state) == 0o700 and mode(site.state / "ledger.sqlite3") == 0o600


def test_read_only_commands_change_nothing(site):
    loose_state(site.state)
    site.write()
    out = vidupd("status", "-c", str(site.config))
    assert out.returncode == 0, out.stderr
    out = vidupd("check-config", "-c", str(site.config))
    assert out.returncode == 0, out.stderr
    assert f"state_dir: {site.state} is mode 755" in out.stderr and "will change it to 700" in out.stderr
    assert (mode(site.state), mode(site.state / "ledger.sqlite3")) == (0o755, 0o644)


def test_new_folders_are_private_parents_included(tmp_path: Path):
    from vidupd.core.statedir import make_dirs

    make_dirs(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    make_dirs(tmp_path / "a" / "b" / "c")  # already there: fine


def test_the_sandbox_state_dir_is_private(tmp_path: Path):
    from vidupd.sandbox.app import start_sandbox
    from vidupd.sandbox.common import SandboxOptions

    box = start_sandbox(tmp_path / "box", SandboxOptions())
    box.shutdown()
    assert mode(tmp_path / "box" / "state") == 0o700

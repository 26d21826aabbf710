"""A daemon killed (SIGKILL) while `after_upload = "move"` copies a file to another file
system (a tmpfs): the move folder must never hold a torn copy under the file's name (its
reader would take it as whole); the copy is made under a hidden name first. Found by the
crash campaign (tests/test_crash_campaign.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from helpers import DaemonProcess, append_fast_retry, drop_random, md5_file, wait_for, write_config

SIZE = 384 << 20  # big enough that the copy to tmpfs takes a while


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a tmpfs at /dev/shm")
def test_kill_during_the_move_leaves_no_torn_copy(tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="vidupd-move-") as moved_dir:
        moved = Path(moved_dir)
        config = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "workers": 1},
                              {"null": {"provider": "null"}},
                              [{"path": str(outbox), "targets": ["null"], "settle_seconds": 0.2,
                                "after_upload": "move", "move_to": str(moved)}],
                              {"events": str(tmp_path / "events.jsonl")})
        append_fast_retry(config)
        src = drop_random(outbox / "big.mp4", SIZE)
        want = md5_file(src)
        daemon = DaemonProcess(config, tmp_path / "events.jsonl")
        daemon.start()
        wait_for(lambda: any(moved.iterdir()), 120, 0.001, what="the move to start")
        daemon.kill9()
        torn = [p.name for p in moved.iterdir() if not p.name.startswith(".") and md5_file(p) != want]
        assert not torn, f"a torn copy under the file's name: {torn}"
        assert src.exists() or any(md5_file(p) == want for p in moved.iterdir() if not p.name.startswith("."))

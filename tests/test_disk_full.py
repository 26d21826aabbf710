"""Full disks (real tmpfs mounts): a full watched folder does not matter, because vidupd
writes nothing there; a full state_dir stalls intake with one warning, loses nothing, and
everything goes through exactly once when space comes back."""

from __future__ import annotations

import os

from helpers import DaemonProcess, actions, fill, wait_for


def test_full_watched_folder_is_no_problem(site, tmpfs):
    outbox = tmpfs("outbox-fs", "4m")
    for i in range(3):
        (outbox / f"clip{i}.mp4").write_bytes(os.urandom(300_000))
    fill(outbox)
    site.write(watches=[{"path": str(outbox), "targets": ["arch"], "settle_seconds": 0.5}])
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: len(actions(site.events, "upload.completed")) >= 3, 30, what="uploads from a full disk")
        d.stop()
    assert sorted(p.name for p in outbox.iterdir()) == [".filler", "clip0.mp4", "clip1.mp4", "clip2.mp4"]


def test_full_state_dir_stalls_then_recovers_exactly_once(site, tmpfs):
    state = tmpfs("state-fs", "4m")
    site.write(top={"state_dir": str(state / "state")})
    with DaemonProcess(site.config, site.events) as d:
        filler = fill(state)
        for i in range(3):
            (site.outbox / f"f{i}.mp4").write_bytes(os.urandom(50_000))
        wait_for(lambda: actions(site.events, "ledger.unreachable"), 30, what="a warning about the full disk")
        assert not actions(site.events, "upload.completed")
        assert d.proc.poll() is None  # still running
        filler.unlink()
        wait_for(lambda: len(actions(site.events, "upload.completed")) >= 3, 60, what="recovery")
        assert d.stop() == 0
    done = actions(site.events, "upload.completed")
    assert sorted(os.path.basename(e["file.path"]) for e in done) == ["f0.mp4", "f1.mp4", "f2.mp4"]
    assert len([p for p in site.dest.iterdir() if p.suffix == ".mp4"]) == 3
    (notice,) = actions(site.events, "ledger.unreachable")  # one, not an error per try (tests/test_full_disk_suite.py)
    assert "disk is full" in notice["message"] and notice["vidupd.reason"] == "disk_full"


def test_full_log_disk_does_not_stop_uploads(site, tmpfs):
    logs = tmpfs("log-fs", "1m")
    events = logs / "events.jsonl"
    site.write()

    text = site.config.read_text().replace(f'events = "{site.events}"', f'events = "{events}"')
    site.config.write_text(text)
    d = DaemonProcess(site.config, events, stderr=site.root / "daemon.stderr").start()
    try:
        fill(logs)
        for i in range(3):
            (site.outbox / f"g{i}.mp4").write_bytes(os.urandom(40_000))
        wait_for(lambda: len([p for p in site.dest.iterdir() if p.suffix == ".mp4"]) == 3, 30,
                 what="uploads while the event log cannot be written")
        assert d.proc.poll() is None
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    assert "cannot write the event log" in d.stderr()

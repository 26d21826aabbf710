"""The real daemon and the VOD sandbox: a lone file is read once (while it is sent), not
first for a fingerprint and then again to send it; its CRC-64 comes from the parts and is
kept, so an identical copy dropped later (a possible twin: same size) is hashed, recognised
and skipped. Reads are counted from the daemon's /proc/PID/io (rchar: every byte read()),
so the check holds whatever the machine's speed."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import fastcrc
import pytest
from helpers import actions, drop_random as drop, wait_for
from test_vod_e2e import Env

MiB = 1 << 20
SIZE = 48 * MiB


@pytest.fixture
def make_env(make_site):
    return partial(make_site, Env, target={"part_size": 4 * MiB})


def read_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


def crc64(path: Path) -> str:
    return f"{fastcrc.crc64.xz(path.read_bytes()):016x}"


def test_a_lone_vod_file_is_read_once_and_a_later_copy_is_recognised(make_env):
    env = make_env()
    with env.daemon() as d:
        pid = d.proc.pid
        before = read_bytes(pid)
        first = drop(env.outbox / "first.mp4", SIZE)
        wait_for(lambda: len(env.completed()) == 1, 120, what="the first upload")
        lone = read_bytes(pid) - before
        (done,) = env.completed()
        assert done["vidupd.crc64"] == crc64(first)  # combined from the parts' CRCs
        assert SIZE <= lone < 1.5 * SIZE, f"read {lone / MiB:.1f} MiB for a {SIZE // MiB} MiB file"

        middle = read_bytes(pid)
        copy = env.outbox / "copy.mp4"
        copy.write_bytes(first.read_bytes())
        wait_for(lambda: actions(env.events, "upload.skipped"), 120, what="the copy skipped")
        twin = read_bytes(pid) - middle
        d.stop()
    (skipped,) = actions(env.events, "upload.skipped")
    assert skipped["file.path"] == str(copy) and skipped["vidupd.remote_id"] == done["vidupd.remote_id"]
    assert SIZE <= twin < 1.5 * SIZE  # hashed once (a possible twin), never sent
    assert len(env.completed()) == 1 and len(env.journal.entries()) == 1

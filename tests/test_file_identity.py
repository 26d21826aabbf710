"""A file version's identity is the same on every host of a shared outbox: the device
number (each NFS/SMB client numbers its mounts itself) is kept but never compared, so a
job queued by one host is uploaded by another without "the file changed"."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from vidupd.core.errors import FileChanged
from vidupd.core.model import FileIdentity
from vidupd.core.source import SourceFile
from vidupd.core.throttle import Throttle


def test_the_device_number_is_not_part_of_the_identity():
    a = FileIdentity(101, 7, 100, 5)
    assert a == FileIdentity(202, 7, 100, 5) and hash(a) == hash(FileIdentity(202, 7, 100, 5))
    assert {a, FileIdentity(202, 7, 100, 5)} == {a}
    for other in (FileIdentity(101, 8, 100, 5), FileIdentity(101, 7, 101, 5), FileIdentity(101, 7, 100, 6)):
        assert a != other  # inode, size and mtime_ns still are
    assert a.dev == 101  # kept, for information


def test_a_job_queued_by_another_host_reads_the_file_here(tmp_path: Path):
    """What the worker checks before and while sending (engine.prepare, core.source)."""
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 1000)
    here = FileIdentity.of(f.stat())
    queued_elsewhere = dataclasses.replace(here, dev=here.dev + 12345)
    with SourceFile(f, queued_elsewhere, Throttle(None), threading.Event()) as src:
        assert src.read_at(0, 10) == b"x" * 10
    os.utime(f, ns=(here.mtime_ns, here.mtime_ns + 1))
    with pytest.raises(FileChanged):  # a real change still is one
        SourceFile(f, queued_elsewhere, Throttle(None), threading.Event())

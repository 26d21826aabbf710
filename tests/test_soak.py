"""Soak (run by hand: `.venv/bin/python -m pytest -m soak`): both platforms at once, with
injected faults, expiring tokens, a SIGTERM and a kill -9 along the way. Every file must
reach both platforms exactly once. Bounded: at most 60 files and 15 minutes."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, wait_for

from vidupd.sandbox.app import start_sandbox
from vidupd.sandbox.common import SandboxOptions

pytestmark = pytest.mark.soak

FILES = int(os.environ.get("VIDUPD_SOAK_FILES", "60"))


def test_soak_both_platforms_with_faults_and_restarts(tmp_path: Path):
    box = start_sandbox(tmp_path / "sb", SandboxOptions(fail_rate=0.1, token_ttl=20, seed=3, max_rate=60_000_000))
    try:
        outbox = tmp_path / "sb" / "outbox"
        events = tmp_path / "sb" / "events.jsonl"
        rng = random.Random(1)
        digests = set()
        deadline = time.monotonic() + 900

        def drop(i: int) -> None:
            size = rng.choice([200_000, 2_000_000, 12_000_000])
            data = os.urandom(size)
            digests.add(hashlib.md5(data).hexdigest())
            tmp = outbox / f".f{i}.part"
            tmp.write_bytes(data)
            os.replace(tmp, outbox / f"f{i:03d}.mp4")

        d = DaemonProcess(box.config, events).start()
        for i in range(FILES // 3):
            drop(i)
        time.sleep(5)
        assert d.stop(timeout=120) == 0  # graceful stop mid-way
        d = DaemonProcess(box.config, events).start()
        for i in range(FILES // 3, 2 * FILES // 3):
            drop(i)
        time.sleep(5)
        d.kill9()  # and a hard one
        d = DaemonProcess(box.config, events).start()
        for i in range(2 * FILES // 3, FILES):
            drop(i)
        wait_for(lambda: len(actions(events, "media.ready")) >= 2 * FILES or time.monotonic() > deadline,
                 timeout=max(1, deadline - time.monotonic()), interval=2, what="every file on both platforms")
        assert d.stop(timeout=120) == 0
        journal = box.journal.entries()
        for provider in ("youku", "aliyun-vod"):
            got = [e["md5"] for e in journal if e["provider"] == provider and e["kind"] == "video"]
            assert sorted(got) == sorted(digests), f"{provider}: not every file exactly once"
        assert not actions(events, "upload.failed")
    finally:
        box.shutdown()

"""Issue 14's crash campaign: the real daemon (`vidupd run`, a subprocess) uploads a mixed set
(small files, multi-part ones) to VOD, Youku's OSS flow and Youku's six-step slice flow, and
is killed with SIGKILL over and over, at random moments and at chosen ones, and restarted
each time; at the end every file must have exactly one remote id per target in the ledger,
the event log and the sandboxes' journals, with matching MD5s, and nothing may be left open
on the platforms.

The chosen moments are reached without hooks in the product: the sandboxes' `hold_answer`
switch (SandboxOptions) makes a server act on a request, then hold its answer, and the
campaign kills while it is held (the platform acted, the daemon has not heard):
  create      CreateUploadVideo / Youku create: the platform made the video or token
  initiate    InitiateMultipartUpload: between the create and the first part
  create_file the slice flow's create_file: between the create and the first slice
  complete    CompleteMultipartUpload: the object is whole, the ledger does not know
  commit      Youku commit: the video id exists, the ledger does not know
  transfer    a part or slice arrived (the sandboxes' counters moved): mid-transfer
  intake      just after a drop (settling, hashing, claiming)
  move        a file appeared in the move folder (a tmpfs): during the after-upload copy
  random      a random delay
A moment not reached in time is still a kill (counted as `missed:<moment>`).

Documented limits, counted and allowed once per kill at exactly that moment: a kill while a
Youku create's answer is held leaks that upload token (Youku has no way to find a token
whose answer never arrived), and a kill while InitiateMultipartUpload's answer is held leaks
that multipart upload (the client never learnt its id). Sizes: CI scales the mixed set
down (1 MiB parts); the soak (`-m soak`, VIDUPD_CRASH_KILLS, VIDUPD_CRASH_MIB) runs it big.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from crash_site import CrashSite, moved_intact, verify
from helpers import drop_random, md5_file, wait_for

MiB = 1 << 20
MOMENTS = ("create", "initiate", "create_file", "complete", "commit", "transfer", "intake", "move", "random")
HELD = {"create": ("CreateUploadVideo", "create"), "initiate": ("InitiateMultipartUpload",),
        "create_file": ("create_file",), "complete": ("CompleteMultipartUpload",), "commit": ("commit",)}
MOMENT_WAIT = 8.0  # seconds to wait for a chosen moment before killing anyway


def mixed_set(kills: int, mib: int) -> list[int]:
    """Sizes of the files to drop: per group two small ones, one of ~mib/5 and one of mib
    (the issue's 40 MiB and 200 MiB at mib=200), enough groups to keep the daemon busy."""
    group = [150_000, 700_000, max(2 * MiB, mib * MiB // 5), mib * MiB]
    return group * max(2, kills // 8)


class Campaign:
    """Drops files as the daemon needs work, kills it at each moment in turn, restarts it."""

    def __init__(self, site: CrashSite, sizes: list[int], seed: int):
        self.site, self.rng = site, random.Random(seed)
        self.pending = list(sizes)
        self.files: dict[str, str] = {}  # name -> md5
        self.kills: Counter[str] = Counter()
        self.leaks_allowed: Counter[str] = Counter()
        self.daemon = site.daemon()

    def drop_some(self, n: int = 2) -> None:
        for _ in range(min(n, len(self.pending))):
            size = self.pending.pop(0)
            path = drop_random(self.site.outbox / f"f{len(self.files):03d}-{size}.mp4", size)
            self.files[path.name] = md5_file(path)

    def work_left(self) -> bool:
        return self.site.finished() < 3 * len(self.files)

    def reach(self, moment: str) -> bool:
        """Wait until `moment` happens (True) or MOMENT_WAIT passes (False)."""
        s = self.site
        deadline = time.monotonic() + MOMENT_WAIT
        if moment == "random":
            time.sleep(self.rng.uniform(0.1, 3.0))
            return True
        if moment == "intake":
            self.drop_some(1)
            time.sleep(self.rng.uniform(0.2, 0.8))
            return True
        start = s.parts_received()
        seen = {p for p in s.moved.rglob("*")}
        while time.monotonic() < deadline:
            if moment in HELD and any(s.holding(name) for name in HELD[moment]):
                return True
            if moment == "transfer" and s.parts_received() > start:
                return True
            if moment == "move" and {p for p in s.moved.rglob("*")} - seen:
                return True
            if self.daemon.proc is not None and self.daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon died by itself: {self.daemon.stderr()[-2000:]}")
            time.sleep(0.01)
        return False

    def run(self, kills: int) -> None:
        self.drop_some(4)
        for i in range(kills):
            if not self.work_left() or len(self.files) - self.site.finished() // 3 < 3:
                self.drop_some(2)  # keep multi-part work in flight for the next moment
            self.daemon.start()
            moment = MOMENTS[i % len(MOMENTS)] if i % 4 else self.rng.choice(MOMENTS)
            reached = self.reach(moment)
            self.daemon.kill9()
            self.leaks_allowed.update(self.site.unanswered())  # what this kill left unheard
            self.kills[moment if reached else f"missed:{moment}"] += 1

    def finish(self, timeout: float) -> None:
        """Drop what is left, let the daemon finish everything, stop it cleanly."""
        self.drop_some(len(self.pending))
        self.daemon.start()
        wait_for(lambda: not self.work_left(), timeout, 0.5, what="every file on every target")
        try:
            wait_for(lambda: not list(self.site.outbox.glob("*.mp4")), 15, 0.5, what="every file moved")
        except AssertionError:
            pass  # unmoved(): a kill mid-copy (the move is not redone), checked by the caller
        assert self.daemon.stop() == 0

    def unmoved(self) -> tuple[list[str], list[str]]:
        """(files still in the outbox, those of them with no hidden partial copy in the move
        folder: left unmoved for another reason than a kill mid-copy)."""
        left = sorted(p.name for p in self.site.outbox.glob("*.mp4"))
        partial = {p.name for p in self.site.moved.rglob(".*.vidupd-moving")}
        return left, [n for n in left if f".{n}.vidupd-moving" not in partial]

    def report(self) -> str:
        return (f"kills={sum(self.kills.values())} {dict(sorted(self.kills.items()))} "
                f"files={len(self.files)} leaks_allowed={dict(self.leaks_allowed)}")


def allowed(c: Campaign) -> dict[str, int]:
    """Open handles the documented limits allow: one per answer a kill left unheard (see the
    module); nothing else may be left open."""
    return dict(c.leaks_allowed)


def campaign(make_site, kills: int, mib: int, seed: int, capsys) -> None:
    site = make_site(CrashSite)
    c = Campaign(site, mixed_set(kills, mib), seed)
    try:
        c.run(kills)
        c.finish(120 + 2 * len(c.files))
    finally:
        with capsys.disabled():
            print(f"\ncrash campaign (seed {seed}): {c.report()}")
    verdict = verify(site, c.files, allowed(c))
    torn = moved_intact(site, c.files)
    left, unexplained = c.unmoved()
    with capsys.disabled():
        print(f"crash campaign: open handles left {verdict.leaks}; torn copies in the move folder {len(torn)}; "
              f"left unmoved after a kill mid-copy {len(left) - len(unexplained)}")
    assert not verdict.problems, "\n".join(verdict.problems[:30])
    assert not torn, torn
    assert not unexplained, f"files the move never took, without a kill mid-copy: {unexplained}"
    assert sum(c.kills.values()) == kills


def test_crash_campaign_ci(make_site, capsys):
    """30 kills (the issue's CI floor) over a scaled-down mixed set, three targets."""
    campaign(make_site, 30, 6, int(os.environ.get("VIDUPD_CRASH_SEED", "14")), capsys)


@pytest.mark.soak
@pytest.mark.timeout(7200)  # 300 kills of the real daemon, then every file finished: about 20 minutes
def test_crash_campaign_soak(make_site, capsys):
    """VIDUPD_CRASH_KILLS (default 300) kills; VIDUPD_CRASH_MIB the big file (default 200)."""
    kills = int(os.environ.get("VIDUPD_CRASH_KILLS", "300"))
    assert kills >= 300 or os.environ.get("VIDUPD_CRASH_KILLS"), "the soak runs at least 300 kills"
    campaign(make_site, kills, int(os.environ.get("VIDUPD_CRASH_MIB", "200")),
             int(os.environ.get("VIDUPD_CRASH_SEED", str(int(time.time())))), capsys)


def test_mixed_set_shape():
    """The CI set keeps the issue's shape: small files and multi-part ones (>= 2 parts)."""
    sizes = mixed_set(30, 6)
    assert min(sizes) < MiB and max(sizes) >= 6 * MiB and len(sizes) >= 8
    assert Path(__file__).name == "test_crash_campaign.py"

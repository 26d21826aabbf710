"""Bandwidth end to end (issue 12): the real daemon against the sandboxes, with the rate
measured where it matters, at the far end (the sandbox's per-second receive meters):

- a timetable switches the cap at its boundary (the clock is moved by the daemon's own TZ:
  an offset with seconds puts the next local HH:MM ~14 s after the start);
- two concurrent uploads under one cap, a VOD one with four parts in flight and a Youku
  one with one, get equal shares;
- `vidupd limit 1M --for 5s` changes the running daemon's rate at once, and it reverts;
- a one-shot `vidupd upload` obeys the limit too;
- a target's own `max_rate` holds under the global cap.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
from helpers import DaemonProcess, SandboxSite, actions, drop_random as drop, vidupd, wait_for, write_config

from vidupd.sandbox.common import ReceiveMeter, SandboxOptions
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox
from vidupd.sandbox.youku import YoukuSandbox

MiB = 1 << 20


class Env(SandboxSite):
    """The daemon against VOD (with its OSS bucket) and Youku (OSS flow) sandboxes."""

    def __init__(self, root: Path):
        super().__init__(root)
        opts = SandboxOptions(oss_signature="both")
        self.oss = OssSandbox(root / "sandbox", opts, self.journal)
        self.vod = VodSandbox(root / "sandbox", opts, self.journal, self.oss, status_delays=(0.2, 0.3))
        self.youku = YoukuSandbox(root / "sandbox", opts, self.journal, encode_seconds=0.3)
        for s in (self.oss, self.vod, self.youku):
            s.start()

    @property
    def vod_meter(self) -> ReceiveMeter:
        return self.oss.received

    @property
    def youku_meter(self) -> ReceiveMeter:
        return self.youku.oss_flow.oss.received

    def configure(self, top: dict, targets: tuple[str, ...] = ("vod",), vod: dict | None = None) -> Path:
        v, y = self.vod.credentials, self.youku.credentials
        bodies = {
            "vod": {"provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
                    "access_key_id": v["access_key_id"], "access_key_secret": v["access_key_secret"],
                    "part_size": MiB, "part_concurrency": 4, "ready_timeout": 60, **(vod or {})},
            "youku": {"provider": "youku", "api_base": self.youku.api_base, "client_id": y["client_id"],
                      "client_secret": y["client_secret"], "access_token": y["access_token"],
                      "refresh_token": y["refresh_token"], "confirm_wait": 1, "part_size": MiB,
                      "part_concurrency": 1, "ready_timeout": 60},
        }
        write_config(self.config, {"state_dir": str(self.state), "workers": 2, **top},
                     {name: bodies[name] for name in targets},
                     [{"path": str(self.outbox), "targets": list(targets), "settle_seconds": 0.5}],
                     {"events": str(self.events)})
        return self.config

    def close(self) -> None:
        for s in (self.vod, self.oss, self.youku):
            s.shutdown()


@pytest.fixture
def env(make_site):
    return partial(make_site, Env)()


def rate(meter: ReceiveMeter, start: float, end: float) -> float:
    """Bytes per second the sandbox received over the whole seconds in [start, end)."""
    first, last = math.ceil(start), math.floor(end)
    assert last - first >= 2, f"too short a period to measure: {start:.1f} .. {end:.1f}"
    return meter.between(first, last) / (last - first)


def active(meter: ReceiveMeter) -> tuple[int, int]:
    """The first and last second the meter saw bytes in."""
    seconds = meter.per_second()
    return min(seconds), max(seconds)


def near(got: float, want: float, within: float) -> bool:
    return abs(got - want) <= within * want


def stamp(event: dict) -> float:
    return datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_timetable_switches_the_rate_at_its_boundary(env):
    # the boundary: a whole local minute ~14 s from now, given by the daemon's time zone
    boundary = math.ceil(time.time()) + 14
    offset = (-boundary) % 60  # local = UTC + offset seconds: local second 0 falls at `boundary`
    tz = f"VID-0:00:{offset:02d}"
    hh, mm = time.gmtime(boundary + offset)[3:5]
    ph, pm = time.gmtime(boundary + offset - 60)[3:5]
    env.configure({"max_rate": f"{ph:02d}:{pm:02d},1M {hh:02d}:{mm:02d},2M"})
    with DaemonProcess(env.config, env.events, env={"TZ": tz}) as d:
        left = boundary - time.time()
        assert left >= 6, f"the daemon took {14 - left:.1f}s to start"
        # about 1 MB/s until the boundary, then ~5 s at 2 MB/s after it
        drop(env.outbox / "clip.mp4", int((left - 1) * 1_000_000) + 10_000_000)
        wait_for(lambda: env.completed(), 90, what="the upload")
        d.stop()
    first, last = active(env.vod_meter)
    assert first < boundary - 3 and last > boundary + 3, (first, boundary, last)
    before = rate(env.vod_meter, first + 1, boundary - 1)  # the second around the boundary is skipped
    after = rate(env.vod_meter, boundary + 1, last)
    assert near(before, 1_000_000, 0.15), before
    assert near(after, 2_000_000, 0.15), after
    (changed,) = actions(env.events, "rate.changed")
    assert changed["vidupd.max_rate"] == 2_000_000 and changed["vidupd.reason"] == "timetable"
    assert abs(stamp(changed) - boundary) <= 1.5  # the daemon woke for the boundary
    started = actions(env.events, "daemon.started")[0]
    assert started["vidupd.max_rate"] == 1_000_000 and "timetable entry" in started["vidupd.rate_source"]


def test_two_uploads_under_one_cap_get_equal_shares(env):
    env.configure({"max_rate": "2MB/s"}, targets=("vod", "youku"))
    drop(env.outbox / "clip.mp4", 10_000_000)
    with env.daemon() as d:
        wait_for(lambda: len(env.completed()) == 2, 120, what="both uploads")
        d.stop()
    (v0, v1), (y0, y1) = active(env.vod_meter), active(env.youku_meter)
    start, end = max(v0, y0) + 1, min(v1, y1)  # while both were sending
    assert end - start >= 3, f"one upload was (almost) starved while the other ran: vod {v0}..{v1}, youku {y0}..{y1}"
    vod, youku = rate(env.vod_meter, start, end), rate(env.youku_meter, start, end)
    assert min(vod, youku) >= 0.75 * max(vod, youku), (vod, youku)
    assert near(vod + youku, 2_000_000, 0.15), (vod, youku)
    parts = [e for e in actions(env.events, "upload.started") if e["vidupd.target"] == "vod"]
    assert parts  # the VOD upload ran with four part threads (part_concurrency), the Youku one with one


def test_vidupd_limit_changes_the_running_rate_at_once_and_reverts(env):
    env.configure({"max_rate": "3M"})
    drop(env.outbox / "clip.mp4", 26_000_000)
    with env.daemon() as d:
        wait_for(lambda: env.vod_meter.total > 2_000_000, 60, what="the upload under way")
        out = vidupd("limit", "-c", str(env.config), "1M", "--for", "5s")
        assert out.returncode == 0, out.stderr
        returned = time.time()
        status = vidupd("status", "-c", str(env.config), "--json")
        assert '"max_rate": 1000000' in status.stdout and '"reason": "limit"' in status.stdout, status.stdout
        wait_for(lambda: env.completed(), 90, what="the upload")
        d.stop()
    changed = actions(env.events, "rate.changed")
    assert [(e["vidupd.max_rate"], e["vidupd.reason"]) for e in changed] == [(1_000_000, "limit"),
                                                                            (3_000_000, "expired")], changed
    applied, expired = stamp(changed[0]), stamp(changed[1])
    assert applied <= returned + 2.0  # the daemon read it within its tick (<= 1 s)
    assert 4.0 <= expired - applied <= 6.0
    limited = rate(env.vod_meter, applied + 0.3, expired)
    assert near(limited, 1_000_000, 0.15), limited
    _, last = active(env.vod_meter)
    again = rate(env.vod_meter, expired + 0.3, last)
    assert near(again, 3_000_000, 0.15), again
    out = vidupd("limit", "-c", str(env.config))
    assert out.returncode == 0 and "3.0 MB/s (config)" in out.stdout, out.stdout


def test_a_one_shot_upload_obeys_the_limit_too(env):
    env.configure({})  # no max_rate in the config
    assert vidupd("limit", "-c", str(env.config), "1MB/s", "--for", "2h").returncode == 0
    path = drop(env.root / "one.mp4", 5_000_000)
    out = vidupd("upload", "-c", str(env.config), "--target", "vod", "--no-progress", str(path))
    assert out.returncode == 0, out.stderr
    first, last = active(env.vod_meter)
    assert last - first >= 3  # 5 MB at 1 MB/s, not at loopback speed
    assert near(rate(env.vod_meter, first + 1, last), 1_000_000, 0.15)


def test_a_target_cap_holds_under_the_global_one(env):
    """VOD capped at 500 kB/s by its target's max_rate; Youku takes the rest of the global 2M."""
    env.configure({"max_rate": "2M"}, targets=("vod", "youku"), vod={"max_rate": "500k"})
    # 16 MB: Youku's ~11 s at 1.5 MB/s is the window both are measured over; long enough
    # that one second in which the loaded machine stalled the whole daemon (seen in CI:
    # both at 3/4 of their rate over a 4 s window) stays within the tolerance
    drop(env.outbox / "clip.mp4", 16_000_000)
    with env.daemon() as d:
        wait_for(lambda: any(e["vidupd.target"] == "youku" for e in env.completed()), 120, what="the Youku upload")
        d.stop()
    (v0, v1), (y0, y1) = active(env.vod_meter), active(env.youku_meter)
    start, end = max(v0, y0) + 1, min(v1, y1)
    assert end - start >= 6, (v0, v1, y0, y1)
    vod, youku = rate(env.vod_meter, start, end), rate(env.youku_meter, start, end)
    assert near(vod, 500_000, 0.15), (vod, youku)
    assert near(youku, 1_500_000, 0.15), (vod, youku)

"""The one-shot progress bar (issue 11): on a real terminal, uploading to VOD through OSS
under `max_rate`, the bar moves while a part is being sent (it used to sit at 0 and jump a
whole part at a time), its rate comes from the acknowledged bytes and stays near the cap
(it used to read 41.7MB/s against 4 MB/s), and its units are SI like `status`."""

from __future__ import annotations

import re

import pytest
from helpers import drop_random
from terminal import PtyProcess, plain
from test_vod_e2e import Env

pytestmark = pytest.mark.timeout(180)
MiB = 1 << 20
FRAME = re.compile(r"to vod:\s+(\d+)%\|[^|]*\| ([\d.]+[kMG]?)B/([\d.]+[kMG]?)B(?:, ([\d.]+) (B|kB|MB|GB)/s)?")
SCALE = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def test_bar_moves_within_a_part_and_its_rate_is_honest_under_max_rate(make_site):
    env = make_site(Env, target={"part_size": 3 * MiB, "part_concurrency": 2})
    with open(env.config) as f:
        text = f.read()
    env.config.write_text(text.replace("workers = 3", "workers = 3\nmax_rate = 1000000", 1))
    # three parts of 3 MiB, two in flight at once: the fair throttle sends the two in step (small
    # reads at this cap), so they are acknowledged together at 2/3; the third, alone, gives a rate
    clip = drop_random(env.root / "clip.mp4", 9 * MiB)
    with PtyProcess("upload", "-c", str(env.config), "--target", "vod", str(clip), on_tty=("stderr",)) as p:
        assert p.wait(timeout=150) == 0, p.screen + p.piped.decode()
    frames = [m for m in FRAME.finditer(plain(p.screen).replace("\r", "\n"))]
    assert frames, p.screen
    percents = [int(m.group(1)) for m in frames]
    assert percents == sorted(percents), "forward only"
    # the two halves are acknowledged together near the end: a bar of acknowledged bytes
    # alone would show 0% until then; this one shows the blocks (1 MiB) going out
    assert any(0 < pc < 50 for pc in percents), (percents, p.screen)
    rates = [float(m.group(4)) * SCALE[m.group(5)] for m in frames if m.group(4)]
    assert rates, p.screen
    assert max(rates) < 2.0e6, f"rate {max(rates):.0f} B/s against max_rate 1 MB/s (one second of burst allowed)"
    assert "iB" not in plain(p.screen) and "MB" in plain(p.screen), "SI units, as in status"
    assert frames[-1].group(3) == "9.44M"  # 9 MiB = 9.44 MB
    assert "clip.mp4\tvod\tcommitted" in p.piped.decode() or "\tdone\t" in p.piped.decode()

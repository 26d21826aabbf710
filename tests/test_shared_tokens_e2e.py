"""Processes sharing one state_dir: the rotating Youku token pair lives in the ledger, so a
one-shot `vidupd upload` and the daemon refresh it for each other instead of breaking each
other; and a second daemon on the same state_dir refuses to start.

Real daemon, real one-shot processes, the Youku sandbox over HTTP on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial

import pytest
from helpers import ROOT, DaemonProcess, actions, drop_random as drop, md5_file as md5, vidupd, wait_for
from test_youku_e2e import Env

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def env_factory(make_site):
    return partial(make_site, Env)


def test_one_shot_and_daemon_share_rotating_tokens_for_a_minute(env_factory):
    """Issue 8.3: with tokens living 3 s, a one-shot and the daemon both upload to Youku for
    60 s; each refreshes the pair the other uses, and nothing fails."""
    env = env_factory(token_ttl=3.0)
    side = env.root / "side"  # one-shot files: outside the watched folder
    side.mkdir()
    dropped, sent = [], []
    oneshot_results: list[subprocess.CompletedProcess] = []
    with env.daemon() as d:
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline:
            dropped.append(drop(env.outbox / f"d{i}.mp4", (1 << 20) + i))
            f = drop(side / f"o{i}.mp4", (1 << 20) + 7 * i + 1)
            sent.append(f)
            oneshot_results.append(vidupd("upload", "-c", str(env.config), "--target", "youku", "--no-progress",
                                          str(f), timeout=120))
            i += 1
            time.sleep(1.0)
        wait_for(lambda: len(env.completed()) >= len(dropped) + len(sent), 120, what="every upload completed")
        assert d.stop() == 0
    for r in oneshot_results:
        assert r.returncode == 0, r.stdout + r.stderr
    assert not actions(env.events, "upload.failed")
    assert len(actions(env.events, "auth.refreshed")) >= 2  # tokens did expire under both of them
    md5s = sorted(e["md5"] for e in env.journal.entries())
    assert md5s == sorted(md5(f) for f in dropped + sent)  # each exactly once, intact


def test_second_daemon_on_one_state_dir_refuses_and_names_the_first(env_factory):
    """Issue 8.4: a second `vidupd run` on the same state_dir exits 2 naming the running
    daemon; a one-shot upload beside the daemon still works."""
    env = env_factory()
    with env.daemon() as d:
        n_started = len(actions(env.events, "daemon.started"))
        second = subprocess.run([sys.executable, "-m", "vidupd", "run", "-c", str(env.config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, env=dict(os.environ))
        assert second.returncode == 2, second.stderr
        assert f"pid {d.proc.pid}" in second.stderr and "running since" in second.stderr
        assert str(env.state) in second.stderr
        assert len(actions(env.events, "daemon.started")) == n_started  # it wrote nothing to the log
        side = env.root / "side"
        side.mkdir()
        f = drop(side / "beside.mp4", 1 << 20)
        r = vidupd("upload", "-c", str(env.config), "--target", "youku", "--no-progress", str(f), timeout=120)
        assert r.returncode == 0, r.stderr
        assert d.stop() == 0
    # once the first has stopped (or died), the lock is free again, also after kill -9
    d2 = DaemonProcess(env.config, env.events).start()
    d2.kill9()
    with DaemonProcess(env.config, env.events) as d3:
        assert d3.stop() == 0
    lock = json.loads((env.state / "daemon.lock").read_text())
    assert lock["pid"] == d3.proc.pid

"""Pause, resume, cancel and forget end to end (issue 12): the real daemon (subprocess) and
the real commands against the Youku sandbox (OSS flow and six-step slices) and the VOD/OSS
sandbox over HTTP on loopback. What is left open on the platforms is read from the
sandboxes' own listing (GET /_sandbox/open-uploads on the Youku API host and the VOD host)."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import SandboxSite, actions, append_fast_retry, drop_random as drop, md5_file as md5, vidupd, \
    wait_for, write_config
from test_systemd import NotifySocket

from vidupd.ledger import Job, Ledger
from vidupd.sandbox.common import OPEN_UPLOADS_PATH, SandboxOptions
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox
from vidupd.sandbox.youku import YoukuSandbox

pytestmark = pytest.mark.timeout(120)

PART = 256 * 1024  # OSS part size of both platforms; Youku slices are decided by the server
BIG = 12 * PART  # 3 MiB: twelve parts (and slices); about 6 s per flow at the sandboxes' RATE
RATE = 500_000  # bytes/s each sandbox server takes, so a pause or cancel finds the uploads running
TARGETS = ("vod", "youku", "slices")


class Env(SandboxSite):
    """The daemon against the VOD + OSS sandboxes and the Youku sandbox; every file goes to
    three targets: VOD (multipart), Youku's OSS flow and Youku's six-step slice flow."""

    def __init__(self, root: Path, **options: Any):
        super().__init__(root)
        # a slice handed out and not received (stopped by the pause) is handed out again after 3 s
        opts = SandboxOptions(youku_slice_length=PART, slice_task_timeout=3.0, **options)
        self.youku = YoukuSandbox(root / "youku", opts, self.journal, encode_seconds=0.3)
        self.oss = OssSandbox(root / "sandbox", opts, self.journal)
        self.vod = VodSandbox(root / "sandbox", opts, self.journal, self.oss, status_delays=(0.2, 0.3))
        for s in (self.youku, self.oss, self.vod):
            s.start()
        yk, vc = self.youku.credentials, self.vod.credentials
        youku = {"provider": "youku", "api_base": self.youku.api_base, "client_id": yk["client_id"],
                 "client_secret": yk["client_secret"], "access_token": yk["access_token"],
                 "refresh_token": yk["refresh_token"], "confirm_wait": 1, "part_size": PART,
                 "part_concurrency": 2, "slice_concurrency": 2, "ready_timeout": 60}
        targets = {"vod": {"provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
                           "access_key_id": vc["access_key_id"], "access_key_secret": vc["access_key_secret"],
                           "part_size": PART, "part_concurrency": 2, "ready_timeout": 60},
                   "youku": {**youku, "upload_protocol": "oss"},
                   "slices": {**youku, "upload_protocol": "slices"}}
        write_config(self.config, {"state_dir": str(self.state), "workers": 3, "rescan_interval": 1}, targets,
                     [{"path": str(self.outbox), "targets": list(TARGETS), "settle_seconds": 0.5}],
                     {"events": str(self.events)})
        append_fast_retry(self.config)

    def ctl(self, *args: str) -> Any:
        return vidupd(*args, "-c", str(self.config))

    def all_jobs(self) -> list[Job]:
        ledger = Ledger(self.state, readonly=True)
        try:
            return ledger.jobs()
        finally:
            ledger.close()

    def jobs(self, name: str) -> dict[str, Job]:
        """target -> the newest job of the file `name`."""
        return {j.target: j for j in self.all_jobs() if j.path.name == name}

    def open_uploads(self) -> dict[str, list]:
        """What both platforms hold open, as their sandboxes list it over HTTP."""
        youku = requests.get(f"{self.youku.api_base}{OPEN_UPLOADS_PATH}", timeout=10).json()
        vod = requests.get(f"http://{self.vod.endpoint}{OPEN_UPLOADS_PATH}", timeout=10).json()
        return {"multipart": vod["oss_multipart"] + youku["oss_multipart"], "tokens": youku["youku_tokens"],
                "vod_uploading": vod["vod_uploading"]}

    def sent(self) -> tuple[int, int, int]:
        """(VOD parts, Youku OSS parts, Youku slice bytes) received, repeats included."""
        return self.oss.parts_received, self.youku.oss.parts_received, self.youku.slice_bytes_received

    def close(self) -> None:
        for s in (self.vod, self.oss, self.youku):
            s.shutdown()


@pytest.fixture
def make_env(make_site):
    return partial(make_site, Env)


def _all_moving(env: Env) -> bool:
    vod, yk, slices = env.sent()
    return vod >= 2 and yk >= 2 and slices >= PART


def test_pause_before_start_holds_across_a_restart_and_resume_sends(make_env, tmp_path):
    env = make_env()
    r = env.ctl("pause")
    assert r.returncode == 0 and "paused: all" in r.stdout
    notify = NotifySocket(tmp_path)
    try:
        d = env.daemon()
        d.env["NOTIFY_SOCKET"] = str(notify.path)
        d.start()
        (paused,) = actions(env.events, "daemon.paused")
        assert paused["vidupd.scope"] == ["all"] and paused["vidupd.paused"] == ["all"]
        files = [drop(env.outbox / f"held{i}.mp4", 200_000 + i) for i in range(2)]
        wait_for(lambda: len(env.all_jobs()) == 6, 30, what="six jobs queued while paused")
        wait_for(lambda: any("paused: all" in m.get("STATUS", "") for _, m in notify.snapshot()), 10,
                 what="STATUS= saying paused")
        time.sleep(1.5)  # several ticks and claims later: still nothing sent
        assert {j.state for j in env.all_jobs()} == {"queued"} and env.journal.entries() == []
        status = json.loads(env.ctl("status", "--json").stdout)
        assert [p["scope"] for p in status["paused"]] == ["all"] and status["paused"][0]["by"]
        assert env.ctl("status").stdout.startswith("paused: all; 6 queued")
        queued = env.jobs("held0.mp4")["vod"].id
        r = env.ctl("forget", str(queued))
        assert r.returncode == 1 and f"job {queued}: queued; cancel it first" in r.stderr
        assert d.stop() == 0
        d = env.daemon().start()  # the pause is in the ledger: the restarted daemon holds it from its first claim
        assert len(actions(env.events, "daemon.paused")) == 2
        time.sleep(1.5)
        assert env.journal.entries() == [] and not actions(env.events, "upload.started")
        assert env.ctl("resume").returncode == 0
        wait_for(lambda: len(env.completed()) == 6, 60, what="six uploads after resume")
        (resumed,) = actions(env.events, "daemon.resumed")
        assert resumed["vidupd.scope"] == ["all"] and "vidupd.paused" not in resumed
        assert d.stop() == 0
    finally:
        notify.close()
    md5s = {md5(f) for f in files}
    assert {e["md5"] for e in env.journal.entries()} == md5s and len(env.journal.entries()) == 6


def test_pause_mid_upload_checkpoints_without_an_attempt_and_resume_continues_the_same_uploads(make_env):
    env = make_env(max_rate=RATE)
    big = drop(env.outbox / "big.mp4", BIG)
    with env.daemon() as d:
        wait_for(lambda: _all_moving(env), 60, what="all three uploads sending")
        r = env.ctl("pause", "--target", "vod", "--target", "youku", "--target", "slices")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(actions(env.events, "upload.interrupted")) == 3, 30, what="three uploads stopped")
        assert all(e["vidupd.reason"] == "paused" for e in actions(env.events, "upload.interrupted"))
        (paused,) = actions(env.events, "daemon.paused")
        assert sorted(paused["vidupd.scope"]) == sorted(TARGETS) and len(paused["vidupd.stopping"]) == 3
        jobs = env.jobs("big.mp4")
        assert {(j.state, j.attempts) for j in jobs.values()} == {("queued", 0)}  # no attempt counted
        held = env.open_uploads()
        assert len(held["multipart"]) == 2 and sorted(t["flow"] for t in held["tokens"]) == ["oss", "slices"]
        before = env.sent()
        time.sleep(1.5)
        assert env.sent() == before  # nothing is sent while paused
        assert env.ctl("resume", "--target", "vod").returncode == 0
        wait_for(lambda: env.jobs("big.mp4")["vod"].state in ("committed", "done"), 60, what="vod sent")
        assert env.jobs("big.mp4")["youku"].state == "queued"  # still paused
        assert env.ctl("resume").returncode == 0
        wait_for(lambda: len(env.completed()) == 3, 60, what="three uploads completed")
        assert d.stop() == 0
    assert [e["vidupd.attempt"] for e in actions(env.events, "upload.started")] == [1] * 6
    vod, yk, slices = env.sent()
    assert vod <= 12 + 2 and yk <= 12 + 2  # the same multipart uploads went on: at most the parts in flight again
    assert slices < 2 * BIG  # the six-step upload was not started over either
    assert env.open_uploads() == {"multipart": [], "tokens": [], "vod_uploading": []}
    assert {e["md5"] for e in env.journal.entries()} == {md5(big)} and len(env.journal.entries()) == 3


def test_cancel_running_uploads_leaves_nothing_open_and_the_file_is_not_offered_again(make_env):
    env = make_env(max_rate=RATE)
    f = drop(env.outbox / "c.mp4", BIG)
    with env.daemon() as d:
        wait_for(lambda: _all_moving(env), 60, what="all three uploads sending")
        ids = sorted(j.id for j in env.jobs("c.mp4").values())
        r = env.ctl("cancel", *map(str, ids), "999")
        assert r.returncode == 1 and "job 999: no such job" in r.stderr
        assert all(f"job {i}: cancelled by its holder" in r.stdout for i in ids), r.stdout + r.stderr
        assert {j.state for j in env.jobs("c.mp4").values()} == {"cancelled"}
        assert len(actions(env.events, "upload.cancelled")) == 3
        abandoned = actions(env.events, "upload.abandoned")
        assert len(abandoned) == 3 and not actions(env.events, "upload.cancel_failed")
        left = env.open_uploads()
        assert left == {"multipart": [], "tokens": [], "vod_uploading": []}  # VOD's video deleted (DeleteVideo)
        assert env.ctl("cancel", str(ids[0])).returncode == 0  # already cancelled: nothing to do
        time.sleep(2.5)  # two rescans: the cancelled file version is not offered again
        assert len(actions(env.events, "upload.queued")) == 3 and env.journal.entries() == []
        drop(f, 300_000)  # a changed file is a new version: offered and sent
        wait_for(lambda: len(env.completed()) == 3, 60, what="the changed file uploaded")
        done = env.jobs("c.mp4")["vod"]
        r = env.ctl("cancel", str(done.id))
        assert r.returncode == 1 and f"already uploaded to vod as {done.remote_id}" in r.stderr
        assert d.stop() == 0
    assert {e["md5"] for e in env.journal.entries()} == {md5(f)}
    assert env.open_uploads()["multipart"] == [] and env.open_uploads()["tokens"] == []


def test_cancel_of_a_waiting_job_by_the_command_and_forget_sends_identical_content_again(make_env):
    env = make_env()
    assert env.ctl("pause", "--target", "slices").returncode == 0
    f = drop(env.outbox / "again.mp4", 200_000)
    with env.daemon() as d:
        wait_for(lambda: [j.state for t, j in sorted(env.jobs("again.mp4").items()) if t != "slices"] ==
                 ["done", "done"], 60, what="vod and youku done (processed)")
        waiting = env.jobs("again.mp4")["slices"]
        assert waiting.state == "queued"
        r = env.ctl("cancel", str(waiting.id))  # nobody holds it: the command cancels it itself
        assert r.returncode == 0 and f"job {waiting.id}: cancelled" in r.stdout
        ids = sorted(j.id for j in env.jobs("again.mp4").values())
        r = env.ctl("forget", *map(str, ids), "999")
        assert r.returncode == 1 and "job 999: no such job" in r.stderr
        assert sum(f"job {i}: forgotten" in r.stdout for i in ids) == 3, r.stdout + r.stderr
        assert len(actions(env.events, "ledger.forgotten")) == 3
        assert env.ctl("resume").returncode == 0
        # still in the watched folder (after_upload = keep): the next rescan offers it again, to all three
        wait_for(lambda: len(env.completed()) == 5, 60, what="identical content uploaded again")
        assert d.stop() == 0
    per_target = {}
    for e in env.completed():
        per_target.setdefault(e["vidupd.target"], []).append(e["vidupd.remote_id"])
    assert {t: len(v) for t, v in per_target.items()} == {"vod": 2, "youku": 2, "slices": 1}
    assert not actions(env.events, "upload.skipped")  # the duplicate check no longer sees the forgotten jobs
    assert {e["md5"] for e in env.journal.entries()} == {md5(f)}

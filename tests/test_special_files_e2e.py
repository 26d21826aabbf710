"""A FIFO or a directory where a file is expected, and a stop with a worker that does not
stop (issue 8, point 2), end to end: the real daemon and one-shot (subprocesses, real signals)
against the sandbox in its own process, which a test can freeze with SIGSTOP so that a worker
is genuinely blocked in a socket read (request_timeout is far longer than the test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, DaemonProcess, actions, drop_random, md5_file, read_events, vidupd, wait_for, write_config
from test_special_files import unblock_fifo

from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Ledger

sys.path.insert(0, str(ROOT))
from benchmarks._harness import SandboxProcess  # noqa: E402  (the sandbox in its own process)

STOP_BUDGET = 2  # the daemon's stop_timeout in these tests


class Site:
    """The sandbox as a process, and a daemon config with its VOD target only."""

    def __init__(self, root: Path, stop_timeout: float | None = None):
        self.root = root
        self.outbox = root / "outbox"
        self.outbox.mkdir()
        self.given = root / "given"  # files handed to the one-shot (not watched)
        self.given.mkdir()
        self.state = root / "state"
        self.events = root / "events.jsonl"
        self.sandbox = SandboxProcess(root / "sb", 30, "vod")
        self.frozen = False
        vod = {k: self.sandbox.target[k] for k in ("provider", "endpoint", "region", "access_key_id",
                                                    "access_key_secret")}
        top = {"state_dir": str(self.state), "workers": 2, "rescan_interval": 1}
        if stop_timeout is not None:
            top["stop_timeout"] = stop_timeout
        self.config = write_config(
            root / "vidupd.toml", top,
            {"vod": {**vod, "request_timeout": 600, "ready_timeout": 60}},
            [{"path": str(self.outbox), "targets": ["vod"], "settle_seconds": 0.5}],
            {"events": str(self.events), "level": "info"})

    def freeze(self) -> None:
        self.sandbox.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.sandbox.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def jobs(self) -> list[dict]:
        out = vidupd("status", "-c", str(self.config), "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        return data["jobs"] if isinstance(data, dict) else data

    def close(self) -> None:
        if self.frozen:
            self.thaw()
            time.sleep(1)  # let it answer what it received while frozen (else its own stop takes 15 s)
        self.sandbox.stop()


@pytest.fixture
def site(tmp_path: Path):
    s = Site(tmp_path)
    yield s
    s.close()


@pytest.fixture
def budget_site(tmp_path: Path):
    """With a short stop budget (stop_timeout), for the tests that stop with a blocked upload."""
    s = Site(tmp_path, stop_timeout=STOP_BUDGET)
    yield s
    s.close()


def upload(site: Site, *names: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return vidupd("upload", "-c", str(site.config), "--target", "vod", "--no-progress",
                  *(str(site.given / n) for n in names), timeout=timeout)


def test_one_shot_refuses_a_fifo_at_once_and_sends_the_regular_file_given_with_it(site):
    os.mkfifo(site.given / "p1.mp4")
    good = drop_random(site.given / "good.mp4", 200_000)
    out = upload(site, "p1.mp4", "good.mp4")  # old code: blocked in open() until the timeout
    assert out.returncode == 1
    assert f"{site.given / 'p1.mp4'}: refused: is a FIFO, not a regular file" in out.stderr
    (line,) = out.stdout.splitlines()
    assert line.split("\t")[:3] == [str(good), "vod", "committed"]
    assert [Path(j["file"]).name for j in site.jobs()] == ["good.mp4"]  # no job for the FIFO
    assert [e["md5"] for e in site.sandbox.entries()] == [md5_file(good)]


def test_one_shot_refuses_a_directory_at_once(site):
    (site.given / "folder.mp4").mkdir()
    out = upload(site, "folder.mp4", timeout=30)  # old code: a job retried 8 times as "Is a directory"
    assert out.returncode == 1
    assert f"{site.given / 'folder.mp4'}: refused: is a directory, not a regular file" in out.stderr
    assert site.jobs() == []


def test_daemon_fails_a_queued_fifo_once_and_keeps_uploading_the_rest(site):
    """A FIFO job in the ledger (as a one-shot of an older version left it) and a FIFO dropped
    into the outbox: the first fails at once with its reason, the second is refused once;
    the other files go through and the daemon stops normally."""
    old = site.given / "p1.mp4"
    os.mkfifo(old)
    ledger = Ledger(site.state)
    (offer,) = ledger.offer(old, None, [("vod", "video")], FileIdentity.of(os.stat(old)), Metadata("p1"))
    ledger.close()
    os.mkfifo(site.outbox / "f2.mp4")
    files = [drop_random(site.outbox / f"clip{i}.mp4", 300_000) for i in range(3)]
    try:
        with DaemonProcess(site.config, site.events) as d:
            wait_for(lambda: len(actions(site.events, "upload.completed")) == 3, 60, what="the three clips")
            wait_for(lambda: actions(site.events, "upload.failed"), 30, what="the queued FIFO to fail")
            time.sleep(3)  # three rescans see f2.mp4 again: still one rejection
            assert d.stop(timeout=30) == 0
    finally:
        for fifo in (old, site.outbox / "f2.mp4"):
            unblock_fifo(fifo)
    (failed,) = actions(site.events, "upload.failed")
    assert failed["vidupd.job_id"] == offer.job_id and failed["error.message"] == "is a FIFO, not a regular file"
    assert not [e for e in actions(site.events, "upload.retrying") if e.get("vidupd.job_id") == offer.job_id]
    (rejected,) = actions(site.events, "file.rejected")
    assert rejected["file.path"] == str(site.outbox / "f2.mp4")
    assert rejected["vidupd.reason"] == "is a FIFO, not a regular file"
    assert sorted(e["md5"] for e in site.sandbox.entries()) == sorted(md5_file(f) for f in files)


def test_daemon_stops_within_its_budget_with_a_blocked_upload_and_a_restart_resumes_it(budget_site):
    site = budget_site
    with DaemonProcess(site.config, site.events) as d:
        site.freeze()  # every request from now on waits in a socket read (request_timeout 600 s)
        big = drop_random(site.outbox / "big.mp4", 1 << 20)
        wait_for(lambda: actions(site.events, "upload.started"), 30, what="the upload to start")
        time.sleep(0.5)
        d.signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout=STOP_BUDGET + 25)  # old code: waited for the worker forever
        except subprocess.TimeoutExpired:
            pytest.fail("the daemon did not exit after its stop budget")
    assert rc == 0
    (job,) = site.jobs()
    (timeout,) = actions(site.events, "daemon.stop_timeout")
    assert timeout["vidupd.left"] == [{"job_id": job["id"], "path": str(big), "target": "vod"}]
    assert f"job {job['id']} ({big} to vod)" in timeout["message"]
    stopped = read_events(site.events)[-1]
    assert stopped["event.action"] == "daemon.stopped" and stopped["vidupd.left_running"] == 1
    assert job["state"] == "queued"  # its lease given back: the next start takes it at once
    site.thaw()
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "upload.completed"), 60, what="the resumed upload")
        assert d.stop(timeout=30) == 0
    assert [e["md5"] for e in site.sandbox.entries()] == [md5_file(big)]
    assert len(actions(site.events, "upload.completed")) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_one_shot_interrupted_with_a_blocked_upload_exits_and_leaves_it_queued(budget_site, sig):
    site = budget_site
    big = drop_random(site.given / "big.mp4", 1 << 20)
    site.freeze()
    stderr = site.root / "oneshot.err"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vidupd", "upload", "-c", str(site.config), "--target", "vod",
                                 "--no-progress", str(big)], cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        try:
            wait_for(lambda: actions(site.events, "upload.started"), 30, what="the upload to start")
            time.sleep(0.5)
            proc.send_signal(sig)
            try:
                out, _ = proc.communicate(timeout=STOP_BUDGET + 25)  # old code: Ctrl-C hung at exit
            except subprocess.TimeoutExpired:
                pytest.fail("the one-shot did not exit after its stop budget")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr.read_text()
    (job,) = site.jobs()
    assert f"job {job['id']}: still running after {STOP_BUDGET}s; left to resume next time" in stderr.read_text()
    assert job["state"] == "queued"
    assert out.decode().split("\t")[:3] == [str(big), "vod", "queued"]

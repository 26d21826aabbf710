"""Small files (issue 8, point 10): what each small upload costs in requests, ledger
transactions and threads, and that none of it grows with the number of files already sent.

No timing is asserted anywhere: the costs are counted (requests at the sandbox, claims, threads,
bytes of the sandbox's state file). benchmarks/bench_small.py measures the speed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest
import test_sandbox_youku
from helpers import DaemonProcess, actions, wait_for, write_config
from test_sandbox_youku import SLICE, Yk

from vidupd.config import TargetConfig
from vidupd.core import content
from vidupd.core.content import md5_file
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.throttle import Throttle
from vidupd.engine.after_upload import AfterUpload
from vidupd.engine.pool import Pool, PoolSettings
from vidupd.intake.companions import cover_for
from vidupd.ledger import Completed, Ledger
from vidupd.providers.base import MediaStatus, Provider, UploadResult
from vidupd.providers.features import ReportsStatus
from vidupd.sandbox import common
from vidupd.sandbox.app import start_sandbox
from vidupd.sandbox.common import SandboxOptions

KIB = 1024


# ---- the real daemon against both sandbox platforms: requests per small upload ----------------

@pytest.fixture
def counted_requests(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """Every request the in-process sandboxes answer, by "METHOD path" (Action for VOD RPCs)."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    original = common.QuietHandler.send_response

    def send_response(self, code, message=None):  # type: ignore[no-untyped-def]
        path, _, query = self.path.partition("?")
        action = next((p[7:] for p in query.split("&") if p.startswith("Action=")), "")
        key = f"{self.command} {action or ('OSS object' if self.command == 'PUT' else path)}"
        with lock:
            counts[key] += 1
        return original(self, code, message)

    monkeypatch.setattr(common.QuietHandler, "send_response", send_response)
    return counts


# Youku's OSS flow (the sandbox's default answer): create, one PutObject, commit; its
# six-step flow: create, create_file, new_slice, upload_slice, check, commit.
YOUKU_REQUESTS = {
    "oss": ("POST /uploads/create.json", "POST /uploads/commit.json"),
    "slices": ("POST /uploads/create.json", "POST /gupload/create_file", "GET /gupload/new_slice",
               "POST /gupload/upload_slice", "GET /gupload/check", "POST /uploads/commit.json"),
}


@pytest.mark.parametrize("protocol", ["oss", "slices"])
def test_small_files_cost_few_youku_and_two_vod_requests_each(tmp_path: Path, counted_requests,
                                                              protocol: str) -> None:
    box = start_sandbox(tmp_path / "sandbox", SandboxOptions(hash_only=True))
    try:
        targets = {name: {k: v for k, v in t.items() if k != "ready_timeout"}
                   for name, t in tomllib.loads(box.config.read_text())["targets"].items()}
        assert set(targets) == {"youku", "vod"}
        targets["youku"]["upload_protocol"] = protocol
        outbox, events = tmp_path / "outbox", tmp_path / "events.jsonl"
        outbox.mkdir()
        config = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")}, targets,
                              [{"path": str(outbox), "targets": ["youku", "vod"], "settle_seconds": 0.5}],
                              {"events": str(events)})
        n = 4
        for i in range(n):
            (outbox / f"clip{i}.mp4").write_bytes(os.urandom(64 * KIB))
        with DaemonProcess(config, events) as d:  # default workers, wait_ready and poll timings
            wait_for(lambda: len(actions(events, "media.ready")) >= 2 * n, 60, what="every upload ready")
            assert d.stop() == 0
        assert not actions(events, "upload.failed") and not actions(events, "upload.retrying")
        journal = collections.Counter(e["provider"] for e in box.journal.entries())
        assert journal == {"youku": n, "aliyun-vod": n}
        youku = {k: counted_requests[k] for k in YOUKU_REQUESTS[protocol]}
        # one slice: one new_slice (not one per slice thread), and no check before the slices go out
        assert youku == dict.fromkeys(youku, n), dict(counted_requests)
        youku_puts = n if protocol == "oss" else 0  # one PutObject per small file, no multipart calls
        assert counted_requests["POST CreateUploadVideo"] == n
        assert counted_requests["PUT OSS object"] == n + youku_puts, dict(counted_requests)
        assert sum(v for k, v in counted_requests.items() if k.startswith("POST /youku-sandbox/")) == 0
    finally:
        box.shutdown()


# ---- status polls do not wait for an upload worker ---------------------------------------------

class _OneSlow(ReportsStatus, Provider):
    """Uploads return at once, except the file named slow.mp4, which holds its worker until
    released; every status poll answers ready."""

    name = "one-slow"
    options: dict = {}

    def __init__(self) -> None:
        super().__init__("t", {}, Path("/nonexistent"))
        self.release = threading.Event()
        self.slow_started = threading.Event()

    def upload(self, request, ctx):  # type: ignore[no-untyped-def]
        if request.path.name == "slow.mp4":
            self.slow_started.set()
            while not self.release.wait(0.05) and not ctx.cancel.is_set():
                pass
        return UploadResult(f"id-{request.job_id}", "video")

    def media_status(self, remote_id: str, remote_kind: str) -> MediaStatus:
        return MediaStatus("ready")


def test_status_poll_runs_while_every_upload_worker_is_busy(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    ids = {}
    for name in ("fast.mp4", "slow.mp4"):
        p = tmp_path / name
        p.write_bytes(name.encode() * 100)
        (offer,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata(p.stem))
        ids[name] = offer.job_id
    provider = _OneSlow()
    settings = PoolSettings(workers=1, retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02),
                            skip_duplicates=False, poll_first=0.01, poll_max=0.02)
    targets = {"t": TargetConfig("t", "one-slow", {}, wait_ready=True, ready_timeout=60)}
    pool = Pool(settings, ledger, targets, {"t": provider}, Throttle(None), "me", AfterUpload(ledger, dict))
    pool.start()
    try:
        assert provider.slow_started.wait(10)
        # the only upload worker is held by slow.mp4; fast.mp4's poll still runs
        wait_for(lambda: ledger.get(ids["fast.mp4"]).state == "done", 10, what="fast.mp4 polled to done")
        assert ledger.get(ids["slow.mp4"]).state == "uploading"
    finally:
        provider.release.set()
        wait_for(lambda: ledger.get(ids["slow.mp4"]).state == "done", 10, what="slow.mp4 done")
        pool.stop(timeout=10)
        ledger.close()


# ---- the ledger side ---------------------------------------------------------------------------

def _offer(ledger: Ledger, path: Path) -> int:
    path.write_bytes(path.name.encode())
    (o,) = ledger.offer(path, None, [("t", "video")], FileIdentity.of(path.stat()), Metadata(path.stem))
    return o.job_id


def test_commit_schedules_the_first_poll_and_one_claim_takes_both_kinds(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    a, b, c = (_offer(ledger, tmp_path / f"{x}.mp4") for x in "abc")
    (job,) = ledger.claim("me", 1, 60, poll_limit=0)
    assert job.id == a
    event = ledger.apply(a, Completed("R1", "video", final=False, poll_in=0.0, note="waiting"), owner=None)
    assert event is not None and event.action == "upload.completed"
    row = ledger.get(a)
    assert (row.state, row.last_error) == ("committed", "waiting") and row.not_before <= ledger.get(a).updated
    # one transaction: up to one upload and up to one poll
    got = ledger.claim("me", 1, 60, poll_limit=1)
    assert sorted((j.id, j.state) for j in got) == [(a, "committed"), (b, "uploading")]
    assert ledger.claim("me", 0, 60, poll_limit=5) == []  # nothing else to poll; uploads not asked for
    (later,) = ledger.claim("me", 3, 60, poll_limit=0)
    assert later.id == c
    ledger.apply(b, Completed("R2", "video", final=False, poll_in=3600.0, note="waiting"), owner=None)
    assert ledger.claim("me", 5, 60, poll_limit=5) == []  # b's first poll is an hour away
    ledger.close()


# ---- hashing -----------------------------------------------------------------------------------

def test_md5_file_starts_no_thread_for_a_one_block_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = content.ThreadPoolExecutor

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(content, "ThreadPoolExecutor", counting)
    small = tmp_path / "small.mp4"
    small.write_bytes(os.urandom(200 * KIB))
    d = md5_file(small, FileIdentity.of(small.stat()), piece_size=64 * KIB)
    data = small.read_bytes()
    assert d.md5 == hashlib.md5(data).hexdigest()
    assert d.pieces == tuple(hashlib.md5(data[i:i + 64 * KIB]).hexdigest() for i in range(0, len(data), 64 * KIB))
    assert made == []
    big = md5_file(small, FileIdentity.of(small.stat()), piece_size=64 * KIB, block=128 * KIB)  # two blocks
    assert big == d and len(made) == 1


# ---- covers ------------------------------------------------------------------------------------

def test_cover_lookup_keeps_its_rule(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"v")
    for name in ("clip.jpg.txt", "clip..png", "clip.b.jpg", "other.jpg", "clip.mp4.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "clip.webp").mkdir()  # not a regular file
    assert cover_for(video) is None
    (tmp_path / "clip.PNG").write_bytes(b"x")
    (tmp_path / "clip.Jpg").write_bytes(b"x")
    assert cover_for(video) == tmp_path / "clip.Jpg"  # any case; the first by name


# ---- the Youku sandbox: a commit costs the same with 1 or 1,000 videos stored --------------------

@pytest.fixture
def make_youku(tmp_path: Path):
    """The factory of the Youku sandbox tests (tests/test_sandbox_youku.py: make_yk), reused."""
    yield from test_sandbox_youku.make_yk.__wrapped__(tmp_path)


def test_youku_sandbox_state_file_does_not_grow_with_committed_videos(make_youku, tmp_path: Path) -> None:
    yk: Yk = make_youku(data_dir=tmp_path / "box")
    videos = [yk.full_upload(os.urandom(SLICE))[1] for _ in range(6)]
    yk.sb.store.save()  # what every create and create_file rewrites: live sessions only, no videos
    state = json.loads(yk.sb.store._state_path.read_text())
    assert state.get("videos", {}) == {} and state["sessions"] == {}, state
    yk.sb.shutdown()
    yk2: Yk = make_youku(data_dir=tmp_path / "box")  # everything is still known after a restart
    for vid in videos:
        r = yk2.api("GET", "videos/show.json", video_id=vid)
        assert r.status_code == 200 and r.json()["id"] == vid, r.text


def test_youku_sandbox_reads_the_older_state_layout(make_youku, tmp_path: Path) -> None:
    yk: Yk = make_youku(data_dir=tmp_path / "old")
    token, vid = yk.full_upload(os.urandom(SLICE))
    store = yk.sb.store
    meta = next(iter(store._videos.values())).meta
    yk.sb.shutdown()
    # the layout before commits.jsonl: every video and committed session in uploads.json
    store._commits_path.unlink()
    old = {"version": 1, "videos": {vid: {"meta": asdict(meta), "upload_token": token, "committed_at": 1.0}},
           "sessions": {token: {"meta": asdict(meta), "created_at": 1.0, "instant": False, "video_id": vid}}}
    store._state_path.write_text(json.dumps(old))
    yk2: Yk = make_youku(data_dir=tmp_path / "old")
    assert yk2.commit(token).json()["video_id"] == vid  # the same token still commits to the same video
    yk2.sb.shutdown()
    yk3: Yk = make_youku(data_dir=tmp_path / "old")  # migrated: known after the old file was rewritten too
    assert yk3.api("GET", "videos/show.json", video_id=vid).json()["id"] == vid
    assert "videos" not in json.loads(store._state_path.read_text())


# ---- the event log: scrubbing secrets does not cost O(secrets registered) per line -----------

class _CountingText(str):
    checks = 0

    def __contains__(self, other: object) -> bool:
        type(self).checks += 1
        return super().__contains__(other)  # type: ignore[operator]


def test_redact_tries_only_the_secrets_that_can_occur() -> None:
    from vidupd.core import secrets

    many = [os.urandom(16).hex() for _ in range(1000)]  # e.g. the STS pairs of 500 VOD uploads
    for value in many:
        secrets.register(value)
    line = _CountingText(f'{{"message": "clip.mp4: uploaded", "vidupd.url": "http://x/?t={many[123]}"}}')
    assert secrets.redact(line) == '{"message": "clip.mp4: uploaded", "vidupd.url": "http://x/?t=***"}'
    assert _CountingText.checks < 50  # was one check per registered value
    assert secrets.redact("nothing here") == "nothing here"

"""Alibaba Cloud VOD end to end: the real daemon (subprocess) against the VOD and OSS
sandboxes over HTTP on loopback: videos (multipart too), a cover, an image, a subtitle, a
URL pull, registration, kill -9, STS expiry, faults and a wrong secret (a duplicate id handed back:
tests/corpus, case vod-remote-id-reused)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from helpers import SandboxSite, actions, drop_random as drop, md5_file as md5, vidupd, wait_for

from vidupd.sandbox.common import SandboxOptions
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox

MiB = 1 << 20


class Env(SandboxSite):
    """The daemon against OSS + VOD sandboxes sharing one journal."""

    def __init__(self, root: Path, secret: str | None = None, target: dict | None = None, **options):
        super().__init__(root)
        opts = SandboxOptions(**options)
        self.oss = OssSandbox(root / "sandbox", opts, self.journal)
        self.vod = VodSandbox(root / "sandbox", opts, self.journal, self.oss, status_delays=(0.2, 0.3))
        self.oss.start()
        self.vod.start()
        creds = self.vod.credentials
        self.secret = creds["access_key_secret"]
        self.write_config(3, {"vod": {
            "provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
            "access_key_id": creds["access_key_id"], "access_key_secret": secret or self.secret,
            "part_concurrency": 4, "ready_timeout": 60, **(target or {})}})

    def close(self) -> None:
        self.vod.shutdown()
        self.oss.shutdown()


@pytest.fixture
def make_env(make_site):
    return partial(make_site, Env)


def test_one_drop_of_everything_and_registration(make_env, file_server):
    env = make_env()
    web_root, base = file_server
    remote = drop(web_root / "remote.mp4", 3 * MiB)
    big = drop(env.outbox / "big.mp4", 66 * MiB)
    clip = drop(env.outbox / "clip.mp4", 2 * MiB)
    cover = drop(env.outbox / "clip.jpg", 200_000)
    poster = drop(env.outbox / "poster.png", 150_000)
    subs = env.outbox / "clip.srt"
    subs.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    (env.outbox / "feed.url").write_text(f"# pulled by VOD\n{base}/remote.mp4\n")
    with env.daemon() as d:
        wait_for(lambda: len(actions(env.events, "media.ready")) >= 5, 180, what="five ready media")
        d.stop()
    done = {Path(e["file.path"]).name: e for e in env.completed()}
    assert set(done) == {"big.mp4", "clip.mp4", "poster.png", "clip.srt", "feed.url"}  # the cover rode along
    kinds = {n: e["vidupd.remote_kind"] for n, e in done.items()}
    assert kinds == {"big.mp4": "video", "clip.mp4": "video", "poster.png": "image", "clip.srt": "attached",
                     "feed.url": "url_pull"}
    journal = env.journal.entries()
    by_id = {e["remote_id"]: e for e in journal}
    for name, path in (("big.mp4", big), ("clip.mp4", clip), ("poster.png", poster), ("clip.srt", subs)):
        entry = by_id[done[name]["vidupd.remote_id"]]
        assert entry["md5"] == md5(path) and entry["size"] == path.stat().st_size
    (cover_event,) = [e for e in actions(env.events, "upload.remote_id") if e.get("vidupd.role") == "cover"]
    assert by_id[cover_event["vidupd.remote_id"]]["md5"] == md5(cover)
    (ready_pull,) = [e for e in actions(env.events, "media.ready") if e["file.path"].endswith("feed.url")]
    (media_id,) = ready_pull["vidupd.media_ids"]
    assert by_id[media_id]["md5"] == md5(remote)
    # registration of an object already in storage
    key = by_id[done["poster.png"]["vidupd.remote_id"]]["object_key"]
    out = vidupd("register", "-c", str(env.config), "--target", "vod", "--title", "Poster", env.oss.object_url(key))
    assert out.returncode == 0, out.stderr
    url, registered = out.stdout.strip().split("\t")
    assert registered and actions(env.events, "media.registered")[0]["vidupd.remote_id"] == registered
    assert env.secret not in env.events.read_text()


def test_kill9_mid_multipart_resends_at_most_part_concurrency_parts(make_env):
    env = make_env(max_rate=10_000_000, target={"part_size": 2 * MiB})
    f = drop(env.outbox / "long.mp4", 40 * MiB)
    d = env.daemon().start()
    wait_for(lambda: env.oss.parts_received >= 6, 60, what="some parts stored")
    d.kill9()
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="the resumed upload")
        d.stop()
    resent = env.oss.parts_received - 20
    assert 0 <= resent <= 4, f"{resent} parts sent twice"
    videos = [e for e in env.journal.entries() if e["kind"] == "video"]
    assert len(videos) == 1 and videos[0]["md5"] == md5(f)
    assert len([e for e in actions(env.events, "upload.remote_id")]) == 1  # no second CreateUploadVideo


def test_sts_expiry_mid_upload_continues_the_same_multipart_upload(make_env):
    env = make_env(token_ttl=1.5, max_rate=8_000_000, target={"part_size": 2 * MiB})
    f = drop(env.outbox / "sts.mp4", 24 * MiB)
    with env.daemon() as d:
        wait_for(lambda: env.completed(), 120, what="upload across credential expiry")
        d.stop()
    assert actions(env.events, "auth.refreshed")
    assert env.oss.parts_received == 12  # no part sent twice, no restart from part 1
    assert not actions(env.events, "upload.restarted")
    (video,) = env.journal.entries()
    assert video["md5"] == md5(f)


def test_ten_percent_faults(make_env):
    env = make_env(fail_rate=0.1, seed=5, target={"part_size": 1 * MiB})
    files = [drop(env.outbox / "m.mp4", 12 * MiB), drop(env.outbox / "s.mov", 300_000),
             drop(env.outbox / "i.jpg", 100_000)]
    with env.daemon() as d:
        wait_for(lambda: len(env.completed()) >= 3, 180, what="uploads despite faults")
        d.stop()
    assert {md5(p) for p in files} <= {e["md5"] for e in env.journal.entries()}
    assert not actions(env.events, "upload.failed")


def test_wrong_secret_is_rejected_and_never_logged(make_env):
    env = make_env(secret="not-the-right-secret-123")
    drop(env.outbox / "x.mp4", 100_000)
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "upload.failed"), 60, what="rejection")
        d.stop()
    (failed,) = actions(env.events, "upload.failed")
    assert "signature" in failed["message"].lower() or "secret" in failed["message"].lower()
    text = env.events.read_text()
    assert "not-the-right-secret-123" not in text and env.secret not in text
    assert not env.completed()


def test_pull_command_waits_for_the_media_ids(make_env, file_server):
    env = make_env()
    web_root, base = file_server
    a = drop(web_root / "a.mp4", 1 * MiB)
    b = drop(web_root / "b.mp4", 2 * MiB)
    out = vidupd("pull", "-c", str(env.config), "--target", "vod", "--title", "Pulled", f"{base}/a.mp4",
                 f"{base}/b.mp4", timeout=120)
    assert out.returncode == 0, out.stderr
    path, target, state, media_ids, _ = out.stdout.rstrip("\n").split("\t")
    (ready,) = actions(env.events, "media.ready")
    assert state == "done" and media_ids.split(",") == ready["vidupd.media_ids"]  # the MediaIds, not the job ids
    assert not set(media_ids.split(",")) & set(ready["vidupd.remote_id"].split(","))
    by_id = {e["remote_id"]: e for e in env.journal.entries()}
    assert sorted(by_id[m]["md5"] for m in ready["vidupd.media_ids"]) == sorted([md5(a), md5(b)])
    assert Path(path).parent == env.state / "pulls"  # the URL list lives in state_dir, never in a watch
    bad = vidupd("pull", "-c", str(env.config), "--target", "vod", "ftp://example/x.mp4")
    assert bad.returncode == 2 and "not an http(s) URL" in bad.stderr

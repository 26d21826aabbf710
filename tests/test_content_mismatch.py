"""A file rewritten in place with the same size and its mtime forged back (issue 8, point 9).

(dev, inode, size, mtime) stay the same, so nothing on disk says the file changed; only
the platform notices that the bytes differ from the MD5 taken when the job was hashed.
The job must then forget that fingerprint and its checkpoint, hash the file again and
send the new content, exactly once; `vidupd retry` of a job an older vidupd failed this
way must do the same instead of failing again forever. Real daemon, real Youku sandbox.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import partial
from pathlib import Path

import pytest
from helpers import actions, drop_random as drop, md5_file as md5, vidupd, wait_for
from test_vod_e2e import Env as VodEnv
from test_youku_e2e import SLICE, Env

from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Completed, Failed, Ledger

REASON = "content differs from its fingerprint"


@pytest.fixture
def env_factory(make_site):
    return partial(make_site, Env)


def rewrite_in_place(path: Path, offset: int, length: int) -> None:
    """New bytes over [offset, offset+length), then the old mtime back: same identity."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length))
        f.flush()
        os.fsync(f.fileno())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert FileIdentity.of(os.stat(path)) == FileIdentity.of(st)


def settled(env: Env) -> bool:
    return bool(env.completed() or actions(env.events, "upload.failed"))


def test_rewritten_mid_upload_is_hashed_again_and_sent_once(env_factory):
    # 12 slices, 4 at a time, ~16 s at 1.5 MB/s: the first progress event comes after about
    # 2 s; the last four slices are read from about 10 s on, so some are read after the
    # rewrite even when a loaded machine notices the progress event seconds late.
    env = env_factory(max_rate=1_500_000)
    f = drop(env.outbox / "forged.mp4", 12 * SLICE)
    first = md5(f)
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "upload.progress"), 60, what="the upload under way")
        rewrite_in_place(f, 0, 12 * SLICE)  # slices sent: old content; slices to come: new
        wait_for(lambda: settled(env), 120, what="the upload to finish or fail")
        d.stop()
    now = md5(f)
    assert now != first
    assert not actions(env.events, "upload.failed"), actions(env.events, "upload.failed")
    (entry,) = env.journal.entries()  # exactly one video, of the new content
    assert entry["md5"] == now
    (done,) = env.completed()
    assert done["vidupd.md5"] == now and done["vidupd.remote_id"] == entry["remote_id"]
    restarted = [e for e in actions(env.events, "upload.restarted") if e.get("vidupd.reason") == REASON]
    assert len(restarted) == 1 and restarted[0]["log.level"] == "warn"
    assert "hash" in restarted[0]["message"]
    started = actions(env.events, "upload.started")
    assert len(started) == 2 and started[1]["vidupd.attempt"] == 2  # the re-send counted as an attempt
    # the refused upload was cancelled on the platform, not left holding slices until it expires
    assert not actions(env.events, "upload.cancel_failed") and actions(env.events, "upload.abandoned")
    # (uploads.json holds live sessions only, saved within ~0.5 s: the committed one may or
    # may not be in it yet, the cancelled one must not be)
    sessions = json.loads((env.root / "sandbox" / "youku" / "uploads.json").read_text())["sessions"]
    assert set(sessions) <= {entry["upload_token"]}
    counts = env.box.counters()
    assert (counts["cancelled_slices"], counts["open_slices"], counts["committed_slices"]) == (1, 0, 1)


def test_vod_rewritten_mid_upload_is_not_completed_mixed(make_site):
    """OSS checks each part against its own CRC, so only the fingerprint can tell that the
    parts read after the rewrite belong to other content than those read before.

    A VOD file is fingerprinted before sending only when a twin is possible (vidupd.engine.prepare;
    a lone file is not read twice, and has no fingerprint to compare with): the ledger holds
    a finished job of the same size for the target, as after an earlier upload."""
    part = 1 << 20
    env = make_site(VodEnv, max_rate=2_000_000, target={"part_size": part})  # 24 parts, 4 at a time, ~12 s
    f = drop(env.outbox / "forged.mp4", 24 * part)
    first = md5(f)
    ledger = Ledger(env.state)
    (earlier,) = ledger.offer(env.root / "earlier.mp4", str(env.outbox), [("vod", "video")],
                              FileIdentity(0, 1, 24 * part, 1), Metadata(title="earlier"))
    ledger.apply(earlier.job_id, Completed("earlier-video", "video", content_id="crc64:0123456789abcdef"),
                 owner=None)
    ledger.close()
    with env.daemon() as d:
        wait_for(lambda: actions(env.events, "upload.progress"), 60, what="the upload under way")
        rewrite_in_place(f, 0, 24 * part)  # the parts sent are old content, the last ones will be new
        wait_for(lambda: settled(env), 120, what="the upload to finish or fail")
        d.stop()
    now = md5(f)
    assert now != first
    assert not actions(env.events, "upload.failed"), actions(env.events, "upload.failed")
    (entry,) = env.journal.entries()  # one completed object, all of it the new content, not a mix
    assert entry["md5"] == now
    (done,) = env.completed()
    assert done["vidupd.remote_id"] == entry["remote_id"]
    restarted = [e for e in actions(env.events, "upload.restarted") if e.get("vidupd.reason") == REASON]
    assert len(restarted) == 1


def test_retry_of_a_job_failed_for_content_hashes_again(env_factory):
    """A ledger as an older vidupd left it: failed at commit with the stale MD5 still stored."""
    env = env_factory()
    f = drop(env.outbox / "old.mp4", 3 * SLICE)
    stale = hashlib.md5(b"what the file held when an older vidupd hashed it").hexdigest()
    ledger = Ledger(env.state)
    (offer,) = ledger.offer(f, str(env.outbox), [("youku", "video")], FileIdentity.of(os.stat(f)),
                            Metadata(title=f.stem))
    (job,) = ledger.claim("old-vidupd", 1, 60)
    ledger.record_content(job.id, stale, False)
    ledger.apply(job.id, Failed(f"youku commit: HTTP 400, error 120010228 (UploadsException: assembled file MD5 "
                                f"{md5(f)} differs from file_md5 {stale})", "PermanentError"), owner=None)
    ledger.close()
    with env.daemon() as d:
        r = vidupd("retry", "-c", str(env.config), "--failed")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: settled(env), 60, what="the retried upload to finish or fail")
        d.stop()
    assert not actions(env.events, "upload.failed"), actions(env.events, "upload.failed")
    (entry,) = env.journal.entries()
    assert entry["md5"] == md5(f)
    assert env.completed()[0]["vidupd.job_id"] == offer.job_id
    # `retry` dropped the stale MD5, so the file was hashed before the first byte went out
    # (not sent under the old MD5 and refused at commit first)
    assert len(actions(env.events, "upload.started")) == 1 and not actions(env.events, "upload.restarted")

"""Unit tests for issue 8 point 9: the ledger's `ContentReset` outcome, `retry` dropping stale
fingerprints, and the Youku answers that mean "these bytes are not what you declared"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from provider_harness import MIB
from test_provider_aliyun_vod import Env as VodEnv

from vidupd.core.content import ContentHash, content_hash
from vidupd.core.errors import ContentMismatch, LeaseLost, PermanentError
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import ContentReset, Failed, Ledger
from vidupd.providers.youku.wire import _decode, _translate

META = Metadata(title="t")
OLD_MD5 = "0" * 32


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger(tmp_path / "state")
    yield led
    led.close()


def claimed_with_checkpoint(ledger: Ledger, tmp_path: Path, owner: str = "A") -> int:
    ledger.offer(tmp_path / "a.mp4", "/w", [("yk", "video")], FileIdentity(1, 2, 100, 5), META)
    (job,) = ledger.claim(owner, 1, 60)
    ledger.record_content(job.id, OLD_MD5, False)
    ledger.checkpoint(job.id).save({"upload_token": "t", "md5": OLD_MD5})
    ledger.progress(job.id, 60, 10.0, owner, 60)
    return job.id


def test_forget_content_drops_fingerprint_and_checkpoint_and_requeues_now(ledger: Ledger, tmp_path: Path):
    jid = claimed_with_checkpoint(ledger, tmp_path)
    event = ledger.apply(jid, ContentReset("slice MD5 x differs from hash y", max_attempts=5), owner="A")
    assert event is not None and event.action == "upload.restarted" and event.fields["attempt"] == 1
    job = ledger.get(jid)
    assert job is not None
    assert (job.state, job.md5, job.attempts, job.bytes_done, job.lease_owner) == ("queued", None, 1, 0, None)
    assert job.not_before == 0 and job.last_error == "slice MD5 x differs from hash y"
    assert ledger.checkpoint(jid).load() is None
    assert [j.id for j in ledger.claim("A", 5, 60)] == [jid]  # runnable at once, not held for the watcher


def test_forget_content_is_bounded_by_attempts(ledger: Ledger, tmp_path: Path):
    jid = claimed_with_checkpoint(ledger, tmp_path)
    for n in (1, 2):
        event = ledger.apply(jid, ContentReset("differs", max_attempts=3), owner="A")
        assert (event.action, event.fields["attempt"], ledger.get(jid).state) == ("upload.restarted", n, "queued")
        ledger.claim("A", 1, 60)
        ledger.record_content(jid, OLD_MD5, False)
    event = ledger.apply(jid, ContentReset("differs", max_attempts=3), owner="A")
    assert event.action == "upload.failed" and event.message.endswith("gave up after 3 attempts: differs")
    job = ledger.get(jid)
    assert job is not None and job.state == "failed" and job.md5 is None
    assert job.last_error == "gave up after 3 attempts: differs"


def test_forget_content_leaves_a_job_another_owner_holds(ledger: Ledger, tmp_path: Path):
    jid = claimed_with_checkpoint(ledger, tmp_path, owner="B")
    with pytest.raises(LeaseLost):  # refused, typed: the pool then drops the job quietly
        ledger.apply(jid, ContentReset("differs", max_attempts=5), owner="A")
    job = ledger.get(jid)
    assert job is not None and (job.state, job.md5, job.lease_owner) == ("uploading", OLD_MD5, "B")
    assert ledger.checkpoint(jid).load() is not None


def test_retry_hashes_again_but_keeps_the_checkpoint(ledger: Ledger, tmp_path: Path):
    jid = claimed_with_checkpoint(ledger, tmp_path)
    ledger.apply(jid, Failed("assembled file MD5 a differs from file_md5 b", "PermanentError"), owner=None)
    assert ledger.retry(failed=True) == 1
    job = ledger.get(jid)
    assert job is not None and (job.state, job.md5, job.attempts) == ("queued", None, 0)
    # kept: the provider resumes it only if it was made for the MD5 the new hash finds
    assert ledger.checkpoint(jid).load() == {"upload_token": "t", "md5": OLD_MD5}


@pytest.mark.parametrize(("body", "content"), [
    ('{"error": {"code": 120010226, "type": "UploadsException", "description": "slice MD5 a differs from hash b"}}',
     True),
    ('{"error": {"code": 120010228, "type": "UploadsException", "description": "assembled file MD5 a differs"}}',
     True),
    ('{"error": {"code": 120010225, "type": "UploadsException", "description": "slice task mismatch"}}', False),
])
def test_youku_content_answers_are_content_mismatch(body: str, content: bool):
    error = _translate("upload_slice", 400, {}, (_decode(body) or {}).get("error"), ())
    assert isinstance(error, PermanentError)  # never retried as the same bytes under the same digest
    assert isinstance(error, ContentMismatch) is content


def test_vod_stores_nothing_but_the_fingerprinted_content(tmp_path: Path):
    """OSS checks parts only against their own digests: the fingerprint is checked before
    PutObject (small file) and before CompleteMultipartUpload (4 parts)."""
    env = VodEnv(tmp_path)
    try:
        provider = env.provider()
        for name, size in (("small.mp4", MIB // 2), ("big.mp4", 4 * MIB)):
            path = env.file(name, size)
            job = env.job(path, job_id=size)
            stale = dataclasses.replace(job.request, content=ContentHash("crc64", "0123456789abcdef"))
            before = len(env.journal.entries())
            error = env.fails(ContentMismatch, lambda: provider.upload(stale, job.ctx))
            assert "crc64:0123456789abcdef" in str(error)
            assert len(env.journal.entries()) == before  # nothing completed: no video of the wrong content
            right = dataclasses.replace(stale, content=content_hash(path, stale.identity, "crc64"))
            job.checkpoint.clear()  # as ContentReset does
            provider.upload(right, job.ctx)
        assert len(env.journal.entries()) == 2
    finally:
        env.shutdown()

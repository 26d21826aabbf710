"""The takeover race (issue 13): host A, frozen past its lease, is continued while host B
resumes the same OSS multipart upload from the shared checkpoint. Whatever A does next must
not disturb B: before a call that changes the upload as a whole (CompleteMultipartUpload,
AbortMultipartUpload, a new InitiateMultipartUpload after a failed resume, Youku's commit)
the provider confirms the lease (`UploadContext.ensure_held`); a part A finishes late is
not recorded (the checkpoint save is fenced); a job whose lease was lost never goes through
cancel/abandon. A fake OSS bucket and a real SQLite ledger (two owners, as two hosts)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import oss2
import pytest
from provider_harness import write_file
from structlog.testing import capture_logs

from vidupd.core.errors import LeaseLost, UploadCancelled
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.source import SourceFile
from vidupd.core.throttle import Throttle
from vidupd.engine.abandon import abandon_upload, cancel_job
from vidupd.ledger import Ledger
from vidupd.providers.base import Provider
from vidupd.providers.features import Abandons
from vidupd.providers.oss.multipart import MIN_PART_SIZE, MultipartState, OssUploader

PART = MIN_PART_SIZE
RETRY = RetryPolicy(attempts=2, initial=0.01, maximum=0.02)


class FakeBucket:
    """Enough of oss2.Bucket for OssUploader: every call logged by name; `on_part(number)` runs
    after a part was stored; `gone`: ListParts answers NoSuchUpload."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.parts: dict[int, tuple[str, int]] = {}
        self.gone = False
        self.on_part: Callable[[int], None] = lambda n: None

    def init_multipart_upload(self, key: str) -> Any:
        self.calls.append("InitiateMultipartUpload")
        return SimpleNamespace(upload_id=f"U{len(self.calls)}")

    def upload_part(self, key: str, upload_id: str, number: int, body: Any) -> Any:
        data = b"".join(body)
        self.calls.append(f"UploadPart {number}")
        etag = hashlib.md5(data).hexdigest().upper()
        self.parts[number] = (etag, len(data))
        self.on_part(number)
        return SimpleNamespace(etag=etag, crc=None)

    def list_parts(self, key: str, upload_id: str, marker: Any = "", max_parts: int = 1000) -> Any:
        self.calls.append("ListParts")
        if self.gone:
            raise oss2.exceptions.NoSuchUpload(404, {}, b"", {"Code": "NoSuchUpload", "Message": "gone"})
        parts = [oss2.models.PartInfo(n, f'"{e}"', size=s) for n, (e, s) in sorted(self.parts.items())]
        return SimpleNamespace(parts=parts, is_truncated=False, next_marker="")

    def complete_multipart_upload(self, key: str, upload_id: str, infos: Any) -> Any:
        self.calls.append("CompleteMultipartUpload")
        return SimpleNamespace(crc=None)

    def head_object(self, key: str) -> Any:
        self.calls.append("HeadObject")
        raise oss2.exceptions.NotFound(404, {}, b"", {"Code": "NoSuchKey", "Message": "no"})


class FakeKeeper:
    def __init__(self, bucket: FakeBucket) -> None:
        self._bucket = bucket
        self.credentials = SimpleNamespace(key="obj")

    def bucket(self) -> tuple[Any, FakeBucket]:
        return self.credentials, self._bucket


def uploader(path: Path, bucket: FakeBucket, held: Callable[[], None]) -> OssUploader:
    src = SourceFile(path, FileIdentity.of(os.stat(path)), Throttle(None), threading.Event())
    return OssUploader(FakeKeeper(bucket), src, cancel=threading.Event(), retry=RETRY, note=lambda *a, **k: None,
                       progress=lambda n: None, concurrency=1, held=held)


def lost() -> None:
    raise LeaseLost(1, "host-a")


def test_a_lost_lease_never_completes_the_multipart_upload(tmp_path: Path):
    path = write_file(tmp_path / "v.mp4", 3 * PART)
    bucket = FakeBucket()
    with pytest.raises(LeaseLost):
        uploader(path, bucket, lost).multipart(None, PART, lambda state: None)
    assert "CompleteMultipartUpload" not in bucket.calls
    assert bucket.calls[:1] == ["InitiateMultipartUpload"]  # a fresh upload: saved (fenced) before any part


def test_the_lease_is_confirmed_before_every_try_of_complete(tmp_path: Path):
    path = write_file(tmp_path / "v.mp4", 2 * PART)
    bucket, asked = FakeBucket(), []
    uploader(path, bucket, lambda: asked.append(len(bucket.calls))).multipart(None, PART, lambda state: None)
    assert bucket.calls[-1] == "CompleteMultipartUpload" and asked == [len(bucket.calls) - 1]


def test_a_vanished_upload_is_not_initiated_again_by_a_host_that_lost_the_job(tmp_path: Path):
    """NoSuchUpload on A's resume: B may have completed (or replaced) it; A must not start another."""
    path = write_file(tmp_path / "v.mp4", 3 * PART)
    bucket = FakeBucket()
    bucket.gone = True
    saved = MultipartState("U-of-b", PART, ())
    with pytest.raises(LeaseLost):
        uploader(path, bucket, lost).multipart(saved, PART, lambda state: None)
    assert "InitiateMultipartUpload" not in bucket.calls and "CompleteMultipartUpload" not in bucket.calls


# -- through the ledger: two hosts on one job ------------------------------------------------------
def claimed(tmp_path: Path) -> tuple[Ledger, Any]:
    ledger = Ledger(tmp_path / "state")
    p = tmp_path / "v.mp4"
    if not p.exists():
        write_file(p, 3 * PART)
    ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata("v"))
    (job,) = ledger.claim("host-a", 1, 0.2)
    return ledger, job


def take_over(state: Path, job_id: int) -> tuple[Ledger, Any]:
    """Host B: A's lease ran out; B claims the job and resumes from the shared checkpoint."""
    b = Ledger(state)
    with b._tx() as db:
        db.execute("UPDATE jobs SET lease_until=0 WHERE id=?", (job_id,))
    (job,) = b.claim("host-b", 1, 3600)
    return b, job


def test_a_part_finished_after_the_takeover_is_not_recorded_and_complete_is_never_sent(tmp_path: Path):
    ledger, job = claimed(tmp_path)
    store = ledger.checkpoint(job.id, "host-a", job.lease_gen)
    bucket = FakeBucket()
    holder: list[Any] = []

    def frozen_after_part(number: int) -> None:  # A is stopped after its first part; B takes over
        if number == 1 and not holder:
            holder.append(take_over(tmp_path / "state", job.id))
            b, bjob = holder[0]
            b.checkpoint(bjob.id, "host-b", bjob.lease_gen).save({"by": "host-b"})

    bucket.on_part = frozen_after_part

    def save(state: MultipartState | None) -> None:
        store.save({"oss": state.to_json() if state else None})

    with pytest.raises(LeaseLost):
        uploader(tmp_path / "v.mp4", bucket, store.ensure_held).multipart(None, PART, save)
    b, _ = holder[0]
    assert b.checkpoint(job.id).load() == {"by": "host-b"}  # A's late part 1 was not written over B's state
    assert "CompleteMultipartUpload" not in bucket.calls and "UploadPart 2" not in bucket.calls
    b.close()
    ledger.close()


class Abandoning(Provider, Abandons):
    name = "abandoning"
    options = {}

    def __init__(self) -> None:
        super().__init__("t", {}, Path("/nonexistent"))
        self.abandoned: list[dict] = []

    def upload(self, request, ctx):
        raise AssertionError("not used")

    def abandon(self, checkpoint):
        self.abandoned.append(dict(checkpoint))
        return "aborted its OSS multipart upload"


def test_a_host_that_lost_the_job_never_abandons_its_platform_upload(tmp_path: Path):
    ledger, job = claimed(tmp_path)
    ledger.checkpoint(job.id, "host-a", job.lease_gen).save({"upload_id": "U1"})
    time.sleep(0.3)  # A's lease ran out (nobody took it yet): another host may at any moment
    prov = Abandoning()
    lease = dict(owner="host-a", generation=job.lease_gen)
    with pytest.raises(LeaseLost):
        abandon_upload(job, prov, ledger, lease, {}, "the file vanished")
    b, _ = take_over(tmp_path / "state", job.id)
    with pytest.raises(LeaseLost):
        cancel_job(job, prov, ledger, lease, {})
    assert prov.abandoned == [] and b.checkpoint(job.id).load() == {"upload_id": "U1"}
    assert b.get(job.id).state == "uploading"
    b.close()
    ledger.close()


class Stalling(Provider, Abandons):
    """Checkpoints, signals, then waits to be cancelled; abandon is recorded (and must not happen)."""

    name = "stalling"
    options = {}

    def __init__(self) -> None:
        super().__init__("t", {}, Path("/nonexistent"))
        self.started = threading.Event()
        self.abandoned: list[dict] = []

    def upload(self, request, ctx):
        ctx.checkpoint.save({"upload_id": "U1"})
        self.started.set()
        while not ctx.cancel.wait(0.01):
            pass
        raise UploadCancelled("stop")

    def abandon(self, checkpoint):
        self.abandoned.append(dict(checkpoint))
        return "aborted"


def test_an_operator_cancel_of_a_job_taken_over_meanwhile_does_not_abandon_it(tmp_path: Path):
    """The pool saw `vidupd cancel`, then its renewal said the job is B's: B's upload stays."""
    from vidupd.config import TargetConfig
    from vidupd.engine.after_upload import AfterUpload
    from vidupd.engine.pool import Pool, PoolSettings
    from vidupd.engine.stops import CANCEL

    ledger = Ledger(tmp_path / "state")
    p = write_file(tmp_path / "v.mp4", 1000)
    (o,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata("v"))
    prov = Stalling()
    pool = Pool(PoolSettings(workers=1, retry=RETRY, skip_duplicates=True, lease=0.4), ledger,
                {"t": TargetConfig("t", "stalling", {}, wait_ready=False, ready_timeout=60)}, {"t": prov},
                Throttle(None), "host-a:1:1", AfterUpload(ledger, dict))
    with capture_logs() as logs:
        pool.start()
        try:
            assert prov.started.wait(10)
            pool._stops.mark(o.job_id, CANCEL)  # seen, not yet acted on: the renewal comes first
            b = None
            for _ in range(100):
                with ledger._tx() as db:
                    db.execute("UPDATE jobs SET lease_until=0 WHERE id=?", (o.job_id,))
                other = Ledger(tmp_path / "state")
                if other.claim("host-b", 1, 3600):
                    b = other
                    break
                other.close()
            assert b is not None
            deadline = time.monotonic() + 10
            while not any(e.get("action") == "upload.lease_lost" for e in logs) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            pool.stop(timeout=5)
    assert prov.abandoned == [] and b.checkpoint(o.job_id).load() == {"upload_id": "U1"}
    assert b.get(o.job_id).lease_owner == "host-b" and b.get(o.job_id).state == "uploading"
    mine = [e["action"] for e in logs if e.get("job_id") == o.job_id]
    assert mine.count("upload.lease_lost") == 1 and "upload.cancelled" not in mine and "upload.abandoned" not in mine
    b.close()
    ledger.close()

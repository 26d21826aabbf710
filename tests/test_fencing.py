"""Fencing with real pools: a worker whose lease expired and was taken over by another
process on the same ledger file (a paused one-shot beside the daemon) cannot overwrite the
new holder. Two Ledger connections, one per owner, as two processes would have; the stale
worker runs in a real Pool with real threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import wait_for
from structlog.testing import capture_logs

from vidupd.config import TargetConfig
from vidupd.core.errors import UploadCancelled
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.throttle import Throttle
from vidupd.engine.after_upload import AfterUpload
from vidupd.engine.pool import Pool, PoolSettings
from vidupd.ledger import Ledger
from vidupd.providers.base import Provider, UploadResult


class Paused(Provider):
    """Saves a checkpoint, then stalls (a paused process) until `gate`; then, per `finish`,
    saves another checkpoint, or returns a result, or waits to be cancelled."""

    name = "paused"
    options = {}
    kinds = frozenset({"video"})

    def __init__(self, finish: str):
        super().__init__("t", {}, Path("/nonexistent"))
        self.finish = finish
        self.started = threading.Event()
        self.gate = threading.Event()
        self.cancelled = threading.Event()

    def upload(self, request, ctx):
        ctx.checkpoint.save({"by": "stale", "step": 1})
        self.started.set()
        if self.finish == "cancel":
            while not ctx.cancel.wait(0.02):
                pass
            self.cancelled.set()
            raise UploadCancelled("stop")
        assert self.gate.wait(10)
        if self.finish == "checkpoint":
            ctx.checkpoint.save({"by": "stale", "step": 2})
        return UploadResult("STALE-ID", "video")


def stale_pool(tmp_path: Path, provider: Provider, lease: float = 120.0) -> tuple[Ledger, Pool, int]:
    ledger = Ledger(tmp_path / "state")
    p = tmp_path / "a.mp4"
    p.write_bytes(b"x" * 1000)
    (o,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata("a"))
    settings = PoolSettings(workers=1, retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.05),
                            skip_duplicates=True,
                            request_retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02), lease=lease)
    targets = {"t": TargetConfig("t", "paused", {}, wait_ready=False, ready_timeout=60)}
    pool = Pool(settings, ledger, targets, {"t": provider}, Throttle(None), "stale:1:1", AfterUpload(ledger, dict))
    return ledger, pool, o.job_id


def take_over(state: Path, job_id: int) -> Ledger:
    """Another process: sees the stale worker's lease expired, claims the job, checkpoints."""
    other = Ledger(state)
    for _ in range(100):  # the stale pool may renew between our expiring and claiming
        with other._tx() as db:
            db.execute("UPDATE jobs SET lease_until=0 WHERE id=?", (job_id,))
        if other.claim("fresh:2:2", 1, 3600):
            break
    else:
        pytest.fail("could not take the job over")
    other.checkpoint(job_id).save({"by": "fresh"})
    return other


@pytest.mark.parametrize("finish", ["commit", "checkpoint"])
def test_stale_worker_cannot_overwrite_the_new_holder(tmp_path: Path, finish: str):
    prov = Paused(finish)
    ledger, pool, jid = stale_pool(tmp_path, prov)
    with capture_logs() as logs:
        pool.start()
        assert prov.started.wait(10)
        fresh = take_over(tmp_path / "state", jid)
        prov.gate.set()  # the paused worker wakes up and carries on
        wait_for(lambda: any(e.get("action") == "upload.lease_lost" for e in logs), 10)
        pool.stop(timeout=5)
    job = fresh.get(jid)
    assert job is not None and (job.state, job.lease_owner, job.remote_id) == ("uploading", "fresh:2:2", None)
    assert fresh.checkpoint(jid).load() == {"by": "fresh"}
    actions = [e.get("action") for e in logs if e.get("job_id") == jid]
    assert actions.count("upload.lease_lost") == 1
    assert not {"upload.completed", "upload.failed", "upload.retrying", "upload.interrupted"} & set(actions)
    fresh.close()
    ledger.close()


def test_renewal_finding_the_lease_lost_cancels_the_upload(tmp_path: Path):
    prov = Paused("cancel")
    ledger, pool, jid = stale_pool(tmp_path, prov, lease=0.4)  # renewals every 0.1 s
    with capture_logs() as logs:
        pool.start()
        assert prov.started.wait(10)
        fresh = take_over(tmp_path / "state", jid)
        assert prov.cancelled.wait(10)  # the stale upload stops sending
        wait_for(lambda: any(e.get("action") == "upload.lease_lost" for e in logs), 10)
        pool.stop(timeout=5)
    job = fresh.get(jid)
    assert job is not None and (job.state, job.lease_owner) == ("uploading", "fresh:2:2")
    assert fresh.checkpoint(jid).load() == {"by": "fresh"}
    assert [e.get("action") for e in logs if e.get("job_id") == jid].count("upload.lease_lost") == 1
    fresh.close()
    ledger.close()

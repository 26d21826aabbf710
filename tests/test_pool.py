"""The worker pool with scripted fake providers (unit level: real threads, real ledger)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import wait_for
from structlog.testing import capture_logs

from vidupd.config import TargetConfig
from vidupd.core.errors import CredentialsExpired, PermanentError, TransientError, UploadCancelled
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy, call_with_retry
from vidupd.core.throttle import Throttle
from vidupd.engine.after_upload import AfterUpload
from vidupd.engine.pool import Pool, PoolSettings
from vidupd.ledger import Ledger
from vidupd.providers.base import MediaStatus, Provider, UploadResult
from vidupd.providers.features import ReportsStatus


class Scripted(Provider):
    """Raises the scripted errors in order, then succeeds."""

    name = "scripted"
    options = {}
    kinds = frozenset({"video"})

    def __init__(self, script=(), ids=None, statuses=()):
        super().__init__("t", {}, Path("/nonexistent"))
        self.script = list(script)
        self.ids = list(ids or [])
        self.calls = 0
        self.statuses = list(statuses)
        self.block = threading.Event()

    def upload(self, request, ctx):
        self.calls += 1
        if self.script:
            err = self.script.pop(0)
            if err == "block":
                while not ctx.cancel.wait(0.05):
                    pass
                ctx.checkpoint.save({"offset": 5})
                raise UploadCancelled("stop")
            raise err
        with ctx.open_source(request) as src:
            data = src.read_at(0, request.size)
            ctx.progress(len(data))
        rid = self.ids.pop(0) if self.ids else f"id-{request.job_id}"
        return UploadResult(rid, "video")


class ScriptedWithStatus(ReportsStatus, Scripted):
    """Scripted, and the platform processes media: statuses are answered in order, then ready."""

    def media_status(self, remote_id, remote_kind):
        return self.statuses.pop(0) if self.statuses else MediaStatus("ready")


def setup(tmp_path: Path, provider: Provider, files: int = 1, attempts: int = 3, wait_ready=False, content=None):
    ledger = Ledger(tmp_path / "state")
    ids = []
    for i in range(files):
        p = tmp_path / f"f{i}.mp4"
        p.write_bytes(content[i] if content else f"content {i}".encode() * 100)
        (o,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata(p.stem))
        ids.append(o.job_id)
    settings = PoolSettings(workers=2, retry=RetryPolicy(attempts=attempts, initial=0.01, maximum=0.05),
                            skip_duplicates=True,
                            request_retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02),
                            poll_first=0.01, poll_max=0.02)
    targets = {"t": TargetConfig("t", "scripted", {}, wait_ready=wait_ready, ready_timeout=60)}
    pool = Pool(settings, ledger, targets, {"t": provider}, Throttle(None), "me", AfterUpload(ledger, dict))
    return ledger, pool, ids


def states(ledger: Ledger) -> list[str]:
    return [j.state for j in ledger.jobs()]


def test_transient_errors_retry_with_events_then_succeed(tmp_path):
    prov = Scripted([TransientError("503 busy"), CredentialsExpired("token expired")])
    ledger, pool, _ = setup(tmp_path, prov)
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: states(ledger) == ["done"], 10)
        pool.stop()
    retries = [e for e in logs if e.get("action") == "upload.retrying"]
    assert [r["attempt"] for r in retries] == [1, 2] and "503 busy" in retries[0]["event"]
    assert prov.calls == 3
    assert [e for e in logs if e.get("action") == "upload.completed"][0]["remote_id"] == "id-1"


def test_retries_are_bounded(tmp_path):
    prov = Scripted([TransientError("down")] * 10)
    ledger, pool, _ = setup(tmp_path, prov, attempts=3)
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: states(ledger) == ["failed"], 10)
        pool.stop()
    assert prov.calls == 3
    (failed,) = [e for e in logs if e.get("action") == "upload.failed"]
    assert "gave up after 3 attempts" in failed["event"] and failed["log_level"] == "error"


def test_permanent_error_fails_at_once(tmp_path):
    prov = Scripted([PermanentError("title too long")])
    ledger, pool, _ = setup(tmp_path, prov)
    pool.start()
    wait_for(lambda: states(ledger) == ["failed"], 10)
    pool.stop()
    assert prov.calls == 1 and ledger.jobs()[0].last_error == "title too long"


def test_duplicate_remote_id_marks_attention(tmp_path):
    prov = Scripted(ids=["SAME", "SAME"])
    ledger, pool, _ = setup(tmp_path, prov, files=2)
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: sorted(states(ledger)) == ["attention", "done"], 10)
        pool.stop()
    (dup,) = [e for e in logs if e.get("action") == "upload.duplicate_remote_id"]
    assert dup["log_level"] == "error" and dup["remote_id"] == "SAME"


def test_stop_cancels_and_keeps_checkpoint(tmp_path):
    prov = Scripted(["block"])
    ledger, pool, (jid,) = setup(tmp_path, prov)
    pool.start()
    wait_for(lambda: prov.calls == 1, 10)
    pool.stop(timeout=5)
    job = ledger.get(jid)
    assert job.state == "queued" and job.lease_owner is None
    assert ledger.checkpoint(jid).load() == {"offset": 5}


def test_status_polling_until_ready(tmp_path):
    prov = ScriptedWithStatus(statuses=[MediaStatus("pending", "Transcoding"), MediaStatus("pending", "Transcoding"),
                                        MediaStatus("ready")])
    ledger, pool, _ = setup(tmp_path, prov, wait_ready=True)
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: states(ledger) == ["done"], 10)
        pool.stop()
    acts = [e.get("action") for e in logs]
    assert acts.index("upload.completed") < acts.index("media.ready")


def test_status_polling_failure(tmp_path):
    prov = ScriptedWithStatus(statuses=[MediaStatus("failed", "TranscodeFail")])
    ledger, pool, _ = setup(tmp_path, prov, wait_ready=True)
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: states(ledger) == ["failed"], 10)
        pool.stop()
    assert any(e.get("action") == "media.failed" and "TranscodeFail" in e["event"] for e in logs)


def test_workers_bound_concurrency(tmp_path):
    active, peak = [0], [0]
    lock = threading.Lock()

    class Slow(Scripted):
        def upload(self, request, ctx):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return UploadResult(f"id-{request.job_id}", "video")

    ledger, pool, _ = setup(tmp_path, Slow(), files=8)
    pool.start()
    wait_for(lambda: states(ledger) == ["done"] * 8, 20)
    pool.stop()
    assert peak[0] == 2


def test_call_with_retry_backs_off_and_reraises():
    calls = []
    seen = []

    def flaky():
        calls.append(time.monotonic())
        raise TransientError("nope", retry_after=0.05)

    with pytest.raises(TransientError):
        call_with_retry(flaky, RetryPolicy(attempts=3, initial=0.001, maximum=1), threading.Event(),
                        on_retry=lambda n, e, w: seen.append((n, w)))
    assert len(calls) == 3 and [n for n, _ in seen] == [1, 2]
    assert all(w >= 0.05 for _, w in seen)  # the platform's hint lengthens the wait
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(UploadCancelled):
        call_with_retry(flaky, RetryPolicy(attempts=3, initial=1, maximum=1), cancel)


def test_throttle_caps_shared_rate():
    t = Throttle(2_000_000)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [t.take(100_000) for _ in range(20)]) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # 6 MB at 2 MB/s with one second of burst: at least ~2 s
    assert time.monotonic() - start >= 1.8

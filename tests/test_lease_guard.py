"""The lease guard (issue 13): a host whose renewals fail stops its uploads within one lease
period (at half of it), says so once per outage, claims nothing meanwhile, and leaves the
platform upload resumable (no cancel, no abandon, no attempt counted). Unit tests with a
fake clock and a fake ledger; then a real Pool on a SQLite ledger whose renewals fail."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from helpers import wait_for
from structlog.testing import capture_logs

from vidupd.config import TargetConfig
from vidupd.core.errors import UploadCancelled
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.throttle import Throttle
from vidupd.engine.after_upload import AfterUpload
from vidupd.engine.lease_guard import LeaseGuard
from vidupd.engine.pool import Pool, PoolSettings
from vidupd.engine.stops import CANCEL, LEASE, LOST, PAUSED, StopReasons
from vidupd.ledger import Ledger, LedgerUnavailable
from vidupd.providers.base import Provider
from vidupd.providers.features import Abandons


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLedger:
    """renew(ids): what a test set (`taken`, or `down` to raise LedgerUnavailable); every call logged."""

    def __init__(self) -> None:
        self.down = False
        self.taken: list[int] = []
        self.calls: list[list[int]] = []

    def renew(self, ids: list[int]) -> list[int]:
        self.calls.append(list(ids))
        if self.down:
            raise LedgerUnavailable("postgresql://db/vidupd: the ledger did not answer (timeout)")
        return [i for i in ids if i in self.taken]


def guard(lease: float = 120.0, held: tuple[int, ...] = (1, 2)):
    clock, ledger, lost, stops = Clock(), FakeLedger(), [], []
    g = LeaseGuard(lease, ledger.renew, lambda: list(held), lost.append, stops.append, clock=clock)
    return g, clock, ledger, lost, stops


def actions(logs, name):
    return [e for e in logs if e.get("action") == name]


def test_renewals_every_quarter_lease_keep_the_uploads_running():
    g, clock, ledger, lost, stops = guard()
    for _ in range(20):  # 10 minutes in 30 s steps
        clock.now += 30
        assert g.renew_due()
        g.renew_once()
        assert not g.renew_due() and not g.check()
    assert len(ledger.calls) == 20 and stops == [] and lost == [] and g.claims_ok()


def test_failing_renewals_stop_the_uploads_at_half_a_lease_and_say_so_once():
    g, clock, ledger, lost, stops = guard()
    with capture_logs() as logs:
        clock.now += 30
        g.renew_once()  # the last good one: sent at 1030
        ledger.down = True
        clock.now += 29
        assert not g.renew_due()
        clock.now += 1
        g.renew_once()  # the next one fails (1060)
        for _ in range(5):  # and is tried again every 5 s while down
            clock.now += 5
            assert g.renew_due()
            g.renew_once()
        assert not g.check()  # 55 s since the last good renewal: not yet
        assert not g.claims_ok() and not g.reachable
        clock.now = 1030 + 59.9
        assert not g.check() and stops == []
        clock.now = 1030 + 60
        assert g.check() and stops == [60.0]
        clock.now += 1
        assert g.check() and len(stops) == 2  # again while overdue: an upload started meanwhile stops too
    (down,) = actions(logs, "ledger.unreachable")  # one per outage, not one per try
    assert down["log_level"] == "warning" and down["error_type"] == "LedgerUnavailable"
    assert "timeout" in down["error"] and not actions(logs, "daemon.error")
    assert lost == []


def test_a_renewal_that_hangs_still_stops_the_uploads_in_time():
    """Time alone decides: a renewal stuck on a dead connection has not failed yet."""
    g, clock, ledger, lost, stops = guard(lease=10.0)
    clock.now += 2.5
    g.renew_once()
    clock.now += 2.4  # the next renewal would be due now, but it never returns
    assert not g.check()
    clock.now += 2.6  # 5 s = half the lease since the last good renewal was sent
    assert g.check() and stops == [5.0]
    assert not g.claims_ok()  # overdue: nothing new is claimed even before an error was seen


def test_the_ledger_answering_again_is_said_once_and_claims_resume():
    g, clock, ledger, lost, stops = guard()
    with capture_logs() as logs:
        ledger.down = True
        clock.now += 30
        g.renew_once()
        clock.now += 40
        g.renew_once()
        assert g.check() and not g.claims_ok()
        ledger.down = False
        clock.now += 5
        g.renew_once()
        assert g.claims_ok() and not g.check()
        clock.now += 5
        g.renew_once()
    assert len(actions(logs, "ledger.unreachable")) == 1
    (back,) = actions(logs, "ledger.reachable")
    assert back["down_seconds"] == 45.0  # from the first failure seen


def test_jobs_taken_over_are_reported_lost():
    g, clock, ledger, lost, stops = guard()
    ledger.taken = [2]
    clock.now += 30
    g.renew_once()
    assert lost == [2] and stops == []


def test_with_nothing_held_the_ledger_is_not_asked_unless_it_was_down():
    g, clock, ledger, lost, stops = guard(held=())
    clock.now += 30
    g.renew_once()
    assert ledger.calls == []
    g.failed(LedgerUnavailable("x: the ledger did not answer"))  # a claim failed
    clock.now += 5
    assert g.renew_due()
    g.renew_once()  # a probe (empty ids) finds it back
    assert ledger.calls == [[]] and g.claims_ok()


def test_a_lost_or_expiring_lease_wins_over_cancel_and_pause():
    stops = StopReasons()
    stops.mark(1, PAUSED)
    stops.mark(1, CANCEL)
    stops.mark(1, LEASE)
    stops.mark(1, CANCEL)
    assert stops.reason(1) == LEASE
    stops.mark(1, LOST)
    stops.mark(1, LEASE)
    assert stops.reason(1) == LOST


# -- a real pool whose ledger stops answering -------------------------------------------------------
class Sending(Provider, Abandons):
    """Sends until cancelled (checkpointing first); records whether anything was abandoned."""

    name = "sending"
    options = {}
    kinds = frozenset({"video"})

    def __init__(self) -> None:
        super().__init__("t", {}, Path("/nonexistent"))
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.abandoned: list[dict] = []

    def upload(self, request, ctx):
        ctx.checkpoint.save({"upload_id": "U1", "parts": [1]})
        self.started.set()
        while not ctx.cancel.wait(0.01):
            pass
        self.stopped.set()
        raise UploadCancelled("stopping between parts")

    def abandon(self, checkpoint):
        self.abandoned.append(dict(checkpoint))
        return "aborted"


def pool_on(tmp_path: Path, provider: Provider, lease: float) -> tuple[Ledger, Pool, int]:
    ledger = Ledger(tmp_path / "state")
    p = tmp_path / "a.mp4"
    p.write_bytes(b"x" * 1000)
    (o,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata("a"))
    settings = PoolSettings(workers=2, retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.05),
                            skip_duplicates=True, lease=lease)
    targets = {"t": TargetConfig("t", "sending", {}, wait_ready=False, ready_timeout=60)}
    pool = Pool(settings, ledger, targets, {"t": provider}, Throttle(None), "host-a:1:1", AfterUpload(ledger, dict))
    return ledger, pool, o.job_id


@contextmanager
def stopping(pool: Pool) -> Iterator[None]:
    try:
        yield
    finally:
        pool.stop(timeout=5)  # a failed assertion must not leave its threads running into the next test


def test_a_pool_cut_off_from_the_ledger_stops_its_uploads_resumably(tmp_path: Path, monkeypatch):
    prov = Sending()
    ledger, pool, jid = pool_on(tmp_path, prov, lease=2.0)
    with capture_logs() as logs, stopping(pool):
        pool.start()
        assert prov.started.wait(10)
        pool._stops.mark(jid, CANCEL)  # even an operator's cancel must not abandon once the lease is in doubt
        claims: list[float] = []

        def unreachable(*a, **k):
            claims.append(1.0)
            raise LedgerUnavailable("postgresql://db/vidupd: the ledger did not answer (timeout)")

        monkeypatch.setattr(ledger, "renew", unreachable)
        monkeypatch.setattr(ledger, "claim", unreachable)
        monkeypatch.setattr(ledger, "progress", unreachable)
        monkeypatch.setattr(ledger, "next_wakeup", unreachable)
        monkeypatch.setattr(ledger, "check_writable", unreachable)  # the probe of a ledger that failed
        assert prov.stopped.wait(5)  # half the lease (1 s) after the last good renewal
        wait_for(lambda: pool.busy == 0, 5)
        monkeypatch.setattr(ledger, "apply", unreachable)  # the Interrupted write was tried: now nothing works
        tries = len(claims)
        threading.Event().wait(1.5)
        assert len(claims) - tries <= 4  # no flood: one try (a probe) per lease/4 (0.5 s here), no claims
        pool.stop(timeout=5)
    job = ledger.get(jid)
    assert prov.abandoned == [] and ledger.checkpoint(jid).load() == {"upload_id": "U1", "parts": [1]}
    assert job.attempts == 0 and job.state in ("queued", "uploading")
    mine = [e["action"] for e in logs if e.get("job_id") == jid]
    assert mine.count("upload.lease_expiring") == 1
    assert not {"upload.cancelled", "upload.abandoned", "upload.failed", "upload.retrying"} & set(mine)
    assert len(actions(logs, "ledger.unreachable")) == 1 and not actions(logs, "daemon.error")
    ledger.close()


def test_a_pool_does_not_claim_while_the_ledger_is_down_and_says_so_once(tmp_path: Path, monkeypatch):
    prov = Sending()
    ledger, pool, jid = pool_on(tmp_path, prov, lease=2.0)
    real_claim = ledger.claim
    down = threading.Event()
    down.set()
    tries: list[int] = []

    def claim(*a, **k):
        tries.append(1)
        if down.is_set():
            raise LedgerUnavailable("postgresql://db/vidupd: cannot open the ledger (connection refused)")
        return real_claim(*a, **k)

    monkeypatch.setattr(ledger, "claim", claim)
    probe = ledger.check_writable  # the probe: a small write (a full disk still answers reads)
    monkeypatch.setattr(ledger, "check_writable", lambda: (_ for _ in ()).throw(
        LedgerUnavailable("x: the ledger did not answer")) if down.is_set() else probe())
    with capture_logs() as logs, stopping(pool):
        pool.start()
        threading.Event().wait(2.0)
        assert not prov.started.is_set() and len(tries) <= 2  # one failed claim, then the guard holds claims
        down.clear()
        assert prov.started.wait(10)  # the probe found it back, claims resumed
        pool.stop(timeout=5)
    assert len(actions(logs, "ledger.unreachable")) == 1 and len(actions(logs, "ledger.reachable")) == 1
    assert not actions(logs, "daemon.error")
    ledger.close()

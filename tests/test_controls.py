"""The pause set stored in the ledger (vidupd.service.controls) and the control commands'
exit codes and messages (pause, resume, cancel, forget), without a daemon."""

from __future__ import annotations

from pathlib import Path

from helpers import vidupd

from vidupd.core.model import FileIdentity, Metadata
from vidupd.engine.stops import CANCEL, PAUSED, PauseScope, StopReasons
from vidupd.ledger import Completed, Ledger, LedgerShared
from vidupd.service.controls import PAUSE_KEY, PauseSet, change_pause, load_pause, pause_now


def test_pause_set_round_trips_and_says_what_it_covers():
    s = PauseSet().paused("target", "youku", "me@h", 10.0).paused("watch", "/srv/outbox", "you@h", 11.0)
    assert s.paused("target", "youku", "other@h", 99.0) == s  # the first pause's since and by stay
    back = PauseSet.from_json(s.to_json())
    assert back == s and back.describe() == "youku, /srv/outbox" and not back.everything
    assert back.covers("youku", None) and back.covers("vod", "/srv/outbox") and not back.covers("vod", "/x")
    assert back.resumed("target", "youku").names() == ["/srv/outbox"] and back.resumed(None) == PauseSet()
    assert PauseSet().paused("all", "", "me@h", 1.0).covers("vod", None)
    for junk in (None, [], {"all": 3, "targets": ["youku"], "watches": {"/w": "x"}}):
        assert PauseSet.from_json(junk) == PauseSet()  # malformed: not paused, never a crash


def test_pause_is_stored_in_the_ledger_shared_table_and_survives_reopening(tmp_path: Path):
    ledger = Ledger(tmp_path)
    change_pause(LedgerShared(ledger), pause_now("target", "vod"))
    ledger.close()
    again = Ledger(tmp_path, readonly=True)
    assert load_pause(LedgerShared(again)).targets == {"vod"}
    assert again.shared_get(PAUSE_KEY).data["targets"]["vod"]["by"]
    again.close()


def test_stop_reasons_cancel_wins_over_pause():
    reasons = StopReasons()
    reasons.mark(1, PAUSED)
    reasons.mark(1, CANCEL)
    reasons.mark(1, PAUSED)
    reasons.mark(2, PAUSED)
    assert (reasons.reason(1), reasons.reason(2), reasons.reason(3)) == (CANCEL, PAUSED, None)
    reasons.forget(1)
    assert reasons.reason(1) is None
    scope = PauseScope.of(False, ["yk"], ["/w"])
    assert scope.targets == {"yk"} and not scope.everything


def test_control_commands_exit_codes_and_messages(site):
    cfg = str(site.write())
    assert vidupd("pause", "-c", cfg, "--target", "nope").returncode == 2
    r = vidupd("pause", "-c", cfg, "--watch", str(site.root / "elsewhere"))
    assert r.returncode == 2 and "no watch of" in r.stderr
    r = vidupd("pause", "-c", cfg, "--target", "arch", "--watch", str(site.outbox))
    assert r.returncode == 0 and f"paused: arch, {site.outbox}" in r.stdout
    assert vidupd("status", "-c", cfg).stdout.startswith(f"paused: arch, {site.outbox}")
    one = site.root / "one.mp4"
    one.write_bytes(b"x" * 1000)
    r = vidupd("upload", "-c", cfg, "--target", "arch", "--no-progress", str(one))  # a one-shot exits, says why
    assert r.returncode == 1 and "arch: paused (this target" in r.stderr and not list(site.dest.iterdir())
    r = vidupd("resume", "-c", cfg, "--target", "arch")
    assert r.returncode == 0 and f"still paused: {site.outbox}" in r.stdout
    assert "nothing is paused" in vidupd("resume", "-c", cfg).stdout
    for args in (("cancel",), ("forget", "1.5")):
        assert vidupd(*args, "-c", cfg).returncode == 2
    ledger = Ledger(site.state)
    ident = FileIdentity(1, 2, 3, 4)
    (done,) = ledger.offer(site.outbox / "a.mp4", str(site.outbox), [("arch", "video")], ident, Metadata("a"))
    ledger.apply(done.job_id, Completed("R1", "video"), owner=None)
    ledger.close()
    r = vidupd("cancel", "-c", cfg, str(done.job_id), "42")
    assert r.returncode == 1 and "job 42: no such job" in r.stderr and "already uploaded to arch as R1" in r.stderr
    r = vidupd("forget", "-c", cfg, "42")
    assert r.returncode == 1 and "job 42: no such job" in r.stderr
    r = vidupd("forget", "-c", cfg, str(done.job_id))
    assert r.returncode == 0 and f"job {done.job_id}: forgotten" in r.stdout
    assert "offered again at the next rescan" in " ".join(vidupd("forget", "--help").stdout.split())

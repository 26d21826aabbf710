"""Reload pieces at unit level: the plan (what changes, what is refused), the watcher taking
new and dropping old watches, the pool taking new settings without dropping running jobs.
The whole reload through SIGHUP on the real daemon is in test_systemd.py."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from helpers import wait_for, write_config

from vidupd import config as config_mod
from vidupd.config import TargetConfig, WatchConfig
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.throttle import Throttle
from vidupd.engine.after_upload import AfterUpload
from vidupd.engine.pool import Pool, PoolSettings
from vidupd.intake.watcher import Watcher
from vidupd.ledger import Ledger
from vidupd.providers.base import Provider, UploadResult
from vidupd.service.reload import plan


def _config(tmp_path: Path, name: str = "a.toml", **over):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in2").mkdir(exist_ok=True)
    top = {"state_dir": str(tmp_path / "state"), "workers": 2, **over.pop("top", {})}
    targets = over.pop("targets", {"arch": {"provider": "directory", "dest": str(tmp_path / "dest")}})
    watches = over.pop("watches", [{"path": str(tmp_path / "in"), "targets": ["arch"]}])
    return config_mod.load(write_config(tmp_path / name, top, targets, watches, over.pop("log", {"level": "info"})))


def test_plan_lists_changes_and_refuses_a_new_state_dir(tmp_path):
    old = _config(tmp_path)
    same = _config(tmp_path, "b.toml")
    assert plan(old, same).changes == () and plan(old, same).problems == ()
    assert plan(old, same).keep_providers == {"arch"}

    new = _config(tmp_path, "c.toml", top={"workers": 4, "max_rate": "1M"},
                  targets={"arch": {"provider": "directory", "dest": str(tmp_path / "dest2")},
                           "null": {"provider": "null"}},
                  watches=[{"path": str(tmp_path / "in2"), "targets": ["null"]}], log={"level": "debug"})
    p = plan(old, new)
    assert p.problems == ()
    assert set(p.changes) == {"workers 2 -> 4", "max_rate None -> 1M", "log.level info -> debug",
                              "target added: null", "target changed: arch",
                              f"watch added: {tmp_path / 'in2'}", f"watch removed: {tmp_path / 'in'}"}
    assert p.targets_added == ("null",) and p.targets_changed == ("arch",) and p.keep_providers == frozenset()

    moved = _config(tmp_path, "d.toml", top={"state_dir": str(tmp_path / "other")})
    (problem,) = plan(old, moved).problems
    assert "state_dir" in problem and "restart" in problem


def test_watcher_set_watches_adds_and_removes_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    wa = WatchConfig(path=a, targets=("t",), settle_seconds=0.2)
    wb = WatchConfig(path=b, targets=("t",), settle_seconds=0.2)
    ready: list[tuple[Path, WatchConfig]] = []  # a rescan reports known files again: the ledger dedupes
    watcher = Watcher((wa,), 3600, lambda batch: ready.extend((p, w) for p, w, _ in batch), lambda r: None, tick=0.05)

    def seen(path: Path) -> list[WatchConfig]:
        return [w for p, w in ready if p == path]

    watcher.start()
    try:
        (a / "1.mp4").write_bytes(b"1")
        wait_for(lambda: seen(a / "1.mp4"), 10, what="file in the first watch")
        watcher.set_watches((wa, wb))
        (b / "2.mp4").write_bytes(b"2")
        assert wait_for(lambda: seen(b / "2.mp4"), 10, what="file in the added watch") == [wb]
        wb2 = dataclasses.replace(wb, targets=("t", "u"))
        watcher.set_watches((wb2,))  # a removed, b changed
        (a / "3.mp4").write_bytes(b"3")
        (b / "4.mp4").write_bytes(b"4")
        assert wait_for(lambda: seen(b / "4.mp4"), 10, what="file in the changed watch") == [wb2]
        time.sleep(0.5)
        assert not seen(a / "3.mp4")  # nothing from the removed watch
        assert watcher.alive and len(watcher._observers) == 1
    finally:
        watcher.stop()
    assert not watcher.alive


class Gate(Provider):
    """Holds every upload until `gate` is set."""

    name = "gate"
    options = {}
    kinds = frozenset({"video"})

    def __init__(self):
        super().__init__("t", {}, Path("/nonexistent"))
        self.gate = threading.Event()
        self.running = threading.Event()

    def upload(self, request, ctx):
        self.running.set()
        self.gate.wait(10)
        ctx.progress(request.size)
        return UploadResult(f"id-{request.job_id}", "video")


def test_pool_reconfigure_keeps_running_jobs_of_a_removed_target(tmp_path):
    ledger = Ledger(tmp_path / "state")

    def offer(name: str) -> int:
        p = tmp_path / name
        p.write_bytes(name.encode() * 100)
        (o,) = ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata(p.stem))
        return o.job_id

    first = offer("a.mp4")
    settings = PoolSettings(workers=1, retry=RetryPolicy(attempts=1, initial=0.01, maximum=0.02),
                            skip_duplicates=False)
    provider = Gate()
    targets = {"t": TargetConfig("t", "gate", {}, wait_ready=False)}
    pool = Pool(settings, ledger, targets, {"t": provider}, Throttle(None), "me", AfterUpload(ledger, dict))
    pool.start()
    try:
        assert provider.running.wait(10)
        pool.reconfigure(dataclasses.replace(settings, workers=3), {}, {})  # target t removed, more workers
        assert pool.settings.workers == 3 and pool._executor._max_workers == 3
        provider.gate.set()
        wait_for(lambda: ledger.get(first).state == "done", 10, what="the running upload finished")
        assert ledger.get(first).remote_id == f"id-{first}"
        later = offer("b.mp4")
        wait_for(lambda: ledger.get(later).state == "failed", 10, what="a new job of the removed target")
        assert "not configured any more" in ledger.get(later).last_error
    finally:
        pool.stop(timeout=5)
        ledger.close()


def test_plan_names_the_service_keys_of_issue_11(tmp_path):
    old = _config(tmp_path)
    new = _config(tmp_path, "e.toml", top={"retain_days": 7, "order": "smallest"},
                  log={"level": "info", "format": "json"})
    new = dataclasses.replace(new, metrics_listen="127.0.0.1:9464",
                              notify=(config_mod.model.NotifyConfig(url="http://127.0.0.1:1/h"),))
    assert set(plan(old, new).changes) == {"retain_days 90.0 -> 7.0", "order oldest -> smallest",
                                           "log.format auto -> json",
                                           "metrics.listen None -> 127.0.0.1:9464 (at the next start)",
                                           "notify changed (at the next start)"}

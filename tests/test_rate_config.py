"""max_rate in the config (issue 12): the forms people write, timetables and per-target caps
are accepted; what the status, `vidupd limit` and the governor make of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import vidupd, write_config

from vidupd.config import load
from vidupd.core.throttle import Throttle
from vidupd.service.bandwidth import RateGovernor, in_force
from vidupd.service.rate_override import RateOverride, load_rate_override, set_rate_override


def _config(root: Path, top: dict, target: dict | None = None) -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    (root / "dest").mkdir(exist_ok=True)
    return write_config(root / "c.toml", {"state_dir": str(root / "state"), **top},
                        {"arch": {"provider": "directory", "dest": str(root / "dest"), **(target or {})}},
                        [{"path": str(root / "outbox"), "targets": ["arch"]}])


@pytest.mark.parametrize("value, at_noon", [
    ("10MB/s", 10_000_000), ("off", None), ("80Mbit/s", 10_000_000), ("10MiB/s", 10 * 2**20), ("10M", 10_000_000),
    (2_000_000, 2_000_000), ("08:00,10M 12:00,off Mon-08:00,5M", None), ("00:00,1M 11:00,2M", 2_000_000),
])
def test_max_rate_forms_are_accepted(tmp_path, value, at_noon):
    path = _config(tmp_path, {"max_rate": value}, {"max_rate": value})
    out = vidupd("check-config", "-c", str(path))
    assert out.returncode == 0, out.stderr
    cfg = load(path)
    noon = time.mktime((2026, 12, 2, 12, 30, 0, 0, 0, -1))  # a Wednesday
    assert cfg.max_rate.rate_at(noon) == at_noon and cfg.targets["arch"].max_rate.rate_at(noon) == at_noon


@pytest.mark.parametrize("top, target, key", [
    ({"max_rate": "fast"}, None, "max_rate"),
    ({"max_rate": "08:00,10M Xyz-09:00,1M"}, None, "max_rate"),
    ({}, {"max_rate": "10 parsecs"}, "targets.arch.max_rate"),
])
def test_garbage_is_refused_naming_the_key(tmp_path, top, target, key):
    path = _config(tmp_path, top, target)
    out = vidupd("check-config", "-c", str(path))
    assert out.returncode == 2 and f"{path}: {key}: " in out.stderr, out.stderr


class Store:
    """A SharedStore in memory (the ledger's is LedgerShared)."""

    def __init__(self) -> None:
        self.values: dict = {}

    def load(self, key):
        return self.values.get(key)

    def update(self, key, change):
        from vidupd.core.model import SharedValue

        current = self.values.get(key)
        new = change(current)
        if new is not None:
            self.values[key] = SharedValue((current.generation if current else 0) + 1, dict(new))
        return self.values.get(key)


def test_the_governor_follows_limit_expiry_and_target_caps(tmp_path):
    cfg = load(_config(tmp_path, {"max_rate": "3M"}, {"max_rate": "1MiB/s"}))
    throttle, store = Throttle(None), Store()
    gov = RateGovernor(throttle, store, cfg)
    assert throttle.rate == 3_000_000 and throttle.child("arch").rate == 2**20
    assert gov.tick() is None  # nothing changed
    now = time.time()
    set_rate_override(store, 1_000_000, 5, now=now)
    change = gov.tick(now + 1)
    assert change is not None and (change.now.rate, change.reason) == (1_000_000, "limit")
    assert throttle.rate == 1_000_000 and "vidupd limit until" in change.now.source
    change = gov.tick(now + 6)
    assert (change.now.rate, change.reason, change.now.source) == (3_000_000, "expired", "config")
    set_rate_override(store, None, None, now=now + 7)  # `vidupd limit off`: no cap until cleared
    change = gov.tick(now + 8)
    assert change.now.rate is None and throttle.rate == 0 and change.reason == "limit"
    from vidupd.service.rate_override import clear_rate_override

    clear_rate_override(store)
    change = gov.tick(now + 9)
    assert (change.now.rate, change.reason) == (3_000_000, "limit")  # cleared by hand
    assert load_rate_override(store) is None


def test_a_reload_that_changes_the_rate_says_so(tmp_path):
    throttle, store = Throttle(None), Store()
    gov = RateGovernor(throttle, store, load(_config(tmp_path, {"max_rate": "3M"})))
    change = gov.reconfigure(load(_config(tmp_path, {"max_rate": "5M"})))
    assert (change.now.rate, change.reason) == (5_000_000, "reload") and throttle.rate == 5_000_000


def test_the_override_is_plain_data_and_ends():
    o = RateOverride(1_000_000, 100.0, 90.0, "ops@host")
    assert RateOverride.from_data(o.as_data()) == o and o.active(99.0) and not o.active(100.0)
    assert in_force(None, o, 101.0).reason == "config" and in_force(None, o, 95.0).rate == 1_000_000


def test_status_json_shows_the_cap_and_its_source(tmp_path):
    path = _config(tmp_path, {"max_rate": "2M"})
    assert vidupd("limit", "-c", str(path)).stdout.startswith("in force: 2.0 MB/s (config)")
    out = vidupd("limit", "-c", str(path), "off", "--for", "2h")
    assert out.returncode == 0 and "no cap until" in out.stdout, out.stderr
    status = json.loads(vidupd("status", "-c", str(path), "--json").stdout)
    assert status["max_rate"] is None and status["max_rate_source"]["reason"] == "limit"
    assert status["max_rate_source"]["until"].endswith("Z")
    head = vidupd("status", "-c", str(path)).stdout
    assert "max_rate no cap (vidupd limit until" in head, head
    assert vidupd("limit", "-c", str(path), "--clear").returncode == 0
    status = json.loads(vidupd("status", "-c", str(path), "--json").stdout)
    assert status["max_rate"] == 2_000_000 and status["max_rate_source"]["reason"] == "config"
    bad = vidupd("limit", "-c", str(path), "ten")
    assert bad.returncode == 2 and "limit: RATE: 'ten'" in bad.stderr
    zero = vidupd("limit", "-c", str(path), "1M", "--for", "0s")
    assert zero.returncode == 2 and "limit: --for: must be more than 0 seconds" in zero.stderr

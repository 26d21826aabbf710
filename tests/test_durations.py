"""Durations with units (issue 12, point 6): every config key in seconds (and retain_days, in
days) takes "10s", "2m", "1h30m", "90d" as well as a bare number, through one parser
(core.units.parse_duration); garbage is refused naming the key. `status --since` reads the
same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import vidupd, write_config

from vidupd import providers
from vidupd.config import ConfigError, load
from vidupd.config.options import SECTIONS
from vidupd.core.units import DAY, parse_duration
from vidupd.providers.base import option_value

# Every key the config takes in seconds or days today; a new one must be a duration too.
EXPECTED = {"rescan_interval", "stop_timeout", "retain_days", "retry.initial_backoff", "retry.max_backoff",
            "notify.timeout", "watch.settle_seconds", "watch.poll_interval", "targets.ready_timeout",
            "ledger.lease", "youku.confirm_wait", "youku.confirm_timeout", "youku.request_timeout", "aliyun-vod.request_timeout"}


def duration_keys() -> set[str]:
    keys = {f"{s.key}.{k}" if s.key else k for s in SECTIONS for k, o in s.options.items() if o.duration}
    for name in providers.names():
        keys |= {f"{name}.{k}" for k, o in providers.provider_class(name).options.items() if o.duration}
    return keys


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10), ("2m", 120), ("1h30m", 5400), ("1h 30m", 5400), ("1.5h", 5400), ("90d", 90 * 86400),
    ("1w", 604800), ("500ms", 0.5), ("10", 10), ("2.5", 2.5), ("5 minutes", 300), (12, 12), (0.25, 0.25),
])
def test_parse_duration_reads_what_people_write(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "1h30", "-5s", "s", "1..5m"])
def test_parse_duration_refuses_garbage_saying_so(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_bare_number_is_in_the_keys_own_unit():
    assert parse_duration("90", DAY) == parse_duration("90d") == 90 * DAY


def test_every_seconds_key_is_a_duration():
    assert duration_keys() == EXPECTED


def _config(tmp_path: Path, top: dict | None = None, watch: dict | None = None, target: dict | None = None,
            extra: str = "") -> Path:
    (tmp_path / "outbox").mkdir(exist_ok=True)
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), **(top or {})},
                       {"yk": {"provider": "youku", "client_id": "c", "access_token": "t", **(target or {})},
                        "vod": {"provider": "aliyun-vod", "access_key_id": "k", "access_key_secret": "s",
                                "request_timeout": "45s"}},
                       [{"path": str(tmp_path / "outbox"), "targets": ["yk"], **(watch or {})}])
    with cfg.open("a") as f:
        f.write(extra)
    cfg.chmod(0o600)
    return cfg


def test_every_duration_key_takes_units(tmp_path: Path):
    cfg = load(_config(
        tmp_path, top={"rescan_interval": "5m", "stop_timeout": "1m30s", "retain_days": "12h"},
        watch={"settle_seconds": "2.5s", "poll_interval": "1m"},
        target={"ready_timeout": "2h", "confirm_wait": "30s", "confirm_timeout": "1h30m", "request_timeout": "2m"},
        extra='[retry]\ninitial_backoff = "500ms"\nmax_backoff = "10m"\n'
              '[[notify]]\nurl = "http://127.0.0.1:9/x"\ntimeout = "15s"\n'))
    assert (cfg.rescan_interval, cfg.stop_timeout, cfg.retain_days) == (300, 90, 0.5)
    assert (cfg.watches[0].settle_seconds, cfg.watches[0].poll_interval) == (2.5, 60)
    assert (cfg.retry.initial, cfg.retry.maximum, cfg.notify[0].timeout) == (0.5, 600, 15)
    yk = cfg.targets["yk"]
    assert yk.ready_timeout == 7200
    assert (yk.settings["confirm_wait"], yk.settings["confirm_timeout"], yk.settings["request_timeout"]) == (30, 5400, 120)
    assert cfg.targets["vod"].settings["request_timeout"] == 45
    plain = load(_config(tmp_path, top={"rescan_interval": 60, "retain_days": 30}, watch={"settle_seconds": 3}))
    assert (plain.rescan_interval, plain.retain_days, plain.watches[0].settle_seconds) == (60, 30, 3)  # numbers: as before


def test_a_duration_a_provider_gets_from_elsewhere_is_read_the_same_way():
    spec = providers.provider_class("youku").options
    assert option_value("youku", spec, {"request_timeout": "90s"}, "request_timeout") == 90


@pytest.mark.parametrize("where, key, value", [
    ("watch", "watch[0].settle_seconds", "soon"),
    ("top", "stop_timeout", "1h30"),
    ("top", "retain_days", "forever"),
    ("target", "targets.yk.request_timeout", "10 parsecs"),
])
def test_a_bad_duration_is_refused_naming_the_key_and_the_value(tmp_path: Path, where, key, value):
    name = key.rsplit(".", 1)[-1]
    cfg = _config(tmp_path, **{where: {name: value}})
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{cfg}: {key}: not a duration: {value!r}" in out.stderr, out.stderr


def test_range_still_applies_after_units(tmp_path: Path):
    with pytest.raises(ConfigError) as e:
        load(_config(tmp_path, top={"stop_timeout": "2h"}))
    assert [str(p) for p in e.value.problems] == [f"{tmp_path / 'vidupd.toml'}: stop_timeout: must be at most 3600, not '2h' (7200 s)"]


def test_status_since_takes_the_same_durations(tmp_path: Path):
    from vidupd.cli.status_view import since_seconds

    assert since_seconds("1h30m") == 5400 and since_seconds("90") == 90
    cfg = _config(tmp_path)
    out = vidupd("status", "-c", str(cfg), "--since", "1h30m")
    assert out.returncode == 0, out.stderr
    bad = vidupd("status", "-c", str(cfg), "--since", "yesterday")
    assert bad.returncode == 2 and "not a duration: 'yesterday'" in bad.stderr, bad.stderr

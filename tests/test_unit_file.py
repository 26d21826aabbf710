"""systemd/vidupd.service: `systemd-analyze verify` is clean, `systemd-analyze security`
rates it 2.0 or lower, it agrees with the daemon and the example config, and its reload
checks the config (the one ExecStart uses) before signalling.
The logrotate snippet passes `logrotate` itself, when it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNIT = ROOT / "systemd" / "vidupd.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart= pointing at this checkout's vidupd.

    verify checks that ExecStart's binary exists and is executable; /usr/local/bin/vidupd is
    where the README installs it, which a development machine does not have. Everything
    else is verified as shipped. (verify does not look up User=, so the missing `vidupd`
    user needs no filtering.)"""
    exe = Path(sys.executable).parent / "vidupd"
    if not exe.exists():
        exe = tmp_path / "vidupd"
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m vidupd \"$@\"\n")
        exe.chmod(0o755)
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/vidupd run\n" in text and "ExecReload=/usr/local/bin/vidupd check-config\n" in text
    copy = tmp_path / "vidupd.service"
    copy.write_text(text.replace("/usr/local/bin/vidupd", str(exe)))
    return copy


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    unit = local_copy(tmp_path)
    out = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_2():
    out = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "SYSTEMD_COLORS": "0"})
    text = out.stdout + out.stderr
    m = re.search(r"Overall exposure level for vidupd\.service: (\d+\.\d+)", text)
    assert m, text
    assert float(m.group(1)) <= 2.0, text


def test_unit_matches_the_daemon_and_the_example_config():
    from vidupd.service.daemon import STOP_TIMEOUT, STUCK_AFTER

    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    # reload: check the config first (a bad one fails `systemctl reload`), then signal
    assert d["ExecReload"] == ["/usr/local/bin/vidupd check-config", "/bin/kill -HUP $MAINPID"]
    # both read the config ExecStart's run reads: the one in $VIDUPD_CONFIG, named once
    assert d["Environment"] == ["VIDUPD_CONFIG=/etc/vidupd/vidupd.toml"]
    assert "-c" not in one["ExecStart"].split() and one["ExecStart"].endswith(" run")
    assert one["Restart"] == "on-failure" and one["RestartPreventExitStatus"] == "2"  # config error: no loop
    assert one["User"] == "vidupd" and one["StateDirectory"] == "vidupd" and one["LogsDirectory"] == "vidupd"
    # running uploads get STOP_TIMEOUT to checkpoint, threads are joined after: systemd must wait longer
    assert seconds(one["TimeoutStopSec"]) >= STOP_TIMEOUT + 20
    assert 10 <= seconds(one["WatchdogSec"]) <= STUCK_AFTER
    assert one["ProtectSystem"] == "strict"

    example = tomllib.loads((ROOT / "etc" / "vidupd.toml").read_text())
    assert example["state_dir"] == "/var/lib/vidupd"  # StateDirectory=vidupd
    assert example["log"]["events"].startswith("/var/log/vidupd/")  # LogsDirectory=vidupd
    writable = {p.lstrip("-") for v in d["ReadWritePaths"] for p in v.split()}
    needed = set()
    for w in example["watch"]:
        if w.get("after_upload", "keep") != "keep":
            needed.add(w["path"])
            if w.get("move_to"):
                needed.add(w["move_to"])
    needed |= {t["dest"] for t in example["targets"].values() if t.get("provider") == "directory"}
    assert needed == writable, (needed, writable)  # write access there and nowhere else
    assert "/srv/outbox" in needed and "/srv/uploaded" in needed


def test_filebeat_input_decodes_ecs_and_sets_the_document_id():
    text = (ROOT / "etc" / "filebeat.yml").read_text()
    assert "type: filestream" in text and "/var/log/vidupd/events.jsonl" in text
    for option in ("- ndjson:", 'target: ""', "overwrite_keys: true", "expand_keys: true", "add_error_key: true"):
        assert option in text, option
    fp = text[text.index("- fingerprint:"):]
    assert 'fields: ["event.id"]' in fp.split("\n\n")[0] and 'target_field: "@metadata._id"' in fp
    assert "\t" not in text  # YAML: spaces only


def test_filebeat_knows_files_by_fingerprint_and_ships_to_the_logs_data_stream():
    text = (ROOT / "etc" / "filebeat.yml").read_text()
    assert "file_identity.fingerprint: ~" in text
    scanner = text[text.index("prospector.scanner.fingerprint:"):]
    assert "enabled: true" in scanner.split("close.")[0] and "length: 256" in scanner.split("close.")[0]
    assert "data_stream.dataset: vidupd.events" in text and 'index: "logs-vidupd.events-default"' in text


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_snippet_rotates_a_live_event_log(site, tmp_path):
    """logrotate itself rotates events.jsonl under a running daemon, which goes on in a new file."""
    import getpass

    from helpers import DaemonProcess, actions, read_events, wait_for

    user = getpass.getuser()
    group = __import__("grp").getgrgid(os.getgid()).gr_name
    conf = (ROOT / "etc" / "logrotate.d" / "vidupd").read_text()
    assert "copytruncate" not in re.sub(r"#.*", "", conf)
    conf = (conf.replace("/var/log/vidupd/events.jsonl", str(site.events))
            .replace("su vidupd vidupd", f"su {user} {group}")
            .replace("create 0640 vidupd vidupd", f"create 0640 {user} {group}"))
    (tmp_path / "logrotate.conf").write_text(conf)
    os.chmod(tmp_path, 0o755)  # logrotate refuses world-writable parents
    site.write()
    with DaemonProcess(site.config, site.events) as d:
        out = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "logrotate.status"), str(tmp_path / "logrotate.conf")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rotated = site.events.with_name(site.events.name + ".1")
        assert rotated.exists() and actions(rotated, "daemon.started")
        n = len(read_events(rotated))
        time.sleep(1.2)
        (site.outbox / "x.mp4").write_bytes(b"x" * 5000)
        wait_for(lambda: actions(site.events, "upload.completed"), 30, what="event in the new file")
        assert d.stop() == 0
    assert len(read_events(rotated)) == n
    assert oct(site.events.stat().st_mode & 0o777) == "0o640"


def _reload_check(unit: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The unit's first ExecReload= command, run as systemd would: its Environment= with the
    config moved to `config` (a drop-in's Environment=VIDUPD_CONFIG=...), nothing else."""
    d = directives(unit)
    env_name, _, _ = d["Environment"][0].partition("=")
    argv = d["ExecReload"][0].split()
    exe = local_copy(tmp_path).read_text()
    argv[0] = re.search(r"ExecReload=(\S+) check-config", exe).group(1)
    env = {"PATH": os.environ["PATH"], env_name: str(config), "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_reload_fails_on_a_bad_config_before_the_daemon_is_signalled(tmp_path):
    """`systemctl reload` runs the ExecReload= lines in order and stops at the first failure:
    the check-config line exits 2 on a config the daemon would refuse, so the reload job
    fails visibly (today's unit reported success) and kill -HUP never runs."""
    from helpers import write_config

    (tmp_path / "outbox").mkdir()
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")}, {"a": {"provider": "null"}},
                       [{"path": str(tmp_path / "outbox"), "targets": ["a"]}], {"events": str(tmp_path / "ev.jsonl")})
    unit = UNIT.read_text()
    good = _reload_check(unit, cfg, tmp_path)
    assert good.returncode == 0 and f"{cfg}: ok" in good.stdout, good.stdout + good.stderr
    cfg.write_text(cfg.read_text().replace('targets = ["a"]', 'targets = ["a", "a"]'))
    bad = _reload_check(unit, cfg, tmp_path)
    assert bad.returncode == 2 and "watch[0].targets: target 'a' is listed more than once" in bad.stderr, bad.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "ev.jsonl").exists()  # the check wrote nothing

"""The hosts of one ledger (issue 13): each daemon's heartbeat (vidupd.service.heartbeat,
beaten from the main loop), `vidupd hosts [--json]`, and the fleet in `vidupd status` (who
uploads each running job; the hosts heard from recently). On SQLite and, where it is
cheap, on the throwaway PostgreSQL server; the ledger cases themselves are in the
compliance suite (tests/ledger_compliance.py)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, vidupd, wait_for, write_config

from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.secrets import Secret
from vidupd.ledger import Ledger, LedgerSettings, LedgerUnavailable, open_ledger
from vidupd.service.heartbeat import Heartbeat

pytestmark = pytest.mark.timeout(120)


def _config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "outbox").mkdir(exist_ok=True)
    (tmp_path / "dest").mkdir(exist_ok=True)
    path = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")},
                        {"arch": {"provider": "directory", "dest": str(tmp_path / "dest")}},
                        [{"path": str(tmp_path / "outbox"), "targets": ["arch"], "settle_seconds": 0.5}],
                        {"events": str(tmp_path / "events.jsonl")})
    with open(path, "a") as f:
        f.write(extra)
    return path


def _pg(tmp_path: Path, pg_server, url: str) -> tuple[Path, dict]:
    env = {"VIDUPD_TEST_PG_PASSWORD": pg_server.password}
    return _config(tmp_path, f'[ledger]\nurl = "{url}"\npassword = {{ env = "VIDUPD_TEST_PG_PASSWORD" }}\n'), env


class _Ledger:
    """Records beats; fails while `down`."""

    def __init__(self) -> None:
        self.beats: list[tuple[str, int]] = []
        self.stopped: list[str] = []
        self.down = False

    def beat(self, owner: str, *, running: int = 0, version: str = "") -> None:
        if self.down:
            raise LedgerUnavailable("postgresql://db/vidupd: the ledger did not answer (timeout)")
        self.beats.append((owner, running))

    def host_stopped(self, owner: str) -> None:
        if self.down:
            raise LedgerUnavailable("gone")
        self.stopped.append(owner)


def test_the_heartbeat_beats_every_interval_from_the_tick_and_survives_a_failing_ledger():
    ledger, clock, running = _Ledger(), [100.0], [0]
    hb = Heartbeat(ledger, "h:1:1", lambda: running[0], every=5.0, clock=lambda: clock[0])  # type: ignore[arg-type]
    hb.tick()  # the first tick beats at once
    running[0] = 2
    for _ in range(4):  # the loop ticks about once a second
        clock[0] += 1
        hb.tick()
    assert ledger.beats == [("h:1:1", 0)]
    clock[0] += 1
    hb.tick()
    assert ledger.beats == [("h:1:1", 0), ("h:1:1", 2)]
    ledger.down = True
    clock[0] += 5
    hb.tick()  # no exception: the daemon keeps running
    assert hb.failures == 1 and len(ledger.beats) == 2
    for _ in range(14):  # the next try waits RETRY_AFTER (15 s), not the next beat
        clock[0] += 1
        hb.tick()
    assert hb.failures == 1
    clock[0] += 1
    hb.tick()
    assert hb.failures == 2
    hb.stopped()  # best effort, too
    ledger.down = False
    clock[0] += 15
    hb.tick()
    assert hb.failures == 0 and ledger.beats[-1] == ("h:1:1", 2)
    hb.stopped()
    assert ledger.stopped == ["h:1:1"]


def _fleet(ledger: Ledger, outbox: Path) -> dict[str, int]:
    """Two files; one uploading on host alpha; alpha and beta beating; gamma heard from an
    hour ago (not "recent")."""
    ids = {}
    for name in ("sending", "waiting"):
        f = outbox / f"{name}.mp4"
        f.write_bytes(b"v" * 1000)
        (o,) = ledger.offer(f, str(outbox), [("arch", "video")], FileIdentity.of(f.stat()), Metadata(name))
        ids[name] = o.job_id
    ledger.claim("alpha:4242:1800000000", 1, 3600, ids=[ids["sending"]])
    clock = ledger.store.now
    ledger.store.now = lambda: clock() - 3600  # type: ignore[method-assign]
    ledger.beat("gamma:7:1700000000", running=1, version="0.1")
    ledger.store.now = clock  # type: ignore[method-assign]
    ledger.beat("alpha:4242:1800000000", running=1, version="9.9")
    ledger.beat("beta:4343:1800000000", running=0, version="9.9")
    ledger.host_stopped("beta:4343:1800000000")
    return ids


def _check_hosts_json(out) -> None:
    assert out.returncode == 0, out.stderr
    hosts = {h["hostname"]: h for h in json.loads(out.stdout)["hosts"]}
    assert set(hosts) == {"alpha", "beta", "gamma"}
    alpha = hosts["alpha"]
    assert (alpha["pid"], alpha["owner"], alpha["state"], alpha["running"], alpha["version"]) == \
        (4242, "alpha:4242:1800000000", "running", 1, "9.9")
    assert alpha["last_seen_seconds"] < 60 and alpha["last_seen"].endswith("Z") and alpha["started"].endswith("Z")
    assert (hosts["beta"]["state"], hosts["beta"]["running"]) == ("stopped", 0)
    assert hosts["gamma"]["state"] == "silent" and hosts["gamma"]["last_seen_seconds"] >= 3500


def _check_status(table, js) -> None:
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].startswith("hosts: ") and "alpha (1 uploading)" in lines[1] and "beta (stopped" in lines[1]
    assert "gamma" not in lines[1]  # not heard from for an hour: `vidupd hosts` still lists it
    header = lines[2].split()
    assert "HOST" in header
    rows = {line.split()[1]: line for line in lines[3:]}
    assert " alpha " in rows["uploading"] and "alpha" not in rows["queued"]
    doc = json.loads(js.stdout)
    assert [h["hostname"] for h in doc["hosts"]] == ["alpha", "beta"]
    assert {j["state"]: j["host"] for j in doc["jobs"]} == {"uploading": "alpha", "queued": None}


def test_hosts_and_status_show_the_fleet_on_a_sqlite_ledger(tmp_path: Path):
    cfg = _config(tmp_path)
    empty = vidupd("hosts", "-c", str(cfg))
    assert empty.returncode == 0 and "no hosts yet" in empty.stdout
    assert json.loads(vidupd("hosts", "-c", str(cfg), "--json").stdout) == {"hosts": []}
    ledger = Ledger(tmp_path / "state")
    _fleet(ledger, tmp_path / "outbox")
    ledger.close()
    _check_hosts_json(vidupd("hosts", "-c", str(cfg), "--json"))
    table = vidupd("hosts", "-c", str(cfg))
    assert table.returncode == 0
    head, *rows = table.stdout.splitlines()
    assert head.split()[:4] == ["HOST", "PID", "STATE", "LAST"]
    assert [r.split()[:3] for r in rows] == [["alpha", "4242", "running"], ["beta", "4343", "stopped"],
                                             ["gamma", "7", "silent"]]
    _check_status(vidupd("status", "-c", str(cfg)), vidupd("status", "-c", str(cfg), "--json"))


def test_hosts_and_status_show_the_fleet_on_a_postgresql_ledger(tmp_path: Path, pg_server, pg_ledger_url):
    cfg, env = _pg(tmp_path, pg_server, pg_ledger_url)
    ledger = open_ledger(LedgerSettings(pg_ledger_url, Secret(pg_server.password)), tmp_path / "state")
    _fleet(ledger, tmp_path / "outbox")
    ledger.close()
    _check_hosts_json(vidupd("hosts", "-c", str(cfg), "--json", env=env))
    _check_status(vidupd("status", "-c", str(cfg), env=env), vidupd("status", "-c", str(cfg), "--json", env=env))


def _daemon_beats_then_stops(cfg: Path, tmp_path: Path, env: dict | None = None) -> None:
    def mine() -> list[dict]:
        out = vidupd("hosts", "-c", str(cfg), "--json", env=env)
        assert out.returncode == 0, out.stderr
        return [h for h in json.loads(out.stdout)["hosts"] if h["pid"] == d.proc.pid]

    with DaemonProcess(cfg, tmp_path / "events.jsonl", env=env) as d:
        (h,) = wait_for(mine, 30, what="the daemon's heartbeat")
        assert (h["hostname"], h["state"], h["running"]) == (socket.gethostname(), "running", 0)
        assert h["owner"].startswith(f"{socket.gethostname()}:{d.proc.pid}:")
        first = h["last_seen"]
        time.sleep(6)  # one beat every 5 s
        (h,) = mine()
        assert h["last_seen"] > first and h["state"] == "running"
        assert d.stop() == 0
    (h,) = mine()
    assert h["state"] == "stopped" and h["running"] == 0


def test_a_daemon_beats_while_it_runs_and_says_it_stopped(tmp_path: Path):
    _daemon_beats_then_stops(_config(tmp_path), tmp_path)


def test_a_daemon_on_a_postgresql_ledger_beats_too(tmp_path: Path, pg_server, pg_ledger_url):
    cfg, env = _pg(tmp_path, pg_server, pg_ledger_url)
    _daemon_beats_then_stops(cfg, tmp_path, env)


def test_housekeeping_drops_the_rows_of_daemons_gone_for_a_week(tmp_path: Path):
    from vidupd.service.housekeeping import Housekeeper

    ledger = Ledger(tmp_path / "state")
    clock = ledger.store.now
    ledger.store.now = lambda: clock() - 8 * 86400  # type: ignore[method-assign]
    ledger.beat("gone:1:1")
    ledger.store.now = clock  # type: ignore[method-assign]
    ledger.beat("here:2:2")
    keeper = Housekeeper(ledger, lambda: 0)  # retain_days 0 keeps every job, not week-old heartbeats
    keeper.start()
    try:
        wait_for(lambda: [h.hostname for h in ledger.hosts()] == ["here"], 10, what="the old row pruned")
    finally:
        keeper.stop()
        ledger.close()

"""`[ledger] url`: where the ledger lives. The loader's checks (check-config refuses what
`run` would), the password as a secret that never shows, and the real daemon, `status` and
`retry` on a PostgreSQL ledger (the throwaway server of tests/pg_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, vidupd, wait_for, write_config

from vidupd.config import ConfigError, load
from vidupd.ledger import Ledger, LedgerSettings, open_ledger, scrub_url


def _config(tmp_path: Path, ledger: str) -> Path:
    (tmp_path / "outbox").mkdir(exist_ok=True)
    (tmp_path / "dest").mkdir(exist_ok=True)
    path = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "workers": 2},
                        {"arch": {"provider": "directory", "dest": str(tmp_path / "dest")}},
                        [{"path": str(tmp_path / "outbox"), "targets": ["arch"], "settle_seconds": 0.5}],
                        {"events": str(tmp_path / "events.jsonl"), "level": "info"})
    with open(path, "a") as f:
        f.write(ledger)
    return path


def test_without_ledger_table_the_sqlite_ledger_under_state_dir(tmp_path: Path):
    config = load(_config(tmp_path, ""))
    assert config.ledger == LedgerSettings() and not config.ledger.shared
    ledger = open_ledger(config, config.state_dir)
    assert isinstance(ledger, Ledger) and ledger.path == tmp_path / "state" / "ledger.sqlite3"
    ledger.close()


@pytest.mark.parametrize("body, key, says", [
    ('url = "mysql://db/vidupd"', "ledger.url", "must be a postgresql:// URL"),
    ('url = "postgresql://vidupd:s3cr3t-pw@db/vidupd"', "ledger.url", "holds a password"),
    ('url = "postgresql://db/vidupd?password=s3cr3t-pw"', "ledger.url", "holds a password"),
    ('url = "postgresql://db/vidupd?nosuchparam=1"', "ledger.url", "not a valid PostgreSQL URL"),
    ('password = "s3cr3t-pw"', "ledger.password", "only means something with ledger.url"),
    ('url = "postgresql://db/v"\npasword = "s3cr3t-pw"', "ledger.pasword", "unknown key (did you mean 'password'?)"),
    ('url = "postgresql://db/v"\npassword = { env = "VIDUPD_NO_SUCH_VAR" }', "ledger.password.env", "is not set"),
])
def test_bad_ledger_keys_are_refused_by_check_config(tmp_path: Path, body: str, key: str, says: str):
    path = _config(tmp_path, f"[ledger]\n{body}\n")
    with pytest.raises(ConfigError) as e:
        load(path)
    assert f"{path}: {key}: " in str(e.value) and says in str(e.value)
    assert "s3cr3t-pw" not in str(e.value)
    out = vidupd("check-config", "-c", str(path))
    assert out.returncode == 2 and key in out.stderr and "s3cr3t-pw" not in out.stderr + out.stdout


def test_password_is_a_secret_read_even_by_read_only_commands(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VIDUPD_TEST_LEDGER_PW", "s3cr3t-pw")
    path = _config(tmp_path, '[ledger]\nurl = "postgresql://vidupd@db.example/vidupd"\n'
                             'password = { env = "VIDUPD_TEST_LEDGER_PW" }\n')
    for read_secrets in (True, False):  # `status` reads no platform secrets, but needs this one
        config = load(path, read_secrets=read_secrets)
        assert config.ledger.url == "postgresql://vidupd@db.example/vidupd"
        assert config.ledger.password.reveal() == "s3cr3t-pw" and "s3cr3t-pw" not in repr(config)
    out = vidupd("check-config", "-c", str(path), env={"VIDUPD_TEST_LEDGER_PW": "x"})  # db.example: not contacted
    assert out.returncode == 0 and "ledger: postgresql://vidupd@db.example/vidupd (PostgreSQL; not contacted)" in out.stdout


def test_urls_are_shown_without_passwords():
    assert scrub_url("postgresql://u:pw@h:5432/db?sslmode=require&password=pw2") == \
        "postgresql://u@h:5432/db?sslmode=require"
    assert scrub_url("postgresql://h/db") == "postgresql://h/db"


def test_daemon_status_and_retry_on_a_postgresql_ledger(tmp_path: Path, pg_server, pg_ledger_url):
    env = {"VIDUPD_TEST_PG_PASSWORD": pg_server.password}
    config = _config(tmp_path, f'[ledger]\nurl = "{pg_ledger_url}"\npassword = {{ env = "VIDUPD_TEST_PG_PASSWORD" }}\n')
    events = tmp_path / "events.jsonl"
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "outbox" / name).write_bytes(name.encode() * 5000)
    with DaemonProcess(config, events, env=env) as d:
        wait_for(lambda: len(actions(events, "upload.completed")) == 2, 60, what="two uploads")
        out = vidupd("status", "-c", str(config), "--json", env=env)
        assert out.returncode == 0, out.stderr
        jobs = json.loads(out.stdout)["jobs"]
        assert sorted(j["state"] for j in jobs) == ["done", "done"]
        assert d.stop() == 0
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()  # the jobs live in PostgreSQL
    assert (tmp_path / "state" / "daemon.lock").exists()  # the daemon lock stays local
    assert len([p for p in (tmp_path / "dest").iterdir() if p.suffix == ".mp4"]) == 2
    out = vidupd("retry", "-c", str(config), "--failed", env=env)
    assert out.returncode == 0 and "0 job(s)" in out.stdout
    assert pg_server.password not in events.read_text()
    # and the same jobs, read straight from the database
    with pg_server.admin() as db:
        schema = pg_ledger_url.rpartition("%3D")[2]
        n = db.execute(f"SELECT count(*) FROM {schema}.jobs WHERE state='done'").fetchone()[0]
    assert n == 2


def test_status_says_no_ledger_yet_on_an_empty_database(tmp_path: Path, pg_server, pg_ledger_url):
    env = {"VIDUPD_TEST_PG_PASSWORD": pg_server.password}
    config = _config(tmp_path, f'[ledger]\nurl = "{pg_ledger_url}"\npassword = {{ env = "VIDUPD_TEST_PG_PASSWORD" }}\n')
    out = vidupd("status", "-c", str(config), env=env)
    assert out.returncode == 0 and out.stdout.strip() == "no jobs yet", out.stderr
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()

"""Issue 14's security suite, on the real daemon (a subprocess) against the sandboxes.

- Secrets (the configured ones, every Youku access/refresh token the sandbox rotated in,
  every STS secret and token and UploadAuth the VOD sandbox handed out) appear in no event,
  no `vidupd status` / `status --json` output, no stderr, and no text column of any table
  of the ledger.
- The state dir is 0700 and every file in it (ledger, -wal/-shm, checkpoints, the lock) 0600,
  folders 0700, checked while the daemon runs (WAL files exist then) and after it stopped.
- TLS verification is never turned off: no `verify=False`, `CERT_NONE`, `check_hostname =
  False`, unverified contexts or silenced InsecureRequestWarning anywhere in vidupd; the HTTP
  clients the providers build (requests sessions, oss2 sessions, the aliyunsdkcore client)
  verify certificates and speak HTTPS to the platforms' real hosts. Plain HTTP is used only
  where a config names a `host:port` override (the sandbox on loopback) or the Youku upload
  server, which the platform's own protocol addresses by IP over HTTP.
- There is no control socket: the controls (pause, cancel, limit, ...) are rows in the
  ledger that the daemon polls (README "Pause, cancel, forget"). The daemon listens on no
  socket at all (no unix socket in the state dir or anywhere, no TCP port) unless metrics
  are configured, so there is nothing for another user to connect to.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from helpers import ROOT, actions, drop_random, vidupd, wait_for, write_config
from provider_harness import record_issued_secrets
from test_vod_e2e import Env as VodEnv
from test_youku_e2e import Env as YoukuEnv

from vidupd.config import load
from vidupd.ledger import Ledger
from vidupd.service.daemon import build_providers


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # files would come out 0644 unless vidupd says otherwise
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def _modes(state: Path) -> dict[str, int]:
    """Every entry under the state dir and its mode (entries vanishing meanwhile: skipped)."""
    out = {".": _mode(state)}
    for p in state.rglob("*"):
        try:
            out[str(p.relative_to(state))] = _mode(p)
        except FileNotFoundError:
            continue
    return out


def _private(modes: dict[str, int], state: Path) -> None:
    for name, m in modes.items():
        p = state / name
        if not p.exists():
            continue
        want = 0o700 if p.is_dir() else 0o600
        assert m == want, f"{name}: mode {m:o}, not {want:o}"


def _ledger_text(state: Path) -> str:
    """Every value of every column of every table of the SQLite ledger, as text."""
    db = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
    parts: list[str] = []
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "jobs" in tables
        for t in tables:
            cols = [r[1] for r in db.execute(f'PRAGMA table_info("{t}")')]
            for row in db.execute(f'SELECT * FROM "{t}"'):
                for col, v in zip(cols, row):
                    text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    parts.append(f"{t}.{col}={text}")
    finally:
        db.close()
    return "\n".join(parts)


def _listening_sockets(pid: int) -> list[str]:
    """Sockets the process holds that listen: unix (flag __SO_ACCEPTCON) or TCP (state 0A)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[6] in inodes and int(cols[3], 16) & 0x10000:
            found.append(f"unix {cols[7] if len(cols) > 7 else '(unnamed)'}")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes and cols[3] == "0A":
                found.append(f"tcp {cols[1]}")
    return found


def _youku_rotations(env: Any, into: list[str]) -> None:
    """Record every access and refresh token the Youku sandbox issues (rotation included)."""
    real = env.box.auth.refresh

    def refresh(params: Any) -> dict[str, str]:
        answer = real(params)
        into.extend((answer["access_token"], answer["refresh_token"]))
        return answer

    env.box.auth.refresh = refresh


@pytest.mark.parametrize("platform", ["youku", "vod"])
def test_secrets_never_leave_and_the_state_dir_is_private(make_site, platform: str):
    if platform == "youku":
        env = make_site(YoukuEnv, token_ttl=2)  # the access token expires mid-run: rotated by a refresh
        issued: list[str] = []
        _youku_rotations(env, issued)
        configured = [env.creds[k] for k in ("client_secret", "access_token", "refresh_token")]
    else:
        env = make_site(VodEnv, token_ttl=3)  # STS credentials expire mid-run: new ones handed out
        issued = []
        record_issued_secrets(env.oss, env.vod, issued)
        configured = [env.secret]
    # a file that fails (an exception's text reaches the event log and `status`)
    (env.outbox / "broken.mp4").write_bytes(b"")
    with env.daemon() as d:
        files = [drop_random(env.outbox / f"clip{i}.mp4", 700_000) for i in range(3)]
        wait_for(lambda: len(env.completed()) >= 1, 60, what="a first upload")
        running = _modes(env.state)  # while the daemon runs: -wal, -shm, the lock, checkpoints
        assert d.proc is not None
        assert _listening_sockets(d.proc.pid) == []
        time.sleep(3)  # past the token/STS lifetime
        files.append(drop_random(env.outbox / "late.mp4", 700_000))
        wait_for(lambda: len(env.completed()) == len(files), 120, what="every upload")
        wait_for(lambda: actions(env.events, "upload.failed"), 30, what="the empty file's failure")
        assert d.stop() == 0
    assert issued, "the sandbox issued no temporary secret: the test would prove nothing"
    secrets = [s for s in configured + issued if s]
    status = vidupd("status", "-c", str(env.config), "--all")
    status_json = vidupd("status", "-c", str(env.config), "--json")
    assert status.returncode == status_json.returncode == 0, status.stderr + status_json.stderr
    texts = {
        "events": env.events.read_text(encoding="utf-8"),
        "daemon stderr": env.events.with_suffix(".stderr").read_text(errors="replace"),
        "status": status.stdout + status.stderr,
        "status --json": status_json.stdout + status_json.stderr,
        "ledger": _ledger_text(env.state),
    }
    assert "broken.mp4" in texts["status --json"]  # the failure is there, with its error
    for where, text in texts.items():
        for s in secrets:
            assert s not in text, f"a secret ({len(s)} chars) appears in {where}"
    _private(running, env.state)
    after = _modes(env.state)
    _private(after, env.state)
    assert not [n for n in after if stat.S_ISSOCK(os.lstat(env.state / n).st_mode)]


# -- TLS ----------------------------------------------------------------------------------

INSECURE = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context"
                      r"|disable_warnings|InsecureRequestWarning|PYTHONHTTPSVERIFY|verify_ssl|ssl_verify"
                      r"|CURLOPT_SSL_VERIFY|set_verify\(\s*False")


def test_no_code_turns_tls_verification_off():
    hits = []
    for path in sorted((ROOT / "vidupd").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INSECURE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []
    assert INSECURE.search("s.verify = False") and INSECURE.search("ctx.verify_mode = ssl.CERT_NONE")


def test_the_providers_http_clients_verify_certificates_and_use_https(tmp_path: Path, monkeypatch):
    """Built from a config as the daemon builds them, with the platforms' real hosts (no
    request is sent)."""
    for var in ("ALIBABA_CLOUD_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "outbox").mkdir()
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")}, {
        "yk": {"provider": "youku", "client_id": "cid", "client_secret": "cs", "access_token": "at",
               "refresh_token": "rt"},
        "vod": {"provider": "aliyun-vod", "region": "cn-shanghai", "access_key_id": "id", "access_key_secret": "s"},
        "vod_named": {"provider": "aliyun-vod", "region": "cn-shanghai", "access_key_id": "id",
                      "access_key_secret": "s", "endpoint": "vod.cn-shanghai.aliyuncs.com"},
    }, [{"path": str(tmp_path / "outbox"), "targets": ["yk", "vod", "vod_named"]}])
    cfg.chmod(0o600)
    config = load(cfg)
    ledger = Ledger(config.state_dir)
    try:
        providers: dict[str, Any] = build_providers(config, ledger)
        yk = providers["yk"]
        assert yk.api.api_base.startswith("https://")
        assert yk.api._session.verify is True
        assert yk._oss_session.session.verify is True
        for name in ("vod", "vod_named"):  # a bare *.aliyuncs.com name once meant plain HTTP
            vod = providers[name]
            assert vod.rpc.https is True, name
            assert vod.rpc._client.get_verify() in (None, True)  # None: aliyunsdkcore verifies (True)
            assert vod._oss_session.session.verify is True
        for p in providers.values():
            p.close()
    finally:
        ledger.close()


def test_sealed_tokens_open_with_the_same_secret_only_and_old_clear_rows_still_read(tmp_path: Path):
    from vidupd.ledger.shared import LedgerShared
    from vidupd.providers.youku.tokens import SealedStore

    ledger = Ledger(tmp_path / "state")
    try:
        shared = LedgerShared(ledger)
        shared.update("k", lambda cur: {"access_token": "old-clear", "refresh_token": "r"})  # an older vidupd
        store = SealedStore(shared, "client-secret-1", "k")
        loaded = store.load("k")
        assert loaded is not None and loaded.data["access_token"] == "old-clear"
        store.update("k", lambda cur: {"access_token": "new-sealed", "refresh_token": "r2"})
        assert "new-sealed" not in str(ledger.shared_get("k"))
        again = store.load("k")
        assert again is not None and again.data["access_token"] == "new-sealed"
        other = SealedStore(shared, "client-secret-2", "k").load("k")  # re-authorised app: not usable
        assert other is not None and other.data == {}
    finally:
        ledger.close()

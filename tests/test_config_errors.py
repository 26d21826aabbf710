"""Config that says what it means (issue 12, point 6), through the real CLI: each problem is
`FILE: KEY: what is wrong`, `check-config` exits 2 on it and `run` refuses the same with
exit 2 (which systemd does not restart), never exit 1 and a traceback's last line."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import ROOT, vidupd, write_config

from vidupd.ledger import Ledger


def _config(tmp_path: Path, watch: dict | None = None, log: dict | None = None,
            targets: dict | None = None) -> Path:
    (tmp_path / "outbox").mkdir(exist_ok=True)
    targets = targets or {"a": {"provider": "null"}, "b": {"provider": "null"}}
    w = {"path": str(tmp_path / "outbox"), "targets": ["a", "b"], **(watch or {})}
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")}, targets, [w],
                       {"events": str(tmp_path / "events.jsonl"), **(log or {})})
    cfg.chmod(0o600)
    return cfg


def test_a_target_listed_twice_in_one_watch_is_refused(tmp_path: Path):
    cfg = _config(tmp_path, watch={"targets": ["a", "b", "a"]})
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{cfg}: watch[0].targets: target 'a' is listed more than once" in out.stderr
    run = vidupd("run", "-c", str(cfg))
    assert run.returncode == 2 and "listed more than once" in run.stderr, run.stderr


@pytest.mark.parametrize("events, why", [
    ("/proc/nope/events.jsonl", "/proc is on proc, a virtual file system that holds no files"),
    ("{tmp}/plain-file/events.jsonl", "{tmp}/plain-file is not a directory"),
    ("{tmp}", "{tmp} is a directory"),
])
def test_an_event_log_that_cannot_be_written_is_a_config_error(tmp_path: Path, events: str, why: str):
    (tmp_path / "plain-file").write_text("x")
    events, why = events.format(tmp=tmp_path), why.format(tmp=tmp_path)
    cfg = _config(tmp_path, log={"events": events})
    before = sorted(p.name for p in tmp_path.iterdir())
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 2, out.stdout + out.stderr
    line = [s for s in out.stderr.splitlines() if s.startswith(f"{cfg}: log.events: ")]
    assert line and why in line[0], out.stderr
    # run stops on exit 2 (systemd: RestartPreventExitStatus=2), not exit 1 with FileNotFoundError
    run = vidupd("run", "-c", str(cfg))
    assert run.returncode == 2 and "log.events" in run.stderr and "FileNotFoundError" not in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # neither made the state dir nor a log


def test_an_event_log_in_folders_still_to_be_made_is_fine_and_check_config_makes_none(tmp_path: Path):
    cfg = _config(tmp_path, log={"events": str(tmp_path / "logs" / "deep" / "events.jsonl")})
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "state").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_check_config_as_an_unprivileged_user_sees_a_log_folder_it_cannot_write():
    """Root may write anywhere; the unit's user may not: the check asks for that user."""
    nobody = pwd.getpwnam("nobody")
    tmp_path = Path(tempfile.mkdtemp(prefix="vidupd-nobody-"))  # pytest's tmp_path is root's alone (0700)
    os.chmod(tmp_path, 0o755)
    try:
        _check_as(nobody, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check_as(nobody: pwd.struct_passwd, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)  # root's: nobody cannot create events.jsonl in it
    cfg = _config(tmp_path, log={"events": str(logs / "events.jsonl")})
    os.chown(cfg, nobody.pw_uid, nobody.pw_gid)

    def as_nobody(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                               sys.executable, *(argv or ("-m", "vidupd", "check-config", "-c", str(cfg)))],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                   "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))})

    if as_nobody("-c", "import vidupd.cli.main").returncode != 0:
        pytest.skip(f"user nobody cannot read this checkout ({ROOT}) or its Python")
    out = as_nobody()
    assert out.returncode == 2 and f"no permission to write in {logs}" in out.stderr, out.stdout + out.stderr
    os.chown(logs, nobody.pw_uid, nobody.pw_gid)
    out = as_nobody()
    assert out.returncode == 0, out.stdout + out.stderr
    assert list(logs.iterdir()) == []


def test_inline_secrets_in_a_config_others_can_read_warn_naming_the_key(tmp_path: Path):
    cfg = _config(tmp_path, targets={"a": {"provider": "null"}, "b": {"provider": "null"}})
    with cfg.open("a") as f:
        f.write('[[notify]]\nurl = "http://127.0.0.1:9/hook"\nsecret = "hook-secret-value"\n')
    cfg.chmod(0o644)
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 0, out.stderr  # a warning, as for a secret file others can read
    assert (f"warning: {cfg}: notify[0].secret: secret given inline in {cfg}, which is readable by others "
            "(mode 644); chmod 600 it") in out.stderr, out.stderr
    assert "hook-secret-value" not in out.stdout + out.stderr
    cfg.chmod(0o600)
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr


def test_a_secret_file_others_can_read_still_warns_the_same_way(tmp_path: Path):
    from vidupd.config import load

    token = tmp_path / "token"
    token.write_text("tok-from-file")
    token.chmod(0o640)
    cfg = _config(tmp_path, targets={"a": {"provider": "youku", "client_id": "c",
                                           "access_token": {"file": str(token)}}, "b": {"provider": "null"}})
    (w,) = load(cfg).warnings
    assert w.key == "targets.a.access_token.file" and "is readable by others (mode 640); chmod 600 it" in w.message


def test_retry_of_a_job_that_does_not_exist_exits_1_and_says_so(tmp_path: Path):
    cfg = _config(tmp_path)
    Ledger(tmp_path / "state").close()
    out = vidupd("retry", "-c", str(cfg), "99")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no such job: 99" in out.stderr and "queued again" not in out.stdout
    assert vidupd("retry", "-c", str(cfg), "--failed").returncode == 0  # nothing failed: fine, 0 queued


def test_status_with_an_unknown_state_exits_2(tmp_path: Path):
    cfg = _config(tmp_path)
    out = vidupd("status", "-c", str(cfg), "--state", "bogus")
    assert out.returncode == 2 and "invalid choice: 'bogus'" in out.stderr, out.stderr


def test_config_mode_helper_sees_group_and_other_bits(tmp_path: Path):
    """The two warnings share one test of the mode: group read/write or any other bit."""
    from vidupd.config.secret_refs import exposed as _exposed

    f = tmp_path / "f"
    f.write_text("")
    for mode, open_to_others in ((0o600, False), (0o400, False), (0o640, True), (0o620, True), (0o604, True)):
        f.chmod(mode)
        assert bool(_exposed(f)) is open_to_others, oct(mode)
    assert stat.S_IMODE(f.stat().st_mode) == 0o604

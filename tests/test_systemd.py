"""The real daemon under an emulated systemd: a NOTIFY_SOCKET datagram socket receives
READY/STATUS/WATCHDOG/RELOADING/STOPPING; JOURNAL_STREAM points at its stderr; signals are
real. Uploads go through the `directory` provider, slowed down by max_rate."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, read_events, wait_for

pytestmark = pytest.mark.timeout(120)


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; records (monotonic time, fields)."""

    def __init__(self, directory: Path):
        path = directory / "notify.sock"
        if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes
            path = Path(tempfile.mkdtemp(prefix="vn", dir="/tmp")) / "notify.sock"
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def with_key(self, key: str, since: int = 0) -> list[tuple[float, dict[str, str]]]:
        return [m for m in self.snapshot()[since:] if key in m[1]]

    def wait(self, key: str, value: str | None = None, since: int = 0, timeout: float = 30) -> tuple[float, dict]:
        def found():
            for m in self.snapshot()[since:]:
                if key in m[1] and (value is None or m[1][key] == value):
                    return m
            return None

        return wait_for(found, timeout, 0.05, what=f"{key}={value or '...'} on the notify socket")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path):
    n = NotifySocket(tmp_path)
    yield n
    n.close()


def drop(path: Path, size: int, seed: int = 0) -> Path:
    block = hashlib.sha256(f"{seed}".encode()).digest() * 32
    tmp = path.with_name("." + path.name + ".part")
    with open(tmp, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    os.replace(tmp, path)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def delivered(dest: Path) -> list[Path]:
    return sorted(p for p in dest.iterdir() if p.is_file() and p.suffix != ".json")


def completed_names(site) -> list[str]:
    return [Path(e["file.path"]).name for e in actions(site.events, "upload.completed")]


def daemon_env(notify: NotifySocket, extra: dict | None = None, watchdog_usec: int | None = 2_000_000) -> dict:
    env = notify.env(watchdog_usec)
    env.update(extra or {})
    return env


def start(site, env: dict) -> DaemonProcess:
    d = DaemonProcess(site.config, site.events, env=env)
    for key in ("WATCHDOG_PID", "WATCHDOG_USEC", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        if key not in env:
            d.env.pop(key, None)  # whatever the test runner itself was started with
    return d.start()


def test_ready_status_watchdog_reload_and_journal_lines(site, notify, tmp_path):
    site.write(top={"max_rate": 2_000_000})
    second = tmp_path / "outbox2"
    second.mkdir()
    stderr = site.events.with_suffix(".stderr")
    stderr.touch()
    st = os.stat(stderr)  # the daemon's stderr is "connected to the journal"
    d = start(site, daemon_env(notify, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}))
    try:
        t_ready, ready = notify.wait("READY", "1")
        # READY=1 came after start-up was complete: the daemon.started event was written before it
        assert actions(site.events, "daemon.started")
        assert ready["STATUS"].startswith("watching 1 folder; ")
        first = notify.snapshot()
        assert not any("READY" in m[1] for m in first[: first.index((t_ready, ready))])

        drop(site.outbox / "clip.mp4", 10_000_000, seed=1)  # about 4 s at 2 MB/s
        wait_for(lambda: any("1 uploading (" in m[1]["STATUS"] and "B/s)" in m[1]["STATUS"]
                             for m in notify.with_key("STATUS")), 20, what="STATUS= while uploading")
        wait_for(lambda: "clip.mp4" in completed_names(site), 30, what="clip.mp4 uploaded")
        wait_for(lambda: any(m[1]["STATUS"].endswith("; 1 done") for m in notify.with_key("STATUS")), 5,
                 what="STATUS with 1 done")
        assert "; max_rate 2.0 MB/s (config); " in notify.with_key("STATUS")[-1][1]["STATUS"]  # the cap and its source

        # WATCHDOG_USEC=2 s: a ping every second (half the timeout), never near 2 s
        pings = [t for t, f in notify.snapshot() if f.get("WATCHDOG") == "1"]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert len(gaps) >= 3, gaps
        assert 0.8 <= statistics.median(gaps) <= 1.3, gaps
        assert max(gaps) < 1.8, gaps

        # SIGHUP with a second watch in the config: RELOADING=1 + MONOTONIC_USEC, then READY=1
        site.write(top={"max_rate": 2_000_000},
                   watches=[{"path": str(site.outbox), "targets": ["arch"], "settle_seconds": 1},
                            {"path": str(second), "targets": ["arch"], "settle_seconds": 1}])
        mark = len(notify.snapshot())
        sent_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        d.signal(signal.SIGHUP)
        t_rel, rel = notify.wait("RELOADING", "1", since=mark)
        assert 0 <= int(rel["MONOTONIC_USEC"]) - sent_at < 10_000_000  # CLOCK_MONOTONIC is system-wide
        after = notify.snapshot()[mark:]
        t_again, again = notify.wait("READY", "1", since=mark + after.index((t_rel, rel)))
        assert t_again >= t_rel and again["STATUS"].startswith("watching 2 folders")
        (reloaded,) = actions(site.events, "daemon.reloaded")
        assert reloaded["vidupd.changes"] == [f"watch added: {second}"]

        drop(second / "new-folder.mp4", 20_000, seed=2)
        wait_for(lambda: "new-folder.mp4" in completed_names(site), 30, what="file in the watch added by reload")

        mark = len(notify.snapshot())
        d.signal(signal.SIGTERM)
        notify.wait("STOPPING", "1", since=mark)
        assert d.proc.wait(timeout=30) == 0
    finally:
        d.stop()
    assert sorted(completed_names(site)) == ["clip.mp4", "new-folder.mp4"]
    assert len(delivered(site.dest)) == 2

    if Path("/run/systemd/journal/socket").exists():
        return  # a real journald takes the lines (with their fields) natively, not from stderr
    # the journal got one readable line per event, with its syslog priority, no JSON
    journal = stderr.read_text().splitlines()
    done_lines = [line for line in journal if "uploaded to arch as" in line]
    assert len(done_lines) == 2 and all(line.startswith("<6>clip.mp4: ") or line.startswith("<6>new-folder.mp4: ")
                                        for line in done_lines), journal
    assert any(line.startswith("<7>clip.mp4: ") and "% to arch" in line for line in journal)  # progress at debug
    assert not any(line.lstrip().startswith("{") for line in journal)


def test_sigterm_mid_upload_sends_stopping_exits_0_and_restart_resumes(site, notify):
    site.write(top={"max_rate": 4_000_000})
    src = drop(site.outbox / "big.mp4", 24_000_000, seed=3)
    d = start(site, daemon_env(notify))
    try:
        notify.wait("READY", "1")
        checkpoint = 8 << 20  # the directory provider saves its offset every 8 MiB
        wait_for(lambda: any(e.get("vidupd.bytes_done", 0) > checkpoint for e in actions(site.events, "upload.progress")),
                 30, what="progress past the first checkpoint")
        wait_for(lambda: any("1 uploading (" in m[1]["STATUS"] for m in notify.with_key("STATUS")), 5,
                 what="STATUS= while uploading")
        mark = len(notify.snapshot())
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        _, stopping = notify.wait("STOPPING", "1", since=mark)
        assert d.proc.wait(timeout=30) == 0
        assert time.monotonic() - t0 < 10
    finally:
        d.stop()
    assert stopping["STATUS"].startswith("stopping")
    assert actions(site.events, "upload.interrupted") and not actions(site.events, "upload.completed")
    interrupted_at = max(e["vidupd.bytes_done"] for e in actions(site.events, "upload.progress"))
    n_progress = len(actions(site.events, "upload.progress"))

    mark = len(notify.snapshot())
    d = start(site, daemon_env(notify))
    try:
        notify.wait("READY", "1", since=mark)
        wait_for(lambda: actions(site.events, "upload.completed"), 30, what="the resumed upload")
        d.stop()
    finally:
        d.stop()
    resumed = actions(site.events, "upload.progress")[n_progress:]
    # it went on from the checkpoint: the first report of the second run is already past it
    assert resumed and resumed[0]["vidupd.bytes_done"] > checkpoint, (resumed[0], interrupted_at)
    assert len(actions(site.events, "upload.remote_id")) == 1  # the same remote upload, not a new one
    (only,) = delivered(site.dest)
    assert md5(only) == md5(src)


def test_invalid_reload_is_refused_and_the_old_config_keeps_running(site, notify, tmp_path):
    site.write()
    good = site.config.read_text()
    d = start(site, daemon_env(notify, watchdog_usec=None))
    try:
        notify.wait("READY", "1")
        # 1. broken config: every problem named, the daemon goes on
        site.config.write_text("bogus_key = 1\n" + good.replace("workers = 2", "workers = 0"))
        mark = len(notify.snapshot())
        d.signal(signal.SIGHUP)
        failed = wait_for(lambda: actions(site.events, "daemon.reload_failed"), 20, what="reload_failed")[0]
        notify.wait("RELOADING", "1", since=mark)
        notify.wait("READY", "1", since=mark)  # the reload is over, whatever its outcome
        assert failed["log.level"] == "error" and failed["event.outcome"] == "failure"
        problems = failed["vidupd.problems"]
        assert any(": workers: must be between 1 and 64" in p for p in problems), problems
        assert any(": bogus_key: unknown key" in p for p in problems), problems
        assert str(site.config) in failed["message"] or all(p.startswith(str(site.config)) for p in problems)
        drop(site.outbox / "after-bad-reload.mp4", 10_000, seed=4)
        wait_for(lambda: "after-bad-reload.mp4" in completed_names(site), 30, what="upload with the old config")

        # 2. a valid file that moves the ledger: refused too (needs a restart)
        site.config.write_text(good.replace(str(site.state), str(tmp_path / "elsewhere")))
        d.signal(signal.SIGHUP)
        wait_for(lambda: len(actions(site.events, "daemon.reload_failed")) == 2, 20, what="second reload_failed")
        assert "state_dir" in actions(site.events, "daemon.reload_failed")[1]["message"]
        assert not actions(site.events, "daemon.reloaded")

        # 3. a valid reload: more workers, a quieter log; running config replaced
        site.config.write_text(good.replace("workers = 2", "workers = 3").replace('level = "info"', 'level = "warning"'))
        d.signal(signal.SIGHUP)
        (ok,) = wait_for(lambda: actions(site.events, "daemon.reloaded"), 20, what="daemon.reloaded")
        assert "workers 2 -> 3" in ok["vidupd.changes"] and "log.level info -> warning" in ok["vidupd.changes"]
        n_events = len(read_events(site.events))
        drop(site.outbox / "quiet.mp4", 10_000, seed=5)
        wait_for(lambda: len(delivered(site.dest)) == 2, 30, what="quiet.mp4 delivered")
        time.sleep(0.5)
        assert read_events(site.events)[n_events:] == []  # info events are filtered now
        assert d.stop() == 0
    finally:
        d.stop()


def test_event_log_moved_away_is_reopened(site, notify):
    """logrotate renames events.jsonl (no copytruncate); the daemon writes to a new file."""
    site.write()
    d = start(site, daemon_env(notify, watchdog_usec=None))
    try:
        notify.wait("READY", "1")
        rotated = site.events.with_name("events.jsonl.1")
        os.rename(site.events, rotated)
        n_rotated = len(read_events(rotated))
        time.sleep(1.2)  # the sink looks at the file's inode at most once a second
        drop(site.outbox / "after-rotation.mp4", 10_000, seed=6)
        wait_for(lambda: "after-rotation.mp4" in completed_names(site), 30, what="upload logged to the new file")
        assert len(read_events(rotated)) == n_rotated  # nothing more went to the moved file
        # SIGHUP reopens at once (for a rotation tool that signals)
        os.rename(site.events, site.events.with_name("events.jsonl.2"))
        d.signal(signal.SIGHUP)
        wait_for(lambda: actions(site.events, "daemon.reloaded"), 20, what="reload event in a fresh file")
        assert d.stop() == 0
    finally:
        d.stop()
    assert [e["event.action"] for e in read_events(site.events)][-2:] == ["daemon.stopping", "daemon.stopped"]


def test_silent_without_notify_socket(site, tmp_path):
    """No NOTIFY_SOCKET: nothing is sent anywhere, and the daemon runs as before."""
    site.write()
    d = DaemonProcess(site.config, site.events, env={})
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        d.env.pop(key, None)
    with d.start():
        drop(site.outbox / "plain.mp4", 1000, seed=7)
        wait_for(lambda: completed_names(site), 30, what="upload")
        assert d.stop() == 0
    assert d.stderr() == ""


# -- unit level: the journal output, the notifier's environment, the health check ----------------

def test_journal_native_fields_and_redaction():
    from vidupd.core import secrets
    from vidupd.core.journal import JournalOutput, journal_field

    secrets.register("s3cr3t-token-value")
    sent: list[tuple[str, ...]] = []
    out = JournalOutput(stream=None, native=True, sendv=lambda *fields: sent.append(fields))  # type: ignore[arg-type]
    out.write({"@timestamp": "2024-01-01T00:00:00.000Z", "log.level": "warn",
               "message": "retrying with token s3cr3t-token-value", "event.action": "upload.retrying",
               "event.id": "abc-1", "file.path": "/srv/outbox/a.mp4", "file.size": 12, "vidupd.job_id": 7,
               "vidupd.remote_id": "XMTA", "vidupd.changes": ["x"], "error.message": "token s3cr3t-token-value"})
    (fields,) = sent
    got = dict(f.split("=", 1) for f in fields)
    assert got["MESSAGE"] == "retrying with token ***" and got["PRIORITY"] == "4"
    assert got["SYSLOG_IDENTIFIER"] == "vidupd" and got["EVENT_ACTION"] == "upload.retrying"
    assert got["VIDUPD_JOB_ID"] == "7" and got["VIDUPD_REMOTE_ID"] == "XMTA" and got["FILE_SIZE"] == "12"
    assert got["FILE_PATH"] == "/srv/outbox/a.mp4" and got["VIDUPD_CHANGES"] == '["x"]'
    assert got["ERROR_MESSAGE"] == "token ***" and "s3cr3t" not in repr(fields)
    assert "@TIMESTAMP" not in got and "LOG_LEVEL" not in got
    assert journal_field("@timestamp") == "TIMESTAMP" and journal_field("1x") == "F_1X"


def test_journal_stream_fallback_keeps_priority(tmp_path):
    import io

    from vidupd.core.journal import JournalOutput

    def broken(*fields):
        raise OSError("no journal")

    buf = io.StringIO()
    out = JournalOutput(stream=buf, native=True, sendv=broken)
    out.write({"log.level": "error", "message": "a.mp4: failed\nsecond line", "event.action": "upload.failed"})
    out.write({"log.level": "info", "message": "a.mp4: 50% to arch", "event.action": "upload.progress"})
    assert buf.getvalue() == "<3>a.mp4: failed second line\n<7>a.mp4: 50% to arch\n"
    assert not out.native


def test_journal_detect_needs_a_matching_stream(tmp_path, monkeypatch):
    from vidupd.core.journal import JournalOutput

    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert JournalOutput.detect("/var/log/x.jsonl") is None
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")  # inherited, but not our stderr or stdout
    assert JournalOutput.detect("/var/log/x.jsonl") is None


def test_notifier_environment(monkeypatch):
    from vidupd.service import notify

    sent: list[str] = []
    monkeypatch.setattr(notify, "_sd", type("SD", (), {"notify": staticmethod(lambda text: sent.append(text))}))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = notify.Notifier()
    n.ready("x")
    assert not n.enabled and n.watchdog_interval is None and sent == []  # silent outside systemd

    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.Notifier().watchdog_interval == 1.0  # half of WATCHDOG_USEC
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.Notifier().watchdog_interval == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert notify.Notifier().watchdog_interval is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "garbage")
    assert notify.Notifier().watchdog_interval is None

    n = notify.Notifier()
    n.status("a\nb")
    n.status("a  b")  # unchanged: not sent again
    n.reloading()
    n.ready("done")
    n.stopping("bye")
    assert sent[0] == "STATUS=a b"
    assert sent[1].startswith("RELOADING=1\nMONOTONIC_USEC=") and int(sent[1].split("\n")[1].split("=")[1]) > 0
    assert sent[2:] == ["READY=1\nSTATUS=done", "STOPPING=1\nSTATUS=bye"]


def test_health_check_stops_the_watchdog_when_the_dispatcher_is_stuck():
    from vidupd.service.daemon import healthy

    class P:
        last_beat = 100.0

    class W:
        alive = True

    assert healthy(P(), W(), 150.0, stuck_after=120) is None  # type: ignore[arg-type]
    assert "dispatcher silent for 130s" == healthy(P(), W(), 230.0, stuck_after=120)  # type: ignore[arg-type]
    W.alive = False
    assert healthy(P(), W(), 150.0, stuck_after=120) == "watcher thread stopped"  # type: ignore[arg-type]

"""[[notify]] webhooks with the real daemon and a receiver on loopback (issue 11): the chosen
events arrive as their event-log line, byte for byte, signed with HMAC-SHA256; a 500 is
retried with the same delivery id; a receiver that never answers does not hold up uploads,
and giving up is a notify.failed event."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import DaemonProcess, actions, vidupd, wait_for, write_config

pytestmark = pytest.mark.timeout(120)
SECRET = "hook-secret-4f1c9a"


class Receiver:
    """Answers 500 to the first delivery of each notification, 200 after; records all."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        seen: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                delivery = self.headers["X-Vidupd-Delivery"]
                status = 200 if delivery in seen else 500
                seen.add(delivery)
                outer.requests.append({"headers": dict(self.headers), "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _site(tmp_path, notify: str):
    outbox, dest = tmp_path / "outbox", tmp_path / "dest"
    outbox.mkdir()
    dest.mkdir()
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state"), "workers": 2},
                       {"arch": {"provider": "directory", "dest": str(dest)}},
                       [{"path": str(outbox), "targets": ["arch"], "settle_seconds": 0.5}],
                       {"events": str(tmp_path / "events.jsonl")})
    with open(cfg, "a") as f:
        f.write(notify)
    return cfg, outbox, tmp_path / "events.jsonl"


def test_events_are_posted_signed_and_retried_after_a_500(tmp_path):
    rx = Receiver()
    try:
        cfg, outbox, log = _site(tmp_path, f'[[notify]]\nurl = "{rx.url}"\nsecret = {{ env = "HOOK_SECRET" }}\n'
                                           'events = ["upload.completed", "upload.skipped"]\n')
        with DaemonProcess(cfg, log, env={"HOOK_SECRET": SECRET}) as d:
            for n in range(3):
                (outbox / f"c{n}.mp4").write_bytes(bytes([n]) * 5000)
            wait_for(lambda: len([r for r in rx.requests if r["status"] == 200]) >= 3, 60, what="3 deliveries")
            assert d.stop() == 0
    finally:
        rx.close()
    lines = {json.loads(raw)["event.id"]: raw.encode() for raw in log.read_text().splitlines()}
    completed = actions(log, "upload.completed")
    assert len(completed) == 3
    delivered = [r for r in rx.requests if r["status"] == 200]
    assert sorted(r["headers"]["X-Vidupd-Delivery"] for r in delivered) == sorted(e["event.id"] for e in completed)
    for r in rx.requests:
        h = r["headers"]
        assert h["X-Vidupd-Event"] == "upload.completed" and h["Content-Type"] == "application/json"
        assert r["body"] == lines[h["X-Vidupd-Delivery"]], "the event log's line, byte for byte"
        want = "sha256=" + hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(h["X-Vidupd-Signature-256"], want)
        assert SECRET not in r["body"].decode() and SECRET not in json.dumps(h)
    assert len(rx.requests) == 6, "each first delivery got a 500 and was sent again"
    assert not actions(log, "notify.failed")
    assert SECRET not in log.read_text()


def test_a_receiver_that_never_answers_does_not_hold_up_uploads(tmp_path):
    stuck = socket.socket()  # accepts connections (the backlog) and never answers
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)
    url = f"http://127.0.0.1:{stuck.getsockname()[1]}/hook?token=secret-token-in-query"
    try:
        cfg, outbox, log = _site(tmp_path, f'[[notify]]\nurl = "{url}"\ntimeout = 1\nattempts = 2\nqueue = 2\n')
        with DaemonProcess(cfg, log) as d:
            for n in range(6):
                (outbox / f"c{n}.mp4").write_bytes(bytes([n]) * 4000)
            wait_for(lambda: len(actions(log, "upload.completed")) == 6, 60, what="every upload")
            wait_for(lambda: actions(log, "notify.failed"), 60, what="the webhook giving up")
            assert d.stop() == 0
    finally:
        stuck.close()
    failed = actions(log, "notify.failed")
    assert all(e["log.level"] == "warn" and e["event.outcome"] == "failure" for e in failed)
    assert all("secret-token-in-query" not in json.dumps(e) for e in failed), "the URL's query is not logged"
    assert failed[0]["url.full"].endswith("/hook")
    assert any(e.get("vidupd.notified_action") == "upload.completed" for e in failed)


def test_notify_config_is_checked(tmp_path):
    cfg, _, _ = _site(tmp_path, '[[notify]]\nurl = "ftp://x"\nevents = ["notify.failed"]\nattempts = 0\n')
    r = vidupd("check-config", "-c", str(cfg))
    assert r.returncode == 2
    for key in ("notify[0].url", "notify[0].events", "notify[0].attempts"):
        assert key in r.stderr, r.stderr

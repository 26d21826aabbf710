"""What tests/test_corpus.py builds from tests/corpus/cases.toml: the manifest, each case's
entry in the outbox, the daemon's sites (VOD or Youku sandbox, in this process; the daemon a
subprocess), and a loopback listener that tells which process connected to it."""

from __future__ import annotations

import os
import socket
import stat
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import drop_random, write_config
from test_vod_e2e import Env as VodEnv
from test_youku_e2e import Env as YoukuEnv

from vidupd.core.fsnames import safe_text

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))["case"]
OUTCOMES = ("upload.completed", "upload.failed", "upload.skipped", "file.rejected", "upload.duplicate_remote_id")
CASE_SIZE = 60_000


def group(name: str) -> list[dict[str, Any]]:
    return [c for c in CASES if c["group"] == name]


def entry_path(outbox: Path, case: dict[str, Any]) -> Path:
    """The case's path in `outbox`, as the daemon sees it (surrogate-escaped if not UTF-8)."""
    if "name_hex" in case:
        return Path(os.fsdecode(os.fsencode(outbox) + b"/" + bytes.fromhex(case["name_hex"])))
    name = case["name"]
    if "pad" in case:
        name = "L" * (case["pad"] - len(name.encode())) + name
    return outbox / name


def build(outbox: Path, case: dict[str, Any], listener: "Listener | None" = None) -> Path:
    """Put the case's entry (and its sidecar) into `outbox`; its path."""
    path = entry_path(outbox, case)
    make = case["make"]
    if make == "fifo":
        os.mkfifo(path)
    elif make == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.fspath(path))
        s.close()  # the socket file stays
    elif make == "directory":
        path.mkdir()
    elif make == "symlink":
        os.symlink(case["link"], path)
    elif make in ("char-device", "block-device"):
        kind, dev = (stat.S_IFCHR, os.makedev(1, 3)) if make == "char-device" else (stat.S_IFBLK, os.makedev(7, 250))
        os.mknod(path, kind | 0o600, dev)
    elif make == "url":
        body = bytes.fromhex(case["url_hex"]) if "url_hex" in case else case["url"].encode()
        if listener is not None:
            body = body.replace(b"{listener}", listener.address.encode())
            body = body.replace(b"{port}", str(listener.port).encode())
        tmp = outbox / f".{path.name}.part"
        tmp.write_bytes(body)
        os.replace(tmp, path)
    elif make == "video":
        if case.get("size", CASE_SIZE) == 0:
            path.touch()
        else:
            tmp = drop_random(outbox / ".incoming", case.get("size", CASE_SIZE))
            os.rename(tmp, path)
    else:
        raise ValueError(f"case {case['id']}: unknown make {make!r}")
    _sidecar(path, case)
    return path


def _sidecar(path: Path, case: dict[str, Any]) -> None:
    side = Path(os.fsdecode(os.fsencode(path) + b".json"))
    if "sidecar" in case:
        side.write_bytes((CORPUS / "sidecars" / case["sidecar"]).read_bytes())
    gen = case.get("sidecar_gen")
    if gen == "huge":
        side.write_bytes(b'{"title": "' + b"x" * (2 << 20) + b'"}')
    elif gen == "deep":
        side.write_bytes(b'{"title": "deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    elif gen == "fifo":
        os.mkfifo(side)
    elif gen == "directory":
        side.mkdir()


def about(events: list[dict], path: Path) -> list[dict]:
    """The outcome events (one of OUTCOMES) whose file.path is `path`."""
    shown = safe_text(path)
    return [e for e in events if e.get("file.path") == shown and e["event.action"] in OUTCOMES]


def check_outcome(case: dict[str, Any], found: list[dict]) -> dict | None:
    """Assert the case produced its expected event exactly once (and nothing else); that event."""
    if case["expect"] == "none":
        assert found == [], found
        return None
    expect = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
    assert [e["event.action"] for e in found] == expect, found
    event = found[0]
    if "reason" in case:
        said = " ".join(str(event.get(k, "")) for k in ("vidupd.reason", "error.message", "message"))
        assert case["reason"] in said, event
    return event


@dataclass
class Listener:
    """A loopback HTTP server with one small file: each connection is put down to the process
    that opened it (found by its socket's inode in /proc), so a test can prove which one did."""

    body: bytes = field(default_factory=lambda: os.urandom(40_000))
    peers: list[str] = field(default_factory=list)  # "pid:N" per connection, or "unknown"

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, (_, port) = self.sock.accept()
            except OSError:
                return
            self.peers.append(_owner_of_local_port(port))
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
                                 + f"Content-Length: {len(self.body)}\r\n\r\n".encode() + self.body)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _owner_of_local_port(port: int) -> str:
    """The pid holding the TCP socket whose local port is `port` (the client end of a
    connection on loopback), from /proc/net/tcp{,6} and every /proc/PID/fd."""
    inode = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] != "0":
                    inode = cols[9]
    if not inode:
        return "unknown"
    target = f"socket:[{inode}]"
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return f"pid:{pid}"
            except OSError:  # closed meanwhile (another thread of that process)
                continue
    return "unknown"


class VodSite(VodEnv):
    """The VOD sandbox and the daemon's config: rescans every second, fast retries."""

    def __init__(self, root: Path, target: dict[str, Any] | None = None, **options: Any):
        super().__init__(root, **options)
        creds = self.vod.credentials
        write_config(self.config, {"state_dir": str(self.state), "workers": 3, "rescan_interval": 1},
                     {"vod": {"provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
                              "access_key_id": creds["access_key_id"], "access_key_secret": self.secret,
                              "ready_timeout": 60, "request_timeout": 10, **(target or {})}},
                     [{"path": str(self.outbox), "targets": ["vod"], "settle_seconds": 0.5}],
                     {"events": str(self.events), "level": "info"})
        with open(self.config, "a") as f:
            f.write("[retry]\nattempts = 4\ninitial_backoff = 0.2\nmax_backoff = 1.0\n")


SITES = {"vod": VodSite, "youku": YoukuEnv}

"""The fleet harness (issue 13): several real `vidupd run` daemons, each with its own state
dir and (as root) its own host name, on one outbox and one PostgreSQL ledger, against the
sandboxes of both platforms (VOD with its OSS bucket, Youku's OSS flow) in this process.
Shared by tests/test_fleet_e2e.py, tests/test_fleet_netns.py and benchmarks/bench_fleet.py.

A host name of its own (a UTS namespace, `unshare --uts`, as root) makes each daemon a
host as the ledger sees it: lease owners, `host.hostname` in events, and no same-host
shortcut (a dead pid on this host frees its leases at once; another host's must expire).
`unshare` and `ip netns exec` both exec, so the daemon keeps the pid Popen gives it.

Re-sent bytes are counted by content: every part an OSS sandbox stores is recorded with
the MD5 of its body, and a file's parts are known by theirs (`part_digests`), so the bytes
received for one file add up over every upload id and object key a client may have used.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import requests
from helpers import FAST_RETRY, DaemonProcess, actions, toml_value, write_config

from vidupd.core.secrets import Secret
from vidupd.ledger import Job, Ledger, LedgerSettings, open_ledger
from vidupd.sandbox.common import OPEN_UPLOADS_PATH, SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox
from vidupd.sandbox.youku import YoukuSandbox

MiB = 1 << 20
PASSWORD_ENV = "VIDUPD_TEST_PG_PASSWORD"
PROVIDER_TARGET = {"aliyun-vod": "vod", "youku": "youku"}  # uploads.jsonl's provider -> the target name

@functools.lru_cache(maxsize=1)
def own_hostnames() -> bool:
    """Whether each daemon can get a host name of its own: root, util-linux's unshare, and a
    UTS namespace allowed here (a container may refuse it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "--uts", "--", "hostname", "vidupd-probe"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def daemon_command(hostname: str | None, netns: str | None = None) -> list[str]:
    """argv before `run -c CFG`: python -m vidupd, in its own UTS namespace, maybe in a netns."""
    cmd = [sys.executable, "-m", "vidupd"]
    if hostname and own_hostnames():
        cmd = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *cmd]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd


def part_digests(path: Path, part_size: int) -> set[str]:
    """MD5s of the file's parts as a client cuts them (`part_size` bytes each, the last shorter)."""
    out = set()
    with open(path, "rb") as f:
        while block := f.read(part_size):
            out.add(hashlib.md5(block).hexdigest())
    return out


class PartCounter:
    """Every UploadPart body one OSS sandbox stored (repeats included): (MD5, size, upload id)."""

    def __init__(self, oss: OssSandbox):
        self.parts: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        store, commit = oss.store, oss.store.commit_part

        def counted(upload_id, key, number, staged, digest):  # type: ignore[no-untyped-def]
            part = commit(upload_id, key, number, staged, digest)
            with self._lock:
                self.parts.append((part.md5, part.size, upload_id))
            return part

        store.commit_part = counted  # type: ignore[method-assign]

    def of(self, digests: set[str]) -> tuple[int, int, set[str]]:
        """(parts, bytes, upload ids) stored whose bodies are among `digests` (one file's parts)."""
        with self._lock:
            mine = [p for p in self.parts if p[0] in digests]
        return len(mine), sum(p[1] for p in mine), {p[2] for p in mine}


class Platforms:
    """VOD (+ its OSS bucket) and Youku (OSS flow) in this process, one uploads.jsonl."""

    def __init__(self, root: Path, **options: object):
        opts = SandboxOptions(oss_signature="both", hash_only=True, **options)  # type: ignore[arg-type]
        self.journal = UploadsJournal(root / "uploads.jsonl")
        self.oss = OssSandbox(root / "sandbox", opts, self.journal)
        self.vod = VodSandbox(root / "sandbox", opts, self.journal, self.oss, status_delays=(0.2, 0.3))
        self.youku = YoukuSandbox(root / "youku", opts, self.journal, encode_seconds=0.3)
        self._started: list = []
        for s in (self.oss, self.vod, self.youku):
            s.start()
            self._started.append(s)
        self.parts = {"vod": PartCounter(self.oss), "youku": PartCounter(self.youku.oss)}
        self.meters = {"vod": self.oss.received, "youku": self.youku.oss.received}

    def targets(self, part_size: int, part_concurrency: int = 1) -> dict[str, dict]:
        v, y = self.vod.credentials, self.youku.credentials
        return {
            "vod": {"provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
                    "access_key_id": v["access_key_id"], "access_key_secret": v["access_key_secret"],
                    "part_size": part_size, "part_concurrency": part_concurrency, "ready_timeout": 120},
            "youku": {"provider": "youku", "api_base": self.youku.api_base, "client_id": y["client_id"],
                      "client_secret": y["client_secret"], "access_token": y["access_token"],
                      "refresh_token": y["refresh_token"], "confirm_wait": 1, "part_size": part_size,
                      "part_concurrency": part_concurrency, "upload_protocol": "oss", "ready_timeout": 120},
        }

    def open_uploads(self) -> dict[str, list]:
        """What both platforms hold open, as their sandboxes list it over HTTP."""
        youku = requests.get(f"{self.youku.api_base}{OPEN_UPLOADS_PATH}", timeout=10).json()
        vod = requests.get(f"http://{self.vod.endpoint}{OPEN_UPLOADS_PATH}", timeout=10).json()
        return {"multipart": vod["oss_multipart"] + youku["oss_multipart"], "tokens": youku["youku_tokens"],
                "vod_uploading": vod["vod_uploading"]}

    def opened_for(self, left: dict[str, list]) -> list[tuple[str, str, str]]:
        """(target, remote handle, file name) of what `open_uploads` listed: a Youku token's
        session names its file, a VOD video its title (the file's stem). Read from the
        sandboxes' own state (test-only peeks); multipart uploads are not mapped."""
        out = []
        for t in left["tokens"]:
            session = self.youku.store._sessions.get(t["upload_token"])  # noqa: SLF001
            out.append(("youku", t["upload_token"], session.meta.file_name if session else "?"))
        for media_id in left["vod_uploading"]:
            rec = self.vod.state._media.get(media_id)  # noqa: SLF001
            out.append(("vod", media_id, f"{rec.title}.mp4" if rec else "?"))
        return out

    def journal_ids(self) -> dict[str, Counter]:
        """target -> Counter of the remote ids uploads.jsonl holds (each should be there once)."""
        out: dict[str, Counter] = {t: Counter() for t in PROVIDER_TARGET.values()}
        for e in self.journal.entries():
            out[PROVIDER_TARGET[e["provider"]]][e["remote_id"]] += 1
        return out

    def close(self) -> None:
        for s in reversed(self._started):
            s.shutdown()


@dataclass
class Host:
    """One daemon of the fleet: its own folder (state dir, config, event log)."""

    name: str
    root: Path
    config: Path
    events: Path
    daemon: DaemonProcess
    alive: bool = True
    notes: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def holds(self, job: Job) -> bool:
        """Whether the job's lease owner (host:pid:start) is this daemon."""
        return bool(job.lease_owner) and job.lease_owner.split(":")[1:2] == [str(self.pid)]

    def count(self, action: str) -> int:
        return len(actions(self.events, action))


def host_config(root: Path, outbox: Path, targets: dict[str, dict], ledger_url: str, *, lease: float,
                workers: int, max_rate: str | None = None, poll_interval: float = 0.5,
                ledger_table: str | None = None) -> tuple[Path, Path]:
    """(config, event log) of one host: the shared outbox polled (as on NFS), the shared
    ledger with a short `lease`, fast retries. `ledger_table`: a [ledger] table's text to
    use instead of `ledger_url` (bench_pipeline's, whose password comes from its env)."""
    root.mkdir(parents=True, exist_ok=True)
    config, events = root / "vidupd.toml", root / "events.jsonl"
    top = {"state_dir": str(root / "state"), "workers": workers, **({"max_rate": max_rate} if max_rate else {})}
    write_config(config, top, targets, [{"path": str(outbox), "targets": list(targets), "settle_seconds": 0.5,
                                         "poll": True, "poll_interval": poll_interval}], {"events": str(events)})
    if ledger_table is None:
        ledger = {"url": ledger_url, "password": {"env": PASSWORD_ENV}}
        ledger_table = "[ledger]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in ledger.items())
    with open(config, "a") as f:
        f.write(f"{ledger_table.rstrip()}\nlease = {toml_value(f'{lease:g}s')}\n{FAST_RETRY}")
    return config, events


def make_host(root: Path, name: str, outbox: Path, targets: dict[str, dict], ledger_url: str, password: str, *,
              lease: float, workers: int, max_rate: str | None = None, netns: str | None = None) -> Host:
    config, events = host_config(root / name, outbox, targets, ledger_url, lease=lease, workers=workers,
                                 max_rate=max_rate)
    daemon = DaemonProcess(config, events, env={PASSWORD_ENV: password},
                           command=daemon_command(name, netns))
    return Host(name, root / name, config, events, daemon)


class LedgerView:
    """The shared ledger as the test reads it (read-only, through vidupd's own opener; opened
    at the first read, once a daemon has created it)."""

    def __init__(self, url: str, password: str):
        self.settings = LedgerSettings(url, Secret(password))
        self.ledger: Ledger | None = None

    def jobs(self, states: Iterable[str] | None = None) -> list[Job]:
        if self.ledger is None:
            self.ledger = open_ledger(self.settings, Path("/nonexistent"), readonly=True)
        return self.ledger.jobs(states)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()

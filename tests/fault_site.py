"""The fault suites' common ground (tests/test_full_disk_suite.py, tests/test_network_faults.py):
the sandbox in its own process (so it can be frozen, or reached through a relay), the real
daemon watching an outbox into its VOD target, and the one check every campaign ends with:
each file has exactly one remote id, and the ledger, the event log and the sandbox's
uploads.jsonl agree on it and on the file's MD5."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

from helpers import FAST_RETRY, ROOT, DaemonProcess, actions, md5_file, write_config

sys.path.insert(0, str(ROOT))
from benchmarks._harness import SandboxProcess  # noqa: E402  (the sandbox in its own process)


class FaultSite:
    """A sandbox process started with `sandbox_args` (fault switches), an outbox, and a
    daemon config whose VOD target may point elsewhere (`endpoint`: a relay)."""

    def __init__(self, root: Path, sandbox_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.root = root
        self.outbox = root / "outbox"
        self.outbox.mkdir(exist_ok=True)
        self.state = root / "state"
        self.events = root / "events.jsonl"
        self.config = root / "vidupd.toml"
        self.sandbox = SandboxProcess(root / "sb", 30, "vod", env=env, extra_args=sandbox_args, hash_only=False)
        self.frozen = False

    @property
    def endpoint(self) -> str:
        return str(self.sandbox.target["endpoint"])

    def write(self, state_dir: Path | None = None, events: Path | None = None, endpoint: str | None = None,
              workers: int = 2, target: dict | None = None, retry: str = FAST_RETRY) -> Path:
        self.state = state_dir or self.state
        self.events = events or self.events
        vod = {k: self.sandbox.target[k] for k in ("provider", "endpoint", "region", "access_key_id",
                                                    "access_key_secret")}
        vod.update(endpoint=endpoint or self.endpoint, ready_timeout=120, **(target or {}))
        write_config(self.config, {"state_dir": str(self.state), "workers": workers, "rescan_interval": 1},
                     {"vod": vod}, [{"path": str(self.outbox), "targets": ["vod"], "settle_seconds": 0.5}],
                     {"events": str(self.events), "level": "info"})
        with open(self.config, "a") as f:
            f.write(retry)
        return self.config

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.config, self.events)

    def completed(self) -> list[dict]:
        return actions(self.events, "upload.completed")

    def close(self) -> None:
        if self.frozen:
            self.sandbox.proc.send_signal(signal.SIGCONT)  # a frozen sandbox cannot stop
        self.sandbox.stop()


def ledger_rows(state: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(path, state, remote_id, md5) of every job, read straight from the SQLite file."""
    db = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT path, state, remote_id, md5 FROM jobs ORDER BY id"))
    finally:
        db.close()


def integrity(state: Path) -> str:
    db = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def assert_exactly_once(site: FaultSite, files: list[Path]) -> None:
    """Every file: one job done with one remote id; one upload.completed line (or a line
    re-emitted from the ledger) with that id; one sandbox object with that id and the
    file's MD5; and nothing uploaded that is not one of the files."""
    want = {str(p): md5_file(p) if p.exists() else None for p in files}
    rows = ledger_rows(site.state)
    assert sorted(r[0] for r in rows) == sorted(want), rows
    assert all(r[1] == "done" and r[2] for r in rows), rows
    remote = {r[0]: r[2] for r in rows}
    journal = site.sandbox.entries()
    ids = Counter(e["remote_id"] for e in journal)
    assert len(journal) == len(files) and set(ids.values()) == {1}, f"uploaded twice or too often: {ids}"
    by_id = {e["remote_id"]: e for e in journal}
    done = [e for e in actions(site.events, "upload.completed")]
    reemitted = [e for e in actions(site.events, "event_log.reemitted") if e.get("vidupd.remote_id")]
    seen = Counter(e["file.path"] for e in done + reemitted)
    for path, md5 in want.items():
        rid = remote[path]
        assert by_id[rid]["md5"] == md5, f"{path}: the sandbox holds other bytes"
        assert seen[path] == 1, f"{path}: {seen[path]} completion line(s) in the event log"
        assert {e["vidupd.remote_id"] for e in done + reemitted if e["file.path"] == path} == {rid}


def outcome_counts(events: Path) -> dict[str, int]:
    """How many lines of each action the event log holds (for the notes and failures)."""
    counts: Counter[str] = Counter()
    try:
        for line in events.read_text().splitlines():
            try:
                counts[json.loads(line).get("event.action", "?")] += 1
            except ValueError:
                counts["<torn line>"] += 1
    except FileNotFoundError:
        pass
    return dict(counts)

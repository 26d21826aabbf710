"""The crash campaign's site (tests/test_crash_campaign.py): the real daemon against VOD
(+ its OSS), one Youku sandbox for the OSS flow and one for the six-step slice flow, each
with its own uploads journal, files moved after upload to a tmpfs (another file system, so
the move is a copy), and the end checks: one remote id per file and target in the ledger,
the event log and the journals, matching MD5s, nothing left open on the platforms."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import SandboxSite, actions, append_fast_retry, md5_file, write_config

from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox
from vidupd.sandbox.youku import YoukuSandbox

MiB = 1 << 20
TARGETS = ("vod", "youku-oss", "youku-slices")
HOLD = 0.8  # seconds each held answer waits (the campaign kills inside that window)
RECORD_WINDOW = 0.5  # seconds after an answer left in which a kill may still beat its checkpoint
# Answers held after the server acted: each is a chosen kill moment (see test_crash_campaign).
HOLDS = {"vod": "CreateUploadVideo,InitiateMultipartUpload,CompleteMultipartUpload",
         "youku-oss": "create,InitiateMultipartUpload,CompleteMultipartUpload,commit",
         "youku-slices": "create,create_file,commit"}


def _spec(names: str) -> str:
    return ",".join(f"{n}={HOLD}" for n in names.split(","))


class CrashSite(SandboxSite):
    """Three targets, three journals; `boxes[target]` is the sandbox object whose `holds`
    and `oss` the campaign watches."""

    def __init__(self, root: Path, workers: int = 3, part_size: int = MiB):
        super().__init__(root)
        box = root / "sandbox"
        self.journals = {t: UploadsJournal(root / f"uploads-{t}.jsonl") for t in TARGETS}
        vod_opts = SandboxOptions(hold_answer=_spec(HOLDS["vod"]))
        self.oss = OssSandbox(box / "vod-oss", vod_opts, self.journals["vod"])
        self.vod = VodSandbox(box / "vod", vod_opts, self.journals["vod"], self.oss, status_delays=(0.1, 0.1))
        self.youku = {t: YoukuSandbox(box / t, SandboxOptions(hold_answer=_spec(HOLDS[t])), self.journals[t],
                                      encode_seconds=0.1) for t in TARGETS[1:]}
        self.oss.start()
        self.vod.start()
        for y in self.youku.values():
            y.start()
        self._moved = tempfile.TemporaryDirectory(dir="/dev/shm", prefix="vidupd-crash-")
        self.moved = Path(self._moved.name)  # tmpfs: after_upload = "move" copies across file systems
        vc = self.vod.credentials
        targets: dict[str, dict[str, Any]] = {"vod": {
            "provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
            "access_key_id": vc["access_key_id"], "access_key_secret": vc["access_key_secret"],
            "part_size": part_size, "part_concurrency": 2, "ready_timeout": 60}}
        for t, protocol in (("youku-oss", "oss"), ("youku-slices", "slices")):
            yc = self.youku[t].credentials
            targets[t] = {"provider": "youku", "api_base": self.youku[t].api_base, "client_id": yc["client_id"],
                          "client_secret": yc["client_secret"], "access_token": yc["access_token"],
                          "refresh_token": yc["refresh_token"], "confirm_wait": 1, "part_size": part_size,
                          "part_concurrency": 2, "upload_protocol": protocol, "ready_timeout": 60}
        write_config(self.config, {"state_dir": str(self.state), "workers": workers}, targets,
                     [{"path": str(self.outbox), "targets": list(TARGETS), "settle_seconds": 0.3,
                       "after_upload": "move", "move_to": str(self.moved)}],
                     {"events": str(self.events)})
        append_fast_retry(self.config)

    # ----- what the campaign watches -----
    def holding(self, name: str) -> bool:
        """Whether some sandbox is holding an answer of `name` right now."""
        boxes = [self.vod, self.oss, *self.youku.values(), *(y.oss for y in self.youku.values())]
        return any(getattr(b, "holds", None) is not None and b.holds.holding(name) for b in boxes)

    def unanswered(self) -> dict[str, int]:
        """Answers whose request leaves a handle open on the platform if the client never
        records them (read just after a kill): held now, or sent in the last RECORD_WINDOW
        seconds (heard, maybe not yet checkpointed); by open_uploads() kind."""
        def unheard(holds: Any, name: str) -> int:  # held now, or just answered and maybe not yet recorded
            return holds.holding(name) + holds.just_released(name, RECORD_WINDOW)

        out = {"vod_multipart": unheard(self.oss.holds, "InitiateMultipartUpload")}
        for t, y in self.youku.items():
            out[f"{t}_tokens"] = unheard(y.holds, "create")
            out[f"{t}_multipart"] = unheard(y.oss.holds, "InitiateMultipartUpload")
        return out

    def parts_received(self) -> int:
        return self.oss.parts_received + sum(y.oss.parts_received + y.slice_bytes_received for y in self.youku.values())

    def finished(self) -> int:
        """(file, target) pairs the ledger holds as done."""
        return len([r for r in self.ledger_rows() if r["state"] == "done"])

    def ledger_rows(self) -> list[sqlite3.Row]:
        path = self.state / "ledger.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT path, target, state, remote_id, md5 FROM jobs").fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
        finally:
            db.close()

    def open_uploads(self) -> dict[str, list]:
        vod = self.vod.open_uploads()
        out = {"vod_multipart": vod["oss_multipart"], "vod_uploading": vod["vod_uploading"]}
        for t, y in self.youku.items():
            left = y.open_uploads()
            out[f"{t}_tokens"], out[f"{t}_multipart"] = left["youku_tokens"], left["oss_multipart"]
        return out

    def close(self) -> None:
        for y in self.youku.values():
            y.shutdown()
        self.vod.shutdown()
        self.oss.shutdown()
        self._moved.cleanup()


@dataclass
class Verdict:
    """What the end checks found; `problems` empty means the campaign passed."""

    problems: list[str] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)  # open handles left, by kind

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)


def verify(site: CrashSite, files: dict[str, str], allowed_leaks: dict[str, int]) -> Verdict:
    """files: name -> MD5 of every file dropped. allowed_leaks: kind -> how many open handles
    the documented limits allow (a kill while a create's or an initiate's answer was held)."""
    v = Verdict()
    rows = site.ledger_rows()
    ledger: dict[tuple[str, str], list[sqlite3.Row]] = defaultdict(list)
    for r in rows:
        ledger[(Path(r["path"]).name, r["target"])].append(r)
    completed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in actions(site.events, "upload.completed"):
        completed[(Path(e["file.path"]).name, e["vidupd.target"])].add(e["vidupd.remote_id"])
    journal: dict[str, dict[str, list[dict]]] = {t: defaultdict(list) for t in TARGETS}
    for t in TARGETS:
        for e in site.journals[t].entries():
            journal[t][e["md5"]].append(e)
    for name, md5 in files.items():
        for t in TARGETS:
            jobs = ledger[(name, t)]
            done = [r for r in jobs if r["state"] == "done"]
            v.check(len(jobs) == 1 and len(done) == 1 and bool(done[0]["remote_id"]),
                    f"{name} -> {t}: ledger holds {[(r['state'], r['remote_id']) for r in jobs]}")
            rid = done[0]["remote_id"] if done else None
            v.check(completed[(name, t)] == {rid}, f"{name} -> {t}: events name {completed[(name, t)]}, ledger {rid}")
            ids = {e["remote_id"] for e in journal[t][md5]}
            v.check(ids == {rid} and len(journal[t][md5]) == 1,
                    f"{name} -> {t}: journal has {len(journal[t][md5])} entries {ids}, ledger {rid}")
    for t in TARGETS:  # nothing journaled that no file accounts for (an upload of a torn copy, say)
        stray = set(journal[t]) - set(files.values())
        v.check(not stray, f"{t}: journal holds content no dropped file has: {sorted(stray)}")
    for kind, left in site.open_uploads().items():
        v.leaks[kind] = len(left)
        allowed = allowed_leaks.get(kind, 0)
        v.check(len(left) <= allowed, f"open on the platform: {kind} {left} (allowed {allowed})")
    return v


def moved_intact(site: CrashSite, files: dict[str, str]) -> list[str]:
    """Files under the move folder whose content is no dropped file's (a torn copy); the
    hidden partial copy a kill mid-copy leaves (`.NAME.vidupd-moving`) is not one."""
    good = set(files.values())
    return [str(p) for p in site.moved.rglob("*")
            if p.is_file() and not p.name.endswith(".vidupd-moving") and md5_file(p) not in good]

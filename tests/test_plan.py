"""The dry-run plan (vidupd.intake.plan) against a real ledger, for what the e2e case does
not reach: order and priority of new and queued work, a new version of a queued file,
queued jobs no watched file stands for, ready markers, refused files, covers."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import write_config

from vidupd.config import load
from vidupd.core.model import FileIdentity, Metadata
from vidupd.intake.plan import plan
from vidupd.ledger import Intent, Ledger


def config(root: Path, order: str = "oldest", **watch) -> Path:
    for d in ("out", "urgent", "dest"):
        (root / d).mkdir(exist_ok=True)
    return write_config(root / "v.toml", {"state_dir": str(root / "state"), "order": order},
                        {"arch": {"provider": "directory", "dest": str(root / "dest")}},
                        [{"path": str(root / "out"), "targets": ["arch"], **watch},
                         {"path": str(root / "urgent"), "targets": ["arch"], "priority": 3}])


def rows(entries) -> list[tuple[str, str]]:
    return [(e.path.name, e.action) for e in entries]


def test_new_and_queued_work_in_claim_order_then_the_rest(tmp_path: Path):
    cfg = load(config(tmp_path, order="largest"))
    out, urgent = tmp_path / "out", tmp_path / "urgent"
    for name, size in (("small.mp4", 10), ("big.mp4", 30), ("mid.mp4", 20)):
        (out / name).write_bytes(b"x" * size)
    (urgent / "tiny.mp4").write_bytes(b"u")
    (out / "queued.mp4").write_bytes(b"q" * 5)
    (out / "v2.mp4").write_bytes(b"new content")
    elsewhere = tmp_path / "oneshot.mp4"
    elsewhere.write_bytes(b"o" * 99)
    ledger = Ledger(cfg.state_dir)
    st = os.stat(out / "queued.mp4")
    ledger.offer_many([Intent(out / "queued.mp4", str(out), (("arch", "video"),), FileIdentity.of(st), Metadata("q"), 9),
                       Intent(out / "v2.mp4", str(out), (("arch", "video"),), FileIdentity(1, 1, 4, 1), Metadata("v")),
                       Intent(elsewhere, None, (("arch", "video"),), FileIdentity.of(os.stat(elsewhere)),
                              Metadata("o"))])
    entries = plan(cfg, ledger)
    ledger.close()
    assert rows(entries) == [("queued.mp4", "queued"), ("tiny.mp4", "upload"), ("oneshot.mp4", "queued"),
                             ("big.mp4", "upload"), ("mid.mp4", "upload"), ("v2.mp4", "upload"),
                             ("small.mp4", "upload")]  # priority 9, 3, then the largest first
    by_name = {e.path.name: e for e in entries}
    assert "starts over" in by_name["v2.mp4"].detail and by_name["v2.mp4"].job_id is not None
    assert "not in a watched folder now" in by_name["oneshot.mp4"].detail
    assert by_name["tiny.mp4"].priority == 3 and by_name["queued.mp4"].priority == 9


def test_markers_refusals_and_kinds_a_target_does_not_take(tmp_path: Path):
    cfg = load(config(tmp_path, ready_marker=".done"))
    out = tmp_path / "out"
    (out / "ready.mp4").write_bytes(b"r")
    (out / "ready.mp4.done").write_text("")
    (out / "unready.mp4").write_bytes(b"u")
    (out / "bad.mp4").write_bytes(b"b")
    (out / "bad.mp4.json").write_text("{not json")
    os.mkfifo(out / "pipe.mp4")
    (out / "page.url").write_text("http://example.invalid/x.mp4\n")
    entries = plan(cfg, None)  # no ledger yet: everything is new
    assert rows(entries) == [("ready.mp4", "upload"), ("bad.mp4", "refused"), ("page.url", "waiting"),
                             ("pipe.mp4", "refused"), ("unready.mp4", "waiting")]
    by_name = {e.path.name: e for e in entries}
    assert "not valid JSON" in by_name["bad.mp4"].detail and "FIFO" in by_name["pipe.mp4"].detail
    assert "ready marker unready.mp4.done" in by_name["unready.mp4"].detail

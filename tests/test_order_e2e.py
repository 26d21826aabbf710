"""Order, priority, per-target workers, `vidupd prioritize` and the dry run, end to end: the
real daemon (subprocess) against VOD + OSS sandboxes on loopback (one pair per target)."""

from __future__ import annotations

import json
import random
import shutil
from functools import partial
from pathlib import Path

import pytest
from helpers import SandboxSite, actions, append_fast_retry, drop_random as drop, read_events, vidupd, wait_for
from helpers import write_config as write_toml

from vidupd.sandbox.common import SandboxOptions
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox

KB = 1000


class Vod:
    """One VOD + OSS sandbox pair: one target."""

    def __init__(self, root: Path, site: SandboxSite, **options):
        opts = SandboxOptions(**options)
        self.oss = OssSandbox(root, opts, site.journal)
        self.vod = VodSandbox(root, opts, site.journal, self.oss, status_delays=(0.2, 0.3))
        self.oss.start()
        self.vod.start()

    def target(self, **extra) -> dict:
        c = self.vod.credentials
        return {"provider": "aliyun-vod", "endpoint": self.vod.endpoint, "region": self.vod.region,
                "access_key_id": c["access_key_id"], "access_key_secret": c["access_key_secret"],
                "wait_ready": False, **extra}

    def close(self) -> None:
        self.vod.shutdown()
        self.oss.shutdown()


class Site(SandboxSite):
    """The daemon against one sandbox pair per named target (`max_rate`: that pair's cap)."""

    def __init__(self, root: Path, rates: dict[str, int]):
        super().__init__(root)
        self.boxes = {name: Vod(root / f"sandbox-{name}", self, max_rate=rate) for name, rate in rates.items()}

    def configure(self, top: dict, watches: list[dict], caps: dict[str, int] | None = None) -> Path:
        targets = {name: box.target(**({"workers": caps[name]} if caps and name in caps else {}))
                   for name, box in self.boxes.items()}
        write_toml(self.config, {"state_dir": str(self.state), **top}, targets, watches, {"events": str(self.events)})
        return append_fast_retry(self.config)

    def started(self) -> list[dict]:
        return actions(self.events, "upload.started")

    def close(self) -> None:
        for box in self.boxes.values():
            box.close()


@pytest.fixture
def make(make_site):
    return partial(make_site, Site)


def names(events: list[dict]) -> list[str]:
    return [Path(e["file.path"]).name for e in events]


def most_at_once(events: list[dict], target: str) -> int:
    """The most uploads to `target` between upload.started and their end, at one time."""
    running: set[int] = set()
    most = 0
    for e in events:
        if e.get("vidupd.target") != target:
            continue
        if e["event.action"] == "upload.started":
            running.add(e["vidupd.job_id"])
            most = max(most, len(running))
        elif e["event.action"] in ("upload.completed", "upload.failed", "upload.retrying", "upload.interrupted"):
            running.discard(e["vidupd.job_id"])
    return most


def test_twenty_files_go_by_priority_then_smallest_first(make):
    site = make(rates={"vod": 0})
    high, low = site.root / "high", site.root / "low"
    high.mkdir()
    low.mkdir()
    sizes = random.Random(7).sample(range(20, 120), 20)  # distinct sizes, in KB, in no particular order
    for n, size in enumerate(sizes):
        drop((high if n % 5 < 2 else low) / f"f{n:02d}.mp4", size * KB)
    site.configure({"workers": 1, "order": "smallest"}, [
        {"path": str(low), "targets": ["vod"], "settle_seconds": 0.5},  # the first watch, and the default 0
        {"path": str(high), "targets": ["vod"], "settle_seconds": 0.5, "priority": 5}])
    with site.daemon() as d:
        wait_for(lambda: len(site.completed()) >= 20, 120, what="twenty uploads")
        assert d.stop() == 0
    by_size = lambda folder: [p.name for p in sorted(folder.iterdir(), key=lambda p: p.stat().st_size)]  # noqa: E731
    expected = by_size(high) + by_size(low)
    assert names(site.started()) == expected
    assert [e["size"] for e in site.journal.entries()] == [(high / n if (high / n).exists() else low / n).stat().st_size
                                                          for n in expected]  # the platform got them in that order


def test_a_slow_target_capped_at_one_worker_leaves_the_others_to_the_fast_one(make):
    site = make(rates={"slow": 500_000, "fast": 2_000_000})
    for n in range(4):
        drop(site.outbox / f"clip{n}.mp4", 900 * KB + n)
    site.configure({"workers": 3}, [{"path": str(site.outbox), "targets": ["slow", "fast"], "settle_seconds": 0.5}],
                   caps={"slow": 1})
    with site.daemon() as d:
        wait_for(lambda: len(site.completed()) >= 8, 120, what="eight uploads")
        assert d.stop() == 0
    events = read_events(site.events)
    assert most_at_once(events, "slow") == 1  # never more than its one worker
    assert most_at_once(events, "fast") == 2  # the two other workers were the fast target's, side by side
    done = [e["vidupd.target"] for e in site.completed()]
    assert done.count("fast") == 4 and done.count("slow") == 4
    assert done[-3:] == ["slow"] * 3, done  # the fast target's queue went through beside the slow one's first


def test_prioritize_moves_a_waiting_job_to_the_front(make):
    site = make(rates={"vod": 1_000_000})
    drop(site.outbox / "a.mp4", 8_000 * KB)  # about 8 s at the sandbox's 1 MB/s: time to reorder the rest
    for name in ("b.mp4", "c.mp4", "d.mp4"):
        drop(site.outbox / name, 100 * KB + len(name) + ord(name[0]))
    site.configure({"workers": 1, "order": "name"}, [{"path": str(site.outbox), "targets": ["vod"],
                                                       "settle_seconds": 0.5}])
    with site.daemon() as d:
        wait_for(lambda: site.started(), 60, what="the first upload")
        assert names(site.started()) == ["a.mp4"]
        jobs = {Path(e["file.path"]).name: e["vidupd.job_id"] for e in actions(site.events, "upload.queued")}
        out = vidupd("prioritize", "-c", str(site.config), str(jobs["d.mp4"]), "999", str(jobs["a.mp4"]))
        assert out.returncode == 1, out.stderr  # d moved; the unknown id and the running job are named
        assert f"1 job(s) now at priority 1: {jobs['d.mp4']}" in out.stdout
        assert "job 999: no such job" in out.stderr and f"job {jobs['a.mp4']}: not waiting (uploading)" in out.stderr
        assert len(site.started()) == 1, "the first upload ended before the reorder: the test proves nothing"
        wait_for(lambda: len(site.completed()) >= 4, 120, what="four uploads")
        assert d.stop() == 0
    assert names(site.started()) == ["a.mp4", "d.mp4", "b.mp4", "c.mp4"]
    assert vidupd("prioritize", "-c", str(site.config), str(jobs["b.mp4"])).returncode == 1  # done: not waiting


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dry_run_lists_new_done_and_duplicate_files_and_writes_nothing(make):
    site = make(rates={"vod": 0})
    drop(site.outbox / "a.mp4", 300 * KB)
    site.configure({"workers": 2}, [{"path": str(site.outbox), "targets": ["vod"], "settle_seconds": 0.5}])
    with site.daemon() as d:
        wait_for(lambda: site.completed(), 60, what="the first upload")
        assert d.stop() == 0
    (first,) = site.completed()
    shutil.copyfile(site.outbox / "a.mp4", site.outbox / "b.mp4")  # the same content under another name
    drop(site.outbox / "c.mp4", 200 * KB)
    (site.outbox / "c.mp4.json").write_text(json.dumps({"title": "Evening news"}))
    shutil.copyfile(site.outbox / "c.mp4", site.outbox / "c2.mp4")  # two new files, one content
    (site.outbox / "notes.txt").write_text("not media")
    state, journal = _tree(site.state), site.journal.entries()

    out = vidupd("run", "--dry-run", "--json", "-c", str(site.config))
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["order"] == "oldest"
    rows = [(Path(e["file"]).name, e["action"], e["target"], e["kind"], e["size"], e["title"], e["remote_id"])
            for e in plan["entries"]]
    remote = first["vidupd.remote_id"]
    assert rows == [("c.mp4", "upload", "vod", "video", 200_000, "Evening news", None),
                    ("a.mp4", "done", "vod", "video", 300_000, "a", remote),
                    ("b.mp4", "duplicate", "vod", "video", 300_000, "b", remote),
                    ("c2.mp4", "duplicate", "vod", "video", 200_000, "c2", None),
                    ("notes.txt", "not-sent", "vod", None, 9, None, None)]
    dup = plan["entries"][2]
    assert dup["job_id"] == first["vidupd.job_id"] and f"job {first['vidupd.job_id']}" in dup["detail"]
    assert [e["would_upload"] for e in plan["entries"]] == [True, False, False, False, False]
    assert "same content as c.mp4" in plan["entries"][3]["detail"]
    same = vidupd("check-config", "--show-plan", "--json", "-c", str(site.config))
    assert same.returncode == 0 and json.loads(same.stdout) == plan
    table = vidupd("run", "--dry-run", "-c", str(site.config))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("dry run: 1 upload(s) would start (200.0 kB)") and "1 done; 2 duplicate" in lines[0]
    assert lines[2].split()[:7] == ["1", "upload", "vod", "video", "200.0", "kB", "0"]
    assert "Evening news" in lines[2] and remote in lines[3] and "duplicate" in lines[4] and remote in lines[4]
    assert _tree(site.state) == state and site.journal.entries() == journal  # nothing written, nothing sent
    site.config.write_text(site.config.read_text().replace("workers = 2", "workers = 0"))
    assert vidupd("run", "--dry-run", "-c", str(site.config)).returncode == 2  # a bad config, as check-config

    site.config.write_text(site.config.read_text().replace("workers = 0", "workers = 2"))
    with site.daemon() as d:  # what the plan said is what the daemon does
        dups = lambda: [e for e in actions(site.events, "upload.skipped") if "vidupd.remote_id" in e]  # noqa: E731
        wait_for(lambda: len(site.completed()) >= 2 and len(dups()) >= 2, 60,
                 what="one of c and c2 uploaded, b and the other skipped as duplicates")
        assert d.stop() == 0
    skipped = {Path(e["file.path"]).name: e["vidupd.remote_id"] for e in dups()}
    sent = {Path(e["file.path"]).name: e["vidupd.remote_id"] for e in site.completed()[1:]}
    ((sent_name, sent_id),) = sent.items()  # one of the two identical new files went, the other was skipped
    other = ({"c.mp4", "c2.mp4"} - {sent_name}).pop()
    assert sent_name in ("c.mp4", "c2.mp4") and skipped == {"b.mp4": remote, other: sent_id}
    assert len(site.journal.entries()) == 2 and site.journal.entries()[0]["title"] == "a"

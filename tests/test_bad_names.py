"""Issue 8, points 1 and 8: a file with a name the system finds awkward (non-UTF-8 bytes,
251-255 bytes so its `NAME.ext.json` sidecar cannot exist, a symbolic link loop, a
dangling link) is that file's problem only. The real daemon, real files: a good file dropped
next to it is uploaded within the settle time + 5 s, the odd file gets exactly one outcome
(uploaded with a safe title, or refused once), nothing crashes, nothing repeats."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest
from helpers import DaemonProcess, drop_random, md5_file, read_events, vidupd, wait_for
from test_vod_e2e import Env as VodEnv
from test_youku_e2e import Env as YoukuEnv

from vidupd.core import events
from vidupd.core.events import LogConfig
from vidupd.core.fsnames import path_from_db, path_to_db, safe_text
from vidupd.core.model import FileIdentity, Metadata
from vidupd.intake.offers import Intake
from vidupd.intake.sidecar import read_metadata
from vidupd.ledger import Failed, Intent, Ledger

OUTCOMES = ("upload.completed", "upload.failed", "upload.skipped", "file.rejected")
# names of the outbox entries, as bytes: what the file system holds
NON_UTF8 = b"\xff\xfe clip.mp4"
LONG = {n: b"L" * (n - 4) + b".mp4" for n in range(251, 256)}  # NAME.mp4.json would be 256-260 bytes
BAD_NAMES = {"non-utf8": NON_UTF8, **{f"{n}-bytes": name for n, name in LONG.items()}}


def bad_file(outbox: Path, name: bytes, size: int = 100_000) -> Path:
    """Written under a hidden name, then renamed (as a careful writer would); the Path the
    daemon sees (surrogate-escaped if the name is not UTF-8)."""
    tmp = os.fsencode(outbox) + b"/.incoming"
    with open(tmp, "wb") as f:
        f.write(os.urandom(size))
    final = os.fsencode(outbox) + b"/" + name
    os.rename(tmp, final)
    return Path(os.fsdecode(final))


def _daemon(site) -> DaemonProcess:
    return DaemonProcess(site.config, site.events)


def about(events_path: Path, path: Path) -> list[dict]:
    """Every event whose file.path is `path` (as the event log shows it: escaped)."""
    return [e for e in read_events(events_path) if e.get("file.path") == safe_text(path)]


def outcomes(events_path: Path, path: Path) -> list[dict]:
    return [e for e in about(events_path, path) if e["event.action"] in OUTCOMES]


def errors_logged(events_path: Path) -> list[dict]:
    """Error lines that are not about one file (the watcher's catch-all, a crash...)."""
    return [e for e in read_events(events_path) if e["log.level"] == "error" and e["event.action"] == "log"]


def uploaded_in_time(events_path: Path, path: Path, settle: float) -> dict:
    """The good file's upload.completed, within settle time + 5 s of its drop."""
    return wait_for(lambda: next(iter(e for e in outcomes(events_path, path)
                                      if e["event.action"] == "upload.completed"), None),
                    settle + 5, what=f"{path.name} uploaded within settle + 5 s")


# -- directory provider: every bad name ----------------------------------------------------

@pytest.mark.parametrize("label", list(BAD_NAMES))
def test_bad_name_uploaded_and_a_good_file_beside_it_too(site, label):
    site.write(top={"rescan_interval": 1}, watch={"settle_seconds": 0.5})
    with _daemon(site) as d:
        bad = bad_file(site.outbox, BAD_NAMES[label])
        time.sleep(1.0)  # the bad file is seen first (on the original code it stalls every later file)
        good = drop_random(site.outbox / "good.mp4", 50_000)
        uploaded_in_time(site.events, good, 0.5)
        wait_for(lambda: outcomes(site.events, bad), 10, what="the bad name's outcome")
        time.sleep(2.5)  # a few rescans: nothing about it may repeat
        assert d.stop() == 0
    (done,) = outcomes(site.events, bad)  # exactly one outcome: uploaded
    assert done["event.action"] == "upload.completed"
    assert json.dumps(done, ensure_ascii=False).encode("utf-8")  # valid UTF-8 in the log
    manifest = json.loads((site.dest / f"{done['vidupd.remote_id']}.json").read_text(encoding="utf-8"))
    assert manifest["md5"] == md5_file(bad)
    assert manifest["source"] == safe_text(bad.name) and manifest["title"] == safe_text(bad.stem)
    assert not errors_logged(site.events)
    assert [a["event.action"] for a in about(site.events, bad)].count("upload.queued") == 1
    # the ledger kept the exact name: `status` shows it escaped and the job is done
    out = vidupd("status", "-c", str(site.config), "--all")
    assert out.returncode == 0, out.stderr
    (row,) = [line for line in out.stdout.splitlines() if done["vidupd.remote_id"] in line]
    assert safe_text(bad.name) in row
    js = vidupd("status", "-c", str(site.config), "--json")
    assert js.returncode == 0, js.stderr
    assert {j["file"]: j["state"] for j in json.loads(js.stdout)["jobs"]}[safe_text(bad)] == "done"


# -- both platforms: non-UTF-8 and the longest name ----------------------------------------

@pytest.fixture(params=["youku", "vod"])
def platform_env(request, make_site):
    return partial(make_site, {"youku": YoukuEnv, "vod": VodEnv}[request.param])


@pytest.mark.parametrize("label", ["non-utf8", "255-bytes"])
def test_platforms_take_bad_names_with_safe_titles(platform_env, label):
    env = platform_env()
    with env.daemon() as d:
        bad = bad_file(env.outbox, BAD_NAMES[label])
        time.sleep(1.0)
        good = drop_random(env.outbox / "good.mp4", 50_000)
        uploaded_in_time(env.events, good, 0.5)
        wait_for(lambda: outcomes(env.events, bad), 30, what="the bad name's outcome")
        time.sleep(1.0)
        assert d.stop() == 0
    (done,) = outcomes(env.events, bad)
    assert done["event.action"] == "upload.completed", done
    (entry,) = [e for e in env.journal.entries() if e["remote_id"] == done["vidupd.remote_id"]]
    assert entry["md5"] == md5_file(bad)
    assert entry["title"] and safe_text(bad.stem).startswith(entry["title"])  # cut to the platform's limit
    assert not errors_logged(env.events)


# -- symbolic links (point 8) ----------------------------------------------------------

def test_symlink_loop_and_dangling_link_refused_once_good_files_go_on(site):
    site.write(top={"rescan_interval": 1}, watch={"settle_seconds": 0.5})
    (site.outbox / "later").mkdir()  # not watched (not recursive), but inside the watched folder
    os.symlink("l1.mp4", site.outbox / "l2.mp4")
    os.symlink("l2.mp4", site.outbox / "l1.mp4")
    os.symlink("later/late.mp4", site.outbox / "late.mp4")
    with _daemon(site) as d:
        good = drop_random(site.outbox / "good.mp4", 50_000)
        uploaded_in_time(site.events, good, 0.5)
        for name in ("l1.mp4", "l2.mp4", "late.mp4"):
            wait_for(lambda: outcomes(site.events, site.outbox / name), 10, what=f"{name} refused")
        time.sleep(3)  # three rescans: still one event each
        for name, why in (("l1.mp4", "loop"), ("l2.mp4", "loop"), ("late.mp4", "does not exist")):
            (refused,) = outcomes(site.events, site.outbox / name)
            assert refused["event.action"] == "file.rejected" and why in refused["vidupd.reason"], refused
        # the dangling link's target appears: the link is a file now, and is uploaded
        target = drop_random(site.outbox / "later" / "late.mp4", 30_000)
        wait_for(lambda: len(outcomes(site.events, site.outbox / "late.mp4")) == 2, 10, what="late.mp4 uploaded")
        assert d.stop() == 0
    rejected, done = outcomes(site.events, site.outbox / "late.mp4")
    assert done["event.action"] == "upload.completed"
    assert md5_file(site.dest / f"{done['vidupd.remote_id']}.mp4") == md5_file(target)
    assert not errors_logged(site.events)


# -- units: the bridge between bytes and text ---------------------------------------------

def test_safe_text_and_ledger_paths_round_trip(tmp_path):
    bad = Path(os.fsdecode(b"/srv/out/\xff\xfe.mp4"))
    assert safe_text(bad) == "/srv/out/\\xff\\xfe.mp4"
    assert safe_text("caf\u00e9 \u4e2d.mp4") == "caf\u00e9 \u4e2d.mp4"
    assert safe_text("\ud800x") == "\\ud800x"  # not from a file name: still valid text
    assert path_to_db("/a/b.mp4") == "/a/b.mp4"
    assert path_to_db(bad) == b"/srv/out/\xff\xfe.mp4" and path_from_db(path_to_db(bad)) == bad

    ledger = Ledger(tmp_path / "state")
    ident = FileIdentity(1, 2, 3, 4)
    meta = read_metadata(bad)
    assert meta.title == "\\xff\\xfe"
    (offer,) = ledger.offer(bad, "/srv/out", [("t", "video")], ident, Metadata(title="x", extra={"k": "\udcff"}))
    assert offer.outcome == "queued"
    assert [o.outcome for o in ledger.offer(bad, "/srv/out", [("t", "video")], ident, meta)] == ["known"]
    (job,) = ledger.claim("me", 5, 60)
    assert job.path == bad and job.metadata.extra == {"k": "\udcff"}
    ledger.apply(job.id, Failed(f"{bad}: it broke", "PermanentError"), owner=None)
    assert ledger.get(job.id).last_error == "/srv/out/\\xff\\xfe.mp4: it broke"
    assert ledger.skip_new(bad, "/srv/out", "u", "video", ident, "no") is not None
    assert ledger.uploads_of_path(bad) == 1
    ledger.close()
    db = sqlite3.connect(tmp_path / "state" / "ledger.sqlite3")
    assert {r[0] for r in db.execute("SELECT typeof(path) FROM jobs")} == {"blob"}
    db.close()


def test_event_with_non_utf8_name_is_written_escaped(tmp_path):
    log = tmp_path / "events.jsonl"
    events.configure(LogConfig(events=str(log), level="info"))
    try:
        bad = Path(os.fsdecode(b"/o/\xff.mp4"))
        events.emit("file.rejected", f"{bad.name}: refused", path=str(bad), reasons=[bad.name], nested={"p": bad})
    finally:
        events.configure(LogConfig())
    (e,) = read_events(log)
    assert e["message"] == "\\xff.mp4: refused" and e["file.path"] == "/o/\\xff.mp4"
    assert e["vidupd.reasons"] == ["\\xff.mp4"] and e["vidupd.nested"] == {"p": "/o/\\xff.mp4"}


class _PickyLedger:
    """A ledger that cannot take one particular file (fakes are fine in a unit test)."""

    def __init__(self, real: Ledger, bad: Path):
        self.real, self.bad = real, bad

    def offer_many(self, intents):
        intents = list(intents)
        if any(it.path == self.bad for it in intents):
            raise ValueError("cannot store this one")
        return self.real.offer_many(intents)


def test_intake_one_file_breaking_the_batch_only_rejects_that_file(tmp_path, monkeypatch):
    emitted: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "emit", lambda action, message, **f: emitted.append((action, f)))
    real = Ledger(tmp_path / "state")
    bad, good = tmp_path / "bad.mp4", tmp_path / "good.mp4"
    intake = Intake(_PickyLedger(real, bad), lambda: {}, lambda: {}, lambda: None)
    intents = [Intent(p, None, (("t", "video"),), FileIdentity(1, i, 3, 4), Metadata(title=p.stem))
               for i, p in enumerate((bad, good))]
    monkeypatch.setattr(intake, "_intent", lambda path, watch, st: next(i for i in intents if i.path == path))
    for _ in range(3):  # every rescan hands the same files on: one event about the bad one, ever
        intake.files_ready([(bad, None, None), (good, None, None)])
    rejected = [f for a, f in emitted if a == "file.rejected"]
    assert len(rejected) == 1 and rejected[0]["path"] == str(bad) and "cannot store" in rejected[0]["error"]
    assert [f["path"] for a, f in emitted if a == "upload.queued"] == [str(good)]
    assert [j.path for j in real.jobs()] == [good]
    real.close()


def test_intake_ledger_trouble_fails_the_whole_batch(tmp_path, monkeypatch):
    """A full disk is not one file's fault: nothing is rejected, the watcher offers again."""
    class Full:
        def offer_many(self, intents):
            raise sqlite3.OperationalError("database or disk is full")

    emitted: list[str] = []
    monkeypatch.setattr(events, "emit", lambda action, message, **f: emitted.append(action))
    intake = Intake(Full(), lambda: {}, lambda: {}, lambda: None)
    it = Intent(tmp_path / "a.mp4", None, (("t", "video"),), FileIdentity(1, 2, 3, 4), Metadata(title="a"))
    monkeypatch.setattr(intake, "_intent", lambda path, watch, st: it)
    with pytest.raises(sqlite3.OperationalError):
        intake.files_ready([(it.path, None, None)])
    assert emitted == []


def test_watcher_a_file_it_cannot_examine_is_refused_once_and_the_rest_goes_on(tmp_path, monkeypatch):
    """An error stat-ing one file (EIO on a flaky mount) is reported once; the file is looked
    at again (it may recover) and the other files are handed on meanwhile."""
    import errno

    from vidupd.config import WatchConfig
    from vidupd.intake import watcher as watcher_mod

    flaky, good = tmp_path / "flaky.mp4", tmp_path / "good.mp4"
    for p in (flaky, good):
        p.write_bytes(b"x" * 100)
    real_stat = os.stat
    broken = [True]

    def stat(path, *a, **kw):
        if Path(path) == flaky and broken[0]:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_stat(path, *a, **kw)

    monkeypatch.setattr(watcher_mod.os, "stat", stat)
    ready: list[Path] = []
    refused: list[str] = []
    w = WatchConfig(path=tmp_path, targets=("t",), settle_seconds=0)
    watcher = watcher_mod.Watcher((w,), 3600, lambda batch: ready.extend(p for p, _, _ in batch),
                                  lambda r: refused.append(f"{r.path.name}: {r.reason}"))
    watcher.scan()
    now = time.monotonic()
    for i in range(4):
        watcher.settle_once(now + i * 10)  # past every re-look delay
        watcher.scan()
    assert set(ready) == {good}  # (each rescan hands it on again; the ledger knows it)
    assert refused == ["flaky.mp4: cannot be examined: Input/output error"]
    broken[0] = False  # the mount recovered
    watcher.settle_once(now + 100)
    assert flaky in ready

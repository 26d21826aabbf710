"""The bad-input corpus (issue 14): every case of tests/corpus/cases.toml against the real
daemon (a subprocess) and the sandbox, each case's outcome checked on its own, and a good
file dropped beside the cases uploaded exactly once. Cases of the `outbox` and `midway`
groups share one daemon run per group (a module fixture); each `answers` case gets its own
sandbox (answering one call with the corpus's raw response) and daemon; `config` cases
run `vidupd check-config`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from corpus_sites import CASES, CORPUS, SITES, Listener, VodSite, about, build, check_outcome, entry_path, group
from helpers import actions, drop_random, md5_file, read_events, vidupd, wait_for

from vidupd.core.fsnames import safe_text


def test_the_corpus_is_large_and_well_formed():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    for c in CASES:
        for f in ("sidecar", "answer", "config"):
            if f in c:
                sub = {"sidecar": "sidecars", "answer": "answers", "config": "configs"}[f]
                assert (CORPUS / sub / c[f]).is_file(), c


class Run:
    """One daemon run over a group's cases: what happened, for the per-case tests."""

    def __init__(self, site: Any, paths: dict[str, Path], good: Path, listener: Listener | None = None):
        self.site, self.paths, self.good, self.listener = site, paths, good, listener
        self.events = read_events(site.events)
        self.entries = site.journal.entries()
        self.stderr = site.events.with_suffix(".stderr").read_text(errors="replace")


def _finish(site: Any, cases: list[dict], paths: dict[str, Path], good: Path, d: Any, timeout: float) -> None:
    """Wait for the good file and every case's outcome, then a few rescans (nothing may repeat)."""
    wait_for(lambda: [e for e in about(read_events(site.events), good) if e["event.action"] == "upload.completed"],
             60, what="the good file uploaded")
    waiting = [c for c in cases if c["expect"] != "none"]
    wait_for(lambda: all(about(read_events(site.events), paths[c["id"]]) for c in waiting), timeout,
             what="an outcome for every case")
    time.sleep(3)
    assert d.stop(timeout=60) == 0


@pytest.fixture(scope="module")
def outbox_run(tmp_path_factory):
    site = VodSite(tmp_path_factory.mktemp("outbox"))
    listener = Listener()
    try:
        cases = [c for c in group("outbox") if os.geteuid() == 0 or not c["make"].endswith("-device")]  # mknod
        paths = {c["id"]: build(site.outbox, c, listener) for c in cases}
        with site.daemon() as d:
            good = drop_random(site.outbox / "good.mp4", 200_000)
            _finish(site, cases, paths, good, d, 90)
        yield Run(site, paths, good, listener)
    finally:
        listener.close()
        site.close()


def _good_once(run: Run) -> None:
    done = [e for e in about(run.events, run.good) if e["event.action"] == "upload.completed"]
    assert len(done) == 1
    assert [e["md5"] for e in run.entries if e["remote_id"] == done[0]["vidupd.remote_id"]] == [md5_file(run.good)]


def test_outbox_good_file_beside_the_cases_went_through_once_and_nothing_crashed(outbox_run):
    _good_once(outbox_run)
    assert not [e for e in outbox_run.events if e["log.level"] == "error" and e["event.action"] == "log"]
    assert "Traceback" not in outbox_run.stderr


def test_url_pulls_are_the_platform_s_business_vidupd_never_connects(outbox_run):
    """The loopback .url files were pulled by the sandbox (this process): not one connection
    to the listener came from the daemon."""
    peers = outbox_run.listener.peers
    assert peers and set(peers) == {f"pid:{os.getpid()}"}, peers


@pytest.mark.parametrize("case", group("outbox"), ids=lambda c: c["id"])
def test_outbox_case(outbox_run, case):
    if case["id"] not in outbox_run.paths:
        pytest.skip("device nodes need root (mknod)")
    path = outbox_run.paths[case["id"]]
    event = check_outcome(case, about(outbox_run.events, path))
    if event is None or event["event.action"] != "upload.completed":
        return
    if case["make"] == "url":  # handed to the platform as written
        (url,) = [u for u in path.read_bytes().decode("utf-8", "replace").splitlines() if u.strip()]
        assert outbox_run.site.vod.state.jobs_for_url(url), url
        return
    (entry,) = [e for e in outbox_run.entries if e["remote_id"] == event["vidupd.remote_id"]]
    assert entry["md5"] == md5_file(path)
    if "title" in case:
        assert entry["title"] == case["title"], entry


# -- files changed while they are being sent --------------------------------------------

def _during(path: Path, what: str) -> None:
    if what == "append":
        with open(path, "ab") as f:
            f.write(os.urandom(100_000))
    elif what == "truncate":
        os.truncate(path, os.stat(path).st_size // 2)
    elif what == "delete":
        path.unlink()
    elif what == "replace":
        new = drop_random(path.with_name(".replacement"), os.stat(path).st_size)
        os.replace(new, path)
    elif what == "chmod":
        os.chmod(path, 0)


@pytest.fixture(scope="module")
def midway_run(tmp_path_factory):
    # 6 MiB files in 1 MiB parts at 3 MB/s for the server: the daemon is still reading each
    # file (part by part) when it changes
    site = VodSite(tmp_path_factory.mktemp("midway"), {"part_size": 1 << 20, "multipart_threshold": 1 << 20},
                   max_rate=3_000_000)
    try:
        cases = group("midway")
        before: dict[str, str] = {}
        with site.daemon() as d:
            paths = {}
            for c in cases:
                paths[c["id"]] = build(site.outbox, {**c, "size": 6 << 20})
                before[c["id"]] = md5_file(paths[c["id"]])
            for c in cases:
                shown = safe_text(paths[c["id"]])
                wait_for(lambda: [e for e in actions(site.events, "upload.started") if e.get("file.path") == shown],
                         60, what=f"{c['id']} started")
                time.sleep(0.5)
                _during(paths[c["id"]], c["during"])
            good = drop_random(site.outbox / "good.mp4", 200_000)
            _finish(site, cases, paths, good, d, 120)
        run = Run(site, paths, good)
        run.before = before  # type: ignore[attr-defined]
        yield run
    finally:
        site.close()


@pytest.mark.parametrize("case", group("midway"), ids=lambda c: c["id"])
def test_midway_case(midway_run, case):
    """Never a mix: each copy the platform received is the file as it was before the change
    or as it is now; the last event is the expected one, the current content arrived exactly
    once and the old one at most once (whether the change was noticed mid-read, and the
    upload restarted, or only after it, as a new version, depends on when it struck)."""
    path = midway_run.paths[case["id"]]
    found = about(midway_run.events, path)
    assert found and found[-1]["event.action"] == case["expect"], found
    assert {e["event.action"] for e in found} <= {"upload.completed"}, found
    ids = [e["vidupd.remote_id"] for e in found]
    sent = [e["md5"] for i in ids for e in midway_run.entries if e["remote_id"] == i]
    before = midway_run.before[case["id"]]  # type: ignore[attr-defined]
    if not path.exists():  # sent from the descriptor opened before it went
        assert sent == [before]
        return
    os.chmod(path, 0o644)
    now = md5_file(path)
    assert sent.count(now) == 1 and set(sent) <= {before, now} and len(sent) == len(ids), (sent, before, now)


def test_midway_good_file_went_through_once(midway_run):
    _good_once(midway_run)


# -- hostile server answers -------------------------------------------------------------

@pytest.mark.parametrize("case", group("answers"), ids=lambda c: c["id"])
def test_answers_case(make_site, case):
    options: dict[str, Any] = {"duplicate_ids": True} if case.get("duplicate_ids") else {
        "answer_call": case["call"], "answer_file": str(CORPUS / "answers" / case["answer"])}
    site = make_site(SITES[case["platform"]], **options)
    with site.daemon() as d:
        first = drop_random(site.outbox / "first.mp4", 300_000)
        wait_for(lambda: about(read_events(site.events), first), 90, what="the first file's outcome")
        second = drop_random(site.outbox / "second.mp4", 300_000)
        wait_for(lambda: about(read_events(site.events), second), 90, what="the second file's outcome")
        time.sleep(1)
        assert d.stop(timeout=60) == 0
    events = read_events(site.events)
    bad, good = (second, first) if case.get("duplicate_ids") else (first, second)
    event = check_outcome(case, about(events, bad))
    if case.get("duplicate_ids"):  # the id handed back is the good file's: flagged, as an error
        assert event is not None and event["log.level"] == "error"
        assert event["vidupd.remote_id"] == next(e["vidupd.remote_id"] for e in about(events, good))
    if case.get("retried"):
        assert [e for e in actions(site.events, "upload.retrying") if e.get("file.path") == str(bad)], \
            "the hostile answer caused no retry"
    done = [e for e in about(events, good) if e["event.action"] == "upload.completed"]
    assert len(done) == 1
    assert [e["md5"] for e in site.journal.entries() if e["remote_id"] == done[0]["vidupd.remote_id"]] \
        == [md5_file(good)]
    assert "Traceback" not in site.events.with_suffix(".stderr").read_text(errors="replace")


# -- configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", group("config"), ids=lambda c: c["id"])
def test_config_case(tmp_path, case):
    (tmp_path / "outbox").mkdir()
    (tmp_path / "dest").mkdir()
    path = tmp_path / "vidupd.toml"
    path.write_bytes((CORPUS / "configs" / case["config"]).read_bytes().replace(b"@ROOT@", os.fsencode(tmp_path)))
    out = vidupd("check-config", "-c", str(path))
    assert out.returncode == case.get("exit", 2), out.stderr
    assert f"{path}: {case['key']}: " in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "Error:" not in out.stderr.replace(f"{path}:", "")


def test_entry_path_pads_to_the_byte_length(tmp_path):
    assert len(entry_path(tmp_path, {"name": ".mp4", "pad": 255}).name.encode()) == 255

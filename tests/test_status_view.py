"""`vidupd status` as an operator reads it (issue 11): a table with a header that fits the
terminal, progress, rate, ETA, attempt and next retry, remote id and age; finished jobs
hidden unless asked for; `--state` checked; `--json` with ISO-8601 times; `--watch` redrawn
in place; an error only while it is current. The jobs are made through the ledger's own
interface (the states a daemon leaves), the command runs as a real process, on a real pty
where the terminal matters."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
from pathlib import Path

import pytest
from helpers import vidupd, write_config
from terminal import PtyProcess, plain

from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Completed, Failed, Ledger, RetryLater

pytestmark = pytest.mark.timeout(120)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _config(tmp_path: Path) -> Path:
    (tmp_path / "outbox").mkdir(exist_ok=True)
    (tmp_path / "dest").mkdir(exist_ok=True)
    return write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")},
                        {"arch": {"provider": "directory", "dest": str(tmp_path / "dest")}},
                        [{"path": str(tmp_path / "outbox"), "targets": ["arch"]}],
                        {"events": str(tmp_path / "events.jsonl")})


def _jobs(tmp_path: Path) -> dict[str, int]:
    """A ledger with one job in each state an operator meets."""
    ledger = Ledger(tmp_path / "state")
    ids = {}
    for n, name in enumerate(("sending", "waiting", "broken", "finished", "queued", "recovered"), 1):
        f = tmp_path / "outbox" / f"{name}-{'x' * 40}.mp4"
        f.write_bytes(b"v" * 10_000_000)
        (o,) = ledger.offer(f, str(f.parent), [("arch", "video")], FileIdentity.of(f.stat()), Metadata(name))
        ids[name] = o.job_id
    claimed = {j.id: j for j in ledger.claim("me", 10, 3600)}
    lease = lambda name: dict(owner="me", generation=claimed[ids[name]].lease_gen)  # noqa: E731
    ledger.progress(ids["sending"], 4_000_000, 2_000_000.0, "me", 3600, generation=claimed[ids["sending"]].lease_gen)
    ledger.apply(ids["waiting"], RetryLater("HTTP 503 from the platform", 600.0, 2, "TransientError"),
                 **lease("waiting"))
    ledger.apply(ids["broken"], Failed("refused: not a video", "PermanentError"), **lease("broken"))
    ledger.apply(ids["finished"], Completed("REMOTE-FIN", "video"), **lease("finished"))
    ledger.apply(ids["recovered"], RetryLater("HTTP 500 earlier", 0.0, 1, "TransientError"), **lease("recovered"))
    (again,) = ledger.claim("me", 1, 3600, ids=[ids["recovered"]])
    ledger.progress(again.id, 1_000_000, 500_000.0, "me", 3600, generation=again.lease_gen)
    ledger.release("me", [ids["queued"]], claimed[ids["queued"]].lease_gen)
    ledger.close()
    return ids


def test_table_fits_the_terminal_and_says_what_an_operator_needs(tmp_path: Path):
    cfg = _config(tmp_path)
    ids = _jobs(tmp_path)
    with PtyProcess("status", "-c", str(cfg), on_tty=("stdout",), columns=100) as p:
        assert p.wait() == 0, p.screen
    lines = [line for line in plain(p.screen).split("\n") if line.strip()]
    assert all(len(line.rstrip()) <= 100 for line in lines), "\n".join(lines)
    assert lines[0].startswith(("1 ", "2 ", "3 ")) and "1 done" in lines[0] and "finished not shown" in lines[0]
    header = lines[1].split()
    for col in ("ID", "STATE", "DONE", "RATE", "ETA", "TRY", "NEXT", "TARGET", "HOST", "AGE", "FILE", "ERROR"):
        assert col in header, lines[1]
    rows = {int(line.split()[0]): line for line in lines[2:]}
    assert ids["finished"] not in rows, "done jobs are hidden by default"
    sending = rows[ids["sending"]]
    assert "uploading" in sending and "40.0%" in sending and "2.0 MB/s" in sending and "3s" in sending
    assert re.search(r" arch +me ", sending), "the host holding the upload (its lease owner's host name)"
    waiting = rows[ids["waiting"]]
    assert "queued" in waiting and "2/8" in waiting and re.search(r" in (9|10)m", waiting), waiting
    assert "HTTP 503" in waiting  # current: the retry has not happened yet
    assert "failed" in rows[ids["broken"]] and "refused" in rows[ids["broken"]]
    assert "HTTP 500" not in rows[ids["recovered"]], "an error the job has moved on from is not shown"
    assert "\x1b[" in p.screen  # coloured states

    shown = vidupd("status", "-c", str(cfg), "--all")
    assert shown.returncode == 0 and "REMOTE-FIN" in shown.stdout, shown.stdout
    since = vidupd("status", "-c", str(cfg), "--since", "1h")
    assert "REMOTE-FIN" in since.stdout and "finished not shown" not in since.stdout
    only = vidupd("status", "-c", str(cfg), "--state", "failed")
    assert only.returncode == 0 and "refused" in only.stdout and "HTTP 503" not in only.stdout
    for bad in (("--state", "finished"), ("--since", "yesterday")):
        refused = vidupd("status", "-c", str(cfg), *bad)
        assert refused.returncode == 2 and ("invalid" in refused.stderr or "not a duration" in refused.stderr)


def test_json_has_iso_times_eta_and_next_retry(tmp_path: Path):
    cfg = _config(tmp_path)
    ids = _jobs(tmp_path)
    before = time.time()
    out = vidupd("status", "-c", str(cfg), "--json", "--all")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert ISO.match(doc["generated"]) and doc["counts"]["done"] == 1 and doc["hidden_finished"] == 0
    jobs = {j["id"]: j for j in doc["jobs"]}
    for j in jobs.values():
        assert ISO.match(j["updated"]) and ISO.match(j["created"]), j
        assert abs(dt.datetime.fromisoformat(j["updated"].replace("Z", "+00:00")).timestamp() - before) < 300
    sending = jobs[ids["sending"]]
    assert sending["bytes_per_second"] == 2_000_000 and sending["eta_seconds"] == 3.0 and ISO.match(sending["eta"])
    assert sending["host"] == "me" and jobs[ids["waiting"]]["host"] is None and doc["hosts"] == []
    waiting = jobs[ids["waiting"]]
    assert (waiting["attempts"], waiting["max_attempts"]) == (2, 8)
    assert 500 < waiting["next_retry_in_seconds"] <= 600 and ISO.match(waiting["next_retry"])
    assert waiting["last_error"] == "HTTP 503 from the platform"
    assert jobs[ids["recovered"]]["last_error"] is None
    assert jobs[ids["finished"]]["remote_id"] == "REMOTE-FIN" and jobs[ids["finished"]]["eta"] is None
    default = json.loads(vidupd("status", "-c", str(cfg), "--json").stdout)  # scripts see every job, as before
    assert ids["finished"] in {j["id"] for j in default["jobs"]} and default["hidden_finished"] == 0
    recent = json.loads(vidupd("status", "-c", str(cfg), "--json", "--since", "1h").stdout)
    assert len(recent["jobs"]) == 6


def test_watch_redraws_in_place_until_ctrl_c(tmp_path: Path):
    cfg = _config(tmp_path)
    ids = _jobs(tmp_path)
    with PtyProcess("status", "-c", str(cfg), "--watch", "--interval", "0.3", on_tty=("stdout",)) as p:
        p.wait_for_text("2.0 MB/s")
        ledger = Ledger(tmp_path / "state")  # the job goes through meanwhile: the next refresh shows it
        ledger.apply(ids["sending"], Completed("REMOTE-NEW", "video"), owner=None)
        ledger.close()
        p.wait_for_text("2 done")
        p.signal(signal.SIGINT)
        assert p.wait() == 0
    raw = p.screen
    assert "\x1b[2J" not in raw and "\x1bc" not in raw, "no screen clearing (flicker)"
    assert re.search(r"\x1b\[\d*A", raw), "redrawn in place (cursor moved up over the old table)"
    last = plain(raw).rsplit("vidupd status", 1)[-1]
    assert "2 done" in last and "2.0 MB/s" not in last
    refused = vidupd("status", "-c", str(cfg), "--watch")  # a pipe is no terminal
    assert refused.returncode == 2 and "terminal" in refused.stderr

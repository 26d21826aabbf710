"""The real daemon (subprocess, real threads, files and signals) with the `directory`
provider: exactly-once delivery, settling, filters, restarts, after-upload actions."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import ROOT, DaemonProcess, actions, read_events, vidupd, wait_for


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def drop(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(f"{seed}".encode()).digest() * 32  # 1 KiB, distinct per seed
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    os.replace(tmp, path)  # the way well-behaved writers deliver
    return path


def delivered(dest: Path) -> list[Path]:
    return sorted(p for p in dest.iterdir() if p.is_file() and p.suffix != ".json")


def completed(site) -> list[dict]:
    return actions(site.events, "upload.completed")


def test_dropped_while_running_and_while_stopped_uploaded_exactly_once(site):
    site.write(top={"rescan_interval": 1})
    before = drop(site.outbox / "before.mp4", 200_000, seed=1)
    with DaemonProcess(site.config, site.events) as d:
        drop(site.outbox / "during.mov", 300_000, seed=2)
        (site.outbox / "sub").mkdir()  # not recursive: ignored
        drop(site.outbox / "sub" / "deep.mp4", 1000, seed=3)
        wait_for(lambda: len(completed(site)) >= 2, 30, what="two uploads")
        assert d.stop() == 0
    drop(site.outbox / "offline.mkv", 100_000, seed=4)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: len(completed(site)) >= 3, 30, what="the file dropped while stopped")
        time.sleep(3)  # several rescans: nothing may be sent again
        assert d.stop() == 0
    done = completed(site)
    assert sorted(Path(e["file.path"]).name for e in done) == ["before.mp4", "during.mov", "offline.mkv"]
    assert len({e["vidupd.remote_id"] for e in done}) == 3
    files = delivered(site.dest)
    assert len(files) == 3
    assert md5(before) in {md5(p) for p in files}
    assert not list((site.dest / ".vidupd-partial").iterdir())
    # nothing was written into the watched folder
    assert sorted(p.name for p in site.outbox.rglob("*")) == ["before.mp4", "deep.mp4", "during.mov",
                                                               "offline.mkv", "sub"]


def test_file_still_being_written_is_not_taken_early(site):
    site.write(watch={"settle_seconds": 2})
    target = site.outbox / "growing.mp4"
    last_write = [0.0]

    def writer() -> None:
        with open(target, "ab") as f:
            for i in range(10):  # appended every 0.5 s for 5 s
                f.write(os.urandom(50_000))
                f.flush()
                last_write[0] = time.time()
                time.sleep(0.5)

    with DaemonProcess(site.config, site.events) as d:
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        wait_for(lambda: completed(site), 30, what="upload of the grown file")
        d.stop()
    started = actions(site.events, "upload.queued")
    assert len(started) == 1 and len(completed(site)) == 1
    queued_at = time.mktime(time.strptime(started[0]["@timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert queued_at >= last_write[0] - 1  # timestamp precision is 1 s here
    (only,) = delivered(site.dest)
    assert md5(only) == md5(target)
    assert completed(site)[0]["file.size"] == 500_000


def test_excluded_temporary_and_hidden_names_are_ignored(site):
    site.write(watch={"exclude": ["raw_*"], "recursive": True})
    for name in ["x.mp4.part", ".hidden.mp4", "y.mp4.tmp", "z.mp4.crdownload", "w.mp4.filepart", "v.mp4~",
                 ".v.mp4.swp", "raw_take1.mp4", ".sync/q.mp4", "u.mp4.!sync"]:
        drop(site.outbox / name, 1000)
    drop(site.outbox / "good.mp4", 1000, seed=9)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: completed(site), 30, what="good.mp4")
        time.sleep(2)
        out = vidupd("status", "-c", str(site.config), "--json")
        d.stop()
    assert out.returncode == 0, out.stderr
    jobs = json.loads(out.stdout)["jobs"]
    assert [Path(j["file"]).name for j in jobs] == ["good.mp4"]


def test_symlink_leaving_the_root_is_refused(site, tmp_path):
    outside = drop(tmp_path / "elsewhere" / "secret.mp4", 1000)
    (site.outbox / "link.mp4").symlink_to(outside)
    inside = drop(site.outbox / "real.mp4", 1000, seed=5)
    (site.outbox / "alias.mp4").symlink_to(inside)  # stays inside the root: fine
    site.write()
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "file.rejected"), 30, what="refusal")
        wait_for(lambda: completed(site), 30, what="real.mp4")
        wait_for(lambda: actions(site.events, "upload.skipped"), 30, what="the alias skipped as a duplicate")
        d.stop()
    (rej,) = actions(site.events, "file.rejected")
    assert rej["file.path"].endswith("link.mp4") and rej["log.level"] == "error"
    assert "leads out of the watched folder" in rej["message"]
    names = sorted(Path(e["file.path"]).name for e in completed(site))
    assert "link.mp4" not in names and names[0] in ("alias.mp4", "real.mp4")
    # the alias has the same content: uploaded once, the other skipped as a duplicate
    assert len(names) == 1 and len(actions(site.events, "upload.skipped")) == 1


def test_status_json_shows_jobs_while_daemon_runs(site):
    site.write(top={"max_rate": 400_000})
    drop(site.outbox / "slow.mp4", 2_000_000)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "upload.started"), 30, what="start")

        def uploading_job():
            out = vidupd("status", "-c", str(site.config), "--json")
            assert out.returncode == 0, out.stderr
            (job,) = json.loads(out.stdout)["jobs"]
            return job if job["bytes_done"] > 0 and job["bytes_per_second"] > 0 else None

        job = wait_for(uploading_job, 20, what="progress in status")
        assert job["state"] == "uploading" and 0 < job["percent"] < 100
        assert job["bytes_per_second"] > 0 and job["target"] == "arch"
        wait_for(lambda: completed(site), 30, what="completion")
        out = vidupd("status", "-c", str(site.config), "--json")
        (job,) = json.loads(out.stdout)["jobs"]
        assert job["state"] == "done" and job["remote_id"] == completed(site)[0]["vidupd.remote_id"]
        human = vidupd("status", "-c", str(site.config), "--all")  # finished jobs are hidden without --all
        assert human.stdout.startswith("1 done") and job["remote_id"] in human.stdout
        d.stop()


def test_sigterm_mid_upload_checkpoints_and_restart_resumes(site):
    site.write(top={"max_rate": 3_000_000})
    src = drop(site.outbox / "big.mp4", 16_000_000)
    d = DaemonProcess(site.config, site.events).start()
    # past the directory provider's first checkpoint (every 8 MiB), so there is something to resume from
    wait_for(lambda: any(e.get("vidupd.bytes_done", 0) > 9_000_000 for e in actions(site.events, "upload.progress")),
             30, what="progress past 9 MB")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 10
    assert actions(site.events, "upload.interrupted")
    assert not completed(site)
    n_progress = len(actions(site.events, "upload.progress"))
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: completed(site), 30, what="resumed upload")
        d.stop()
    resumed = actions(site.events, "upload.progress")[n_progress:]
    # did not start from zero: the first progress of the resumed upload is past the checkpoint (8 MiB)
    assert resumed and resumed[0]["vidupd.bytes_done"] >= 8 << 20, resumed[0]
    (only,) = delivered(site.dest)
    assert md5(only) == md5(src)


def test_kill9_mid_upload_then_restart_uploads_once(site):
    site.write(top={"max_rate": 3_000_000})
    src = drop(site.outbox / "k.mp4", 9_000_000)
    d = DaemonProcess(site.config, site.events).start()
    wait_for(lambda: any(e.get("vidupd.bytes_done", 0) > 2_000_000 for e in actions(site.events, "upload.progress")),
             30, what="progress")
    d.kill9()
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: completed(site), 30, what="completion after kill -9")
        time.sleep(1)
        d.stop()
    assert len(completed(site)) == 1
    assert len(actions(site.events, "upload.remote_id")) == 1  # the id fixed before the first byte was reused
    (only,) = delivered(site.dest)
    assert md5(only) == md5(src)


def test_after_upload_move_waits_for_every_target(site, tmp_path):
    dest2 = tmp_path / "dest2"
    archive = tmp_path / "archive"
    site.write(targets={"a": {"provider": "directory", "dest": str(site.dest)},
                        "b": {"provider": "directory", "dest": str(dest2)}},
               watches=[{"path": str(site.outbox), "targets": ["a", "b"], "settle_seconds": 1, "recursive": True,
                         "after_upload": "move", "move_to": str(archive)}])
    drop(site.outbox / "show" / "ep1.mp4", 100_000)
    (site.outbox / "show" / "ep1.json").write_text(json.dumps({"title": "Episode 1", "tags": ["news"]}))
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "file.moved"), 30, what="move")
        d.stop()
    assert len(completed(site)) == 2
    moved = actions(site.events, "file.moved")[0]
    assert moved["@timestamp"] >= max(e["@timestamp"] for e in completed(site))
    assert (archive / "show" / "ep1.mp4").exists() and (archive / "show" / "ep1.json").exists()
    assert not (site.outbox / "show" / "ep1.mp4").exists()
    manifest = json.loads(next(site.dest.glob("*.json")).read_text())
    assert manifest["title"] == "Episode 1" and manifest["tags"] == ["news"]


def test_after_upload_delete(site):
    site.write(watch={"after_upload": "delete"})
    drop(site.outbox / "gone.mp4", 10_000)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "file.deleted"), 30, what="delete")
        d.stop()
    assert not (site.outbox / "gone.mp4").exists()
    assert len(delivered(site.dest)) == 1


def test_duplicate_content_and_rename_are_not_uploaded_again(site):
    site.write(watch={"recursive": True})
    a = drop(site.outbox / "a.mp4", 50_000, seed=7)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: completed(site), 30, what="first upload")
        rid = completed(site)[0]["vidupd.remote_id"]
        (site.outbox / "copy.mp4").write_bytes(a.read_bytes())
        wait_for(lambda: actions(site.events, "upload.skipped"), 30, what="duplicate skip")
        (site.outbox / "moved").mkdir()
        os.rename(a, site.outbox / "moved" / "renamed.mp4")
        wait_for(lambda: actions(site.events, "file.renamed"), 30, what="rename recognised")
        d.stop()
    (skip,) = actions(site.events, "upload.skipped")
    assert skip["vidupd.remote_id"] == rid and rid in skip["message"]
    assert len(completed(site)) == 1 and len(delivered(site.dest)) == 1


def test_file_changed_during_upload_starts_over(site):
    site.write(top={"max_rate": 1_000_000})
    f = drop(site.outbox / "edit.mp4", 3_000_000)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "upload.progress"), 30, what="upload under way")
        with open(f, "ab") as fh:
            fh.write(b"late edit")
        wait_for(lambda: actions(site.events, "upload.restarted"), 30, what="restart event")
        wait_for(lambda: completed(site), 60, what="upload of the new version")
        d.stop()
    (only,) = delivered(site.dest)
    assert md5(only) == md5(f)


def test_ready_marker_mode_waits_for_marker(site):
    site.write(watch={"ready_marker": ".done", "settle_seconds": 0})
    drop(site.outbox / "m.mp4", 10_000)
    with DaemonProcess(site.config, site.events) as d:
        time.sleep(2)
        assert not actions(site.events, "upload.queued")
        (site.outbox / "m.mp4.done").touch()
        wait_for(lambda: completed(site), 30, what="upload after marker")
        d.stop()
    assert [Path(e["file.path"]).name for e in completed(site)] == ["m.mp4"]


def test_malformed_sidecar_is_an_error_event_not_a_crash(site):
    site.write()
    drop(site.outbox / "bad.mp4", 1000, seed=1)
    (site.outbox / "bad.json").write_text("{not json")
    drop(site.outbox / "ok.mp4", 1000, seed=2)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: completed(site), 30, what="ok.mp4")
        wait_for(lambda: actions(site.events, "file.rejected"), 30, what="sidecar error")
        assert d.proc.poll() is None
        d.stop()
    (rej,) = actions(site.events, "file.rejected")
    assert "bad.json" in rej["message"] and "not valid JSON" in rej["message"]
    assert [Path(e["file.path"]).name for e in completed(site)] == ["ok.mp4"]


def test_permanent_failure_then_retry_command(site, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    site.write(target={"dest": str(blocked)})
    drop(site.outbox / "r.mp4", 1000)
    with DaemonProcess(site.config, site.events) as d:
        wait_for(lambda: actions(site.events, "upload.failed"), 30, what="failure")
        blocked.unlink()
        blocked.mkdir()
        out = vidupd("retry", "-c", str(site.config), "--failed")
        assert out.returncode == 0 and "1 job" in out.stdout
        wait_for(lambda: completed(site), 30, what="upload after retry")
        d.stop()
    assert len(list(blocked.glob("*.mp4"))) == 1


def test_one_shot_upload_shares_the_ledger(site):
    site.write()
    f = drop(site.root / "elsewhere.mp4", 20_000)
    first = vidupd("upload", "-c", str(site.config), "--target", "arch", str(f))
    assert first.returncode == 0, first.stderr
    rid = first.stdout.split("\t")[3]
    again = vidupd("upload", "-c", str(site.config), "--target", "arch", str(f))
    assert again.returncode == 0 and again.stdout.split("\t")[3] == rid
    assert len(delivered(site.dest)) == 1
    bad = vidupd("upload", "-c", str(site.config), "--target", "nope", str(f))
    assert bad.returncode == 2 and "targets.nope" in bad.stderr


def test_sigint_also_stops_cleanly(site):
    site.write()
    with DaemonProcess(site.config, site.events) as d:
        d.signal(signal.SIGINT)
        assert d.proc.wait(timeout=20) == 0
    assert actions(site.events, "daemon.stopping")
    assert all(e["@timestamp"].endswith("Z") for e in read_events(site.events))


def test_one_shot_upload_survives_the_file_changing(site):
    site.write(top={"max_rate": 1_000_000})
    f = drop(site.root / "edited.mp4", 3_000_000)
    proc = subprocess.Popen([sys.executable, "-m", "vidupd", "upload", "-c", str(site.config), "--target", "arch",
                             "--no-progress", str(f)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: actions(site.events, "upload.progress"), 30, what="upload under way")
    with open(f, "ab") as fh:
        fh.write(b"appended while uploading")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert actions(site.events, "upload.restarted")
    (only,) = delivered(site.dest)
    assert md5(only) == md5(f)

"""FIFOs, directories, sockets and devices where vidupd expects a file (issue 8, point 2), at
unit level: the one opening helper, hashing, sidecars, the pool's check, and a stop that
gives up on a worker that does not stop."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import wait_for
from structlog.testing import capture_logs
from test_pool import Scripted, setup, states

from vidupd.core.content import content_hash, md5_file
from vidupd.core.errors import PermanentError
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Ledger
from vidupd.providers.base import UploadResult


def unblock_fifo(path: Path) -> None:
    """Free a reader that old code left blocked in open() on the FIFO `path` (so a failing
    test fails instead of hanging pytest at exit): a writer lets that open return, and the
    name becomes an empty regular file, so opening it again cannot block either."""
    try:
        writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno not in (errno.ENXIO, errno.ENOENT):  # ENXIO: nobody is reading (the fix worked)
            raise
        writer = None
    try:
        if path.exists():
            spare = path.with_name(path.name + ".regular")
            spare.write_bytes(b"")
            os.replace(spare, path)
    finally:
        if writer is not None:
            os.close(writer)


@pytest.fixture
def fifos(tmp_path: Path):
    """mkfifo for a test, each one unblocked at teardown (see unblock_fifo)."""
    made: list[Path] = []

    def make(name: str, where: Path | None = None) -> Path:
        p = (where or tmp_path) / name
        os.mkfifo(p)
        made.append(p)
        return p

    yield make
    for p in made:
        unblock_fifo(p)


def returns_promptly(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    """fn()'s result or exception, run on a thread; fails the test if it is still blocked."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still blocked after {timeout}s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_open_regular_refuses_each_kind_of_non_regular_file_naming_it(tmp_path, fifos):
    from vidupd.core.errors import NotRegularFile
    from vidupd.core.safe_open import open_regular

    fifo = fifos("p1.mp4")
    folder = tmp_path / "dir.mp4"
    folder.mkdir()
    sock_path = tmp_path / "s.mp4"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, what in ((fifo, "a FIFO"), (folder, "a directory"), (sock_path, "a socket"),
                           (Path("/dev/null"), "a character device")):
            with pytest.raises(NotRegularFile) as e:
                returns_promptly(lambda p=path: open_regular(p))
            assert e.value.what == what and str(path) in str(e.value) and f"is {what}" in str(e.value)
            assert isinstance(e.value, PermanentError)  # the pool fails the job at once
    finally:
        sock.close()
    regular = tmp_path / "ok.mp4"
    regular.write_bytes(b"x" * 10)
    fd = open_regular(regular)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK  # cleared after the check
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.read(fd, 100) == b"x" * 10
    finally:
        os.close(fd)


def test_hashing_a_fifo_fails_at_once_instead_of_blocking(fifos):
    fifo = fifos("p1.mp4")
    identity = FileIdentity.of(os.stat(fifo))
    for fn in (lambda: md5_file(fifo, identity), lambda: content_hash(fifo, identity, "crc64")):
        with pytest.raises(PermanentError, match="is a FIFO"):
            returns_promptly(fn)


def test_a_fifo_sidecar_never_blocks_the_reader(tmp_path, fifos):
    from vidupd.intake.sidecar import SidecarError, _parse, read_metadata

    media = tmp_path / "clip.mp4"
    media.write_bytes(b"v" * 100)
    sidecar = fifos("clip.mp4.json")
    assert returns_promptly(lambda: read_metadata(media)).title == "clip"  # not a usable sidecar: skipped
    # the same name turned into a FIFO between that check and the read
    with pytest.raises(SidecarError, match=r"clip\.mp4\.json: is a FIFO"):
        returns_promptly(lambda: _parse(sidecar, media))


def test_pool_fails_a_queued_fifo_job_at_once_and_sends_the_others(tmp_path, fifos):
    """A FIFO job left in the ledger (an older one-shot queued it): failed once with its
    reason, no retries, no provider call; the worker is free for the next file."""
    prov = Scripted()
    ledger, pool, (good,) = setup(tmp_path, prov, attempts=8)
    fifo = fifos("p1.mp4")
    (offer,) = ledger.offer(fifo, None, [("t", "video")], FileIdentity.of(os.stat(fifo)), Metadata("p1"))
    with capture_logs() as logs:
        pool.start()
        try:
            wait_for(lambda: sorted(states(ledger)) == ["done", "failed"], 10, what="both jobs settled")
        finally:
            pool.stop(timeout=5)
    job = ledger.get(offer.job_id)
    assert job is not None and job.state == "failed" and job.last_error == "is a FIFO, not a regular file"
    assert ledger.get(good).state == "done"
    assert prov.calls == 1  # the good file only
    about_fifo = [e for e in logs if e.get("job_id") == offer.job_id]
    assert [e["action"] for e in about_fifo] == ["upload.failed"]
    assert about_fifo[0]["error_type"] == "NotRegularFile"


class Stuck(Scripted):
    """An upload that ignores the cancel signal and waits on an Event nobody sets (a worker
    blocked in a system call looks like this to the pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def upload(self, request, ctx):
        self.entered.set()
        self.release.wait()
        return UploadResult(f"id-{request.job_id}", "video")


def test_pool_stop_gives_up_on_a_blocked_worker_and_gives_its_lease_back(tmp_path):
    prov = Stuck()
    ledger, pool, (jid,) = setup(tmp_path, prov)
    pool.start()
    try:
        assert prov.entered.wait(10)
        wait_for(lambda: ledger.get(jid).state == "uploading", 10)
        started = time.monotonic()
        left = returns_promptly(lambda: pool.stop(timeout=0.5), timeout=20)
        assert left == [jid]
        assert time.monotonic() - started < 15  # bounded (0.5 s budget + the dispatcher's join)
        job = Ledger(tmp_path / "state", readonly=True).get(jid)
        assert job is not None and job.state == "queued" and job.lease_owner is None  # a restart takes it at once
        from vidupd.engine.pool import workers_left_behind

        assert workers_left_behind() >= 1  # the CLI leaves with os._exit while this is so
    finally:
        prov.release.set()
    from vidupd.engine.pool import workers_left_behind

    wait_for(lambda: workers_left_behind() == 0, 10, what="the released worker to end")


def test_stop_timeout_is_validated(tmp_path):
    from vidupd.config import ConfigError, load

    base = f'state_dir = "{tmp_path / "state"}"\n'
    (tmp_path / "outbox").mkdir()
    watch = (f'[targets.a]\nprovider = "directory"\ndest = "{tmp_path / "dest"}"\n'
             f'[[watch]]\npath = "{tmp_path / "outbox"}"\ntargets = ["a"]\n')
    good = tmp_path / "good.toml"
    good.write_text(base + "stop_timeout = 5\n" + watch)
    assert load(good).stop_timeout == 5.0
    for bad in ("0", "-1", '"soon"', "7200"):
        path = tmp_path / "bad.toml"
        path.write_text(base + f"stop_timeout = {bad}\n" + watch)
        with pytest.raises(ConfigError) as e:
            load(path)
        assert any(p.key == "stop_timeout" for p in e.value.problems), bad

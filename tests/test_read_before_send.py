"""Issue 9: a file is read for its fingerprint before sending only when a twin is possible.

A provider that needs no MD5 (VOD) gets a lone file unhashed (md5 None, fingerprint ""),
sends it reading it once, and reports the content id it computed while sending; the commit
stores it, so a later same-size file hashes and is recognised as a duplicate. Identical
files queued together both hash, and exactly one is sent. Unit level: real pool threads, a
real ledger, a fake provider that computes the CRC-64 as it reads (as the streaming VOD
provider does), and a count of the pool's CRC passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import fastcrc
import pytest
from helpers import wait_for
from structlog.testing import capture_logs
from test_pool import setup, states

from vidupd.core.model import FileIdentity, Metadata
from vidupd.engine import prepare as pool_prepare
from vidupd.providers.base import Provider, UploadResult


class Streaming(Provider):
    """needs_md5 False; reads the file once to "send" it, returning its CRC-64 as content_id
    (or none, like a provider that does not report it, with `report=False`)."""

    name = "streaming"
    options = {}
    kinds = frozenset({"video"})
    needs_md5 = False

    def __init__(self, report: bool = True):
        super().__init__("t", {}, Path("/nonexistent"))
        self.report = report
        self.requests = []

    def upload(self, request, ctx):
        self.requests.append(request)
        crc = 0
        with ctx.open_source(request) as src:
            for block in src.iter_blocks(0, request.size):
                crc = fastcrc.crc64.xz(block, crc)
        ctx.progress(request.size)
        return UploadResult(f"id-{request.job_id}", "video",
                            content_id=f"crc64:{crc:016x}" if self.report else None)


@pytest.fixture
def crc_passes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the pool read for a CRC-64 fingerprint before sending."""
    seen: list[Path] = []
    real = pool_prepare.content_hash

    def counting(path, identity, kind, *args, **kw):
        if kind == "crc64":
            seen.append(path)
        return real(path, identity, kind, *args, **kw)

    monkeypatch.setattr(pool_prepare, "content_hash", counting)
    return seen


def run(pool, ledger, until: list[str], timeout: float = 10.0) -> list[dict]:
    with capture_logs() as logs:
        pool.start()
        wait_for(lambda: sorted(states(ledger)) == sorted(until), timeout, what=f"states {until}")
        pool.stop()
    return logs


def test_lone_file_is_sent_unhashed_and_its_content_id_committed(tmp_path: Path, crc_passes: list[Path]):
    prov = Streaming()
    ledger, pool, (jid,) = setup(tmp_path, prov)
    logs = run(pool, ledger, ["done"])
    assert crc_passes == []  # no read before sending
    (req,) = prov.requests
    assert req.md5 is None and req.content_id == "" and req.digests is None
    expected = pool_prepare.content_hash(req.path, req.identity, "crc64").content_id
    assert ledger.get(jid).md5 == expected  # committed as the job's content, in the same transaction
    (done,) = [e for e in logs if e.get("action") == "upload.completed"]
    assert done["crc64"] == expected.partition(":")[2] and "md5" not in done


def test_later_same_size_file_hashes_and_is_skipped_as_duplicate(tmp_path: Path, crc_passes: list[Path]):
    prov = Streaming()
    ledger, pool, (first,) = setup(tmp_path, prov)
    run(pool, ledger, ["done"])
    copy = tmp_path / "copy.mp4"
    copy.write_bytes((tmp_path / "f0.mp4").read_bytes())
    other = tmp_path / "other.mp4"
    other.write_bytes(b"x" * 5)  # another size: no twin possible, not hashed
    for p in (copy, other):
        ledger.offer(p, None, [("t", "video")], FileIdentity.of(p.stat()), Metadata(p.stem))
    pool2 = type(pool)(pool.settings, ledger, pool.targets, {"t": prov}, pool.throttle, "me2", pool.after)
    logs = run(pool2, ledger, ["done", "skipped", "done"])
    assert crc_passes == [copy]
    assert [r.path for r in prov.requests] == [tmp_path / "f0.mp4", other]
    (skip,) = [e for e in logs if e.get("action") == "upload.skipped"]
    assert skip["duplicate_of_job"] == first and skip["remote_id"] == f"id-{first}"


def test_identical_files_queued_together_both_hash_and_go_once(tmp_path: Path, crc_passes: list[Path]):
    prov = Streaming()
    ledger, pool, ids = setup(tmp_path, prov, files=2, content=[b"same bytes" * 1000] * 2)
    logs = run(pool, ledger, ["done", "skipped"])
    assert sorted(crc_passes) == sorted(tmp_path / f"f{i}.mp4" for i in range(2))
    assert len(prov.requests) == 1 and prov.requests[0].content_id.startswith("crc64:")
    assert len([e for e in logs if e.get("action") == "upload.skipped"]) == 1


def test_twin_committed_without_content_id_is_not_waited_for(tmp_path: Path, crc_passes: list[Path]):
    """A provider that reports no content id (VOD before streaming CRCs) leaves md5 NULL:
    "unknown, not a twin": a later same-size file is neither held up nor skipped."""
    prov = Streaming(report=False)
    ledger, pool, (first,) = setup(tmp_path, prov)
    run(pool, ledger, ["done"])
    assert ledger.get(first).md5 is None
    copy = tmp_path / "copy.mp4"
    copy.write_bytes((tmp_path / "f0.mp4").read_bytes())
    os.utime(copy, ns=(1, 1))
    ledger.offer(copy, None, [("t", "video")], FileIdentity.of(copy.stat()), Metadata("copy"))
    pool2 = type(pool)(pool.settings, ledger, pool.targets, {"t": prov}, pool.throttle, "me2", pool.after)
    run(pool2, ledger, ["done", "done"])
    assert crc_passes == [] and len(prov.requests) == 2


def test_provider_needing_md5_is_still_hashed_first(tmp_path: Path, crc_passes: list[Path]):
    from test_pool import Scripted
    prov = Scripted()
    ledger, pool, (jid,) = setup(tmp_path, prov)
    run(pool, ledger, ["done"])
    assert ledger.get(jid).md5 is not None and len(ledger.get(jid).md5) == 32 and crc_passes == []

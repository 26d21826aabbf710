"""Parts and slices are streamed from the file to the socket (issue 9, points 1-2), and a VOD
upload without a fingerprint returns the content id its parts combine to (point 3).

The memory tests send a 64 MiB part of a sparse file through the real clients (oss2 over
requests, Youku's http.client slice connection) to a sink that reads into one fixed buffer
(so it allocates nothing itself): what tracemalloc sees at its peak is the client's. The
content-id and resume tests run the VOD provider against the real sandboxes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator

import oss2
import pytest
from provider_harness import md5_of, write_file
from test_provider_aliyun_vod import Env

from vidupd.core.content import content_hash
from vidupd.core.crc64 import crc64
from vidupd.core.errors import ContentMismatch, FileChanged, UploadCancelled
from vidupd.core.model import FileIdentity
from vidupd.core.secrets import Secret
from vidupd.core.source import SourceFile
from vidupd.core.throttle import Throttle
from vidupd.providers.oss.credentials import StsCredentials, StsKeeper
from vidupd.providers.part_body import BLOCK, PartBody
from vidupd.providers.youku.wire import _SliceConnections

MIB = 1 << 20
PART = 64 * MIB

pytestmark = pytest.mark.timeout(120)


def source(path: Path, cancel: threading.Event | None = None) -> SourceFile:
    return SourceFile(path, FileIdentity.of(os.stat(path)), Throttle(None), cancel or threading.Event())


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


class Sink:
    """An HTTP/1.1 server that reads every body into one fixed buffer and answers 200:
    records each request's headers and body size (keep-alive, several connections)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[dict[str, str], int]] = []
        self._buf = memoryview(bytearray(256 * 1024))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            while True:
                line = rfile.readline(65536)
                if not line:
                    return
                headers: dict[str, str] = {}
                while (h := rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                left = got = int(headers.get("content-length", "0"))
                while left:
                    n = rfile.readinto(self._buf[:min(left, len(self._buf))])
                    if not n:
                        return
                    left -= n
                self.requests.append((headers, got))
                conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "E"\r\nContent-Type: application/json\r\n'
                             b'x-oss-request-id: r1\r\nContent-Length: 2\r\n\r\n{}')

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def peak_while(fn: Callable[[], Any]) -> int:
    """Peak bytes Python allocated while `fn` ran (above what was allocated before)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# ---- the body itself ------------------------------------------------------------------


def test_body_yields_blocks_with_the_crc_of_what_it_yielded(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f", 5 * MIB + 123)
    data = path.read_bytes()
    with source(path) as src:
        body = PartBody(src, MIB + 7, 3 * MIB + 5)
        blocks = [bytes(b) for b in body]  # each view is valid until the next is read
        assert len(body) == 3 * MIB + 5 and max(map(len, blocks)) == BLOCK
        assert b"".join(blocks) == data[MIB + 7:4 * MIB + 12]
        assert body.sent_crc("t") == crc64(data[MIB + 7:4 * MIB + 12])


def test_body_holds_one_block_however_large_the_part(tmp_path: Path) -> None:
    path = sparse(tmp_path / "sparse", 2 * PART)
    with source(path) as src:
        body = PartBody(src, PART, PART)
        peak = peak_while(lambda: sum(len(b) for b in body))
    assert body.sent == PART
    assert peak < 2 * MIB, f"{peak} bytes allocated at the peak for a {PART}-byte part"


def test_every_iteration_reads_the_file_again(tmp_path: Path) -> None:
    """A retry sends what the file holds now, and a file changed between tries is noticed."""
    path = write_file(tmp_path / "f", 3 * MIB)
    with source(path) as src:
        body = PartBody(src, 0, 3 * MIB)
        first = b"".join(bytes(b) for b in body)
        st = os.stat(path)
        with open(path, "r+b") as f:  # same size, mtime put back: the identity still matches
            f.write(b"new bytes")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        second = b"".join(bytes(b) for b in body)
        assert second[:9] == b"new bytes" and second[9:] == first[9:]
        assert body.crc == crc64(second) != crc64(first)
        with open(path, "ab") as f:  # now the identity changes: the next try stops
            f.write(b"x")
        with pytest.raises(FileChanged):
            list(body)


def test_cancel_stops_a_body_between_blocks(tmp_path: Path) -> None:
    cancel = threading.Event()
    path = sparse(tmp_path / "sparse", 8 * MIB)
    with source(path, cancel) as src:
        it = iter(PartBody(src, 0, 8 * MIB))
        next(it)
        cancel.set()
        with pytest.raises(UploadCancelled):
            next(it)


# ---- through the real HTTP clients ----------------------------------------------------


def test_oss2_streams_a_part_with_content_length(tmp_path: Path, sink: Sink) -> None:
    path = sparse(tmp_path / "big", 2 * PART)
    bucket = oss2.Bucket(oss2.StsAuth("id", "secret", "token"), f"http://127.0.0.1:{sink.port}", "bucket1",
                         enable_crc=False)
    with source(path) as src:
        body = PartBody(src, PART, PART)
        peak = peak_while(lambda: bucket.upload_part("k", "u1", 2, body))
    (headers, got), = sink.requests
    assert got == PART and headers["content-length"] == str(PART) and "transfer-encoding" not in headers
    assert body.sent_crc("t") == crc64(bytes(PART))
    assert peak < 8 * MIB, f"{peak} bytes allocated at the peak for a {PART}-byte part"


def test_youku_slice_connection_streams_with_content_length(tmp_path: Path, sink: Sink) -> None:
    path = sparse(tmp_path / "big", PART)
    conns = _SliceConnections(10.0)
    with source(path) as src:
        body = PartBody(src, 0, PART)
        peak = peak_while(lambda: conns.post(f"127.0.0.1:{sink.port}", "/gupload/upload_slice?x=1", body))
    conns.close()
    (headers, got), = sink.requests
    assert got == PART and headers["content-length"] == str(PART) and "transfer-encoding" not in headers
    assert peak < 8 * MIB, f"{peak} bytes allocated at the peak for a {PART}-byte slice"


# ---- credentials ----------------------------------------------------------------------


def creds(expires_in: float, key: str = "k", token: str = "tok-zero") -> StsCredentials:
    return StsCredentials("id", Secret("sec-" + token), Secret(token), time.time() + expires_in, 3600.0,
                          "http://127.0.0.1:1", "bucket1", key, "cn-shanghai")


def test_keeper_renews_once_for_every_thread() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def renew() -> StsCredentials:
        calls.append(1)
        gate.wait(5)  # every other thread notices the expiry meanwhile
        return creds(3600, token="tok-one")

    notes: list[tuple[str, dict[str, Any]]] = []
    keeper = StsKeeper(creds(10), renew, oss2.Session(), (1.0, 1.0), lambda a, m, **f: notes.append((a, f)))
    got: list[StsCredentials] = []
    threads = [threading.Thread(target=lambda: got.append(keeper.bucket()[0])) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(got) == 8 and {c.security_token for c in got} == {Secret("tok-one")}
    assert notes == [("auth.refreshed", {"reason": "expiring"})]
    stale = creds(3600, token="tok-one")
    keeper.renew(keeper.credentials, "SecurityTokenExpired")  # OSS refused the current ones: renewed
    keeper.renew(stale, "SecurityTokenExpired")  # a thread holding older ones: nothing to do
    assert len(calls) == 2
    assert "tok-one" not in repr(keeper.credentials)  # nor "sec-tok-one": both hidden


# ---- VOD without a fingerprint (real sandboxes) -------------------------------------


@pytest.fixture
def vod(tmp_path: Path) -> Iterator[Env]:
    env = Env(tmp_path)
    yield env
    env.shutdown()


def unhashed(job: Any) -> Any:
    """The job as the pool sends it when no twin is possible: no MD5, no fingerprint."""
    job.request = dataclasses.replace(job.request, content=None)
    return job


@pytest.mark.parametrize("size", [300 * 1024, 9 * MIB + 5], ids=["put", "multipart"])
def test_unhashed_vod_upload_returns_the_content_id(vod: Env, size: int) -> None:
    path = vod.file("clip.mp4", size)
    result = vod.upload(vod.provider(part_size=MIB, multipart_threshold=MIB), unhashed(vod.job(path)))
    assert result.content_id == content_hash(path, FileIdentity.of(os.stat(path)), "crc64").content_id
    assert vod.entry(result.remote_id)["md5"] == md5_of(path)
    hashed = vod.upload(vod.provider(part_size=MIB), vod.job(vod.file("other.mp4", size, seed=2), job_id=2))
    assert hashed.content_id is None  # hashed before: nothing new to report


def test_unhashed_resume_of_a_rewritten_file_is_refused(vod: Env) -> None:
    path = vod.file("rewritten.mp4", 12 * MIB)
    first = unhashed(vod.job(path, on_progress=lambda job, done: done >= 4 * MIB and job.cancel.set()))
    vod.fails(UploadCancelled, lambda: vod.upload(vod.provider(), first))
    kept = first.checkpoint.load()["media"]["oss"]["parts"]
    assert kept and min(p[0] for p in kept) == 1
    st = os.stat(path)
    with open(path, "r+b") as f:  # rewrite part 1 in place, size and mtime kept
        f.write(os.urandom(4096))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = unhashed(vod.job(path, checkpoint=first.checkpoint))
    error = vod.fails(ContentMismatch, lambda: vod.upload(vod.provider(), second))
    assert "part 1" in str(error)
    assert not [e for e in vod.journal.entries() if e["remote_id"] == first.remote_ids[0][0]]  # nothing completed


def test_unhashed_resume_of_an_unchanged_file_completes(vod: Env) -> None:
    path = vod.file("same.mp4", 12 * MIB)
    first = unhashed(vod.job(path, on_progress=lambda job, done: done >= 4 * MIB and job.cancel.set()))
    vod.fails(UploadCancelled, lambda: vod.upload(vod.provider(), first))
    second = unhashed(vod.job(path, checkpoint=first.checkpoint))
    result = vod.upload(vod.provider(), second)
    assert second.actions("upload.resumed")[0]["parts_done"] > 0
    assert result.content_id == content_hash(path, FileIdentity.of(os.stat(path)), "crc64").content_id
    assert vod.entry(result.remote_id)["md5"] == md5_of(path)

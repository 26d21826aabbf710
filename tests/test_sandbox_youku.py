"""The Youku sandbox speaks PROTOCOLS.md section 1 over real HTTP on loopback.

Most tests drive the six steps by hand with `requests`; the public clients' interop tests
are in test_interop_youku.py, the OSS flow's in test_sandbox_youku_oss.py.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import FakeClock
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox
from vidupd.sandbox.youku_state import (ALREADY_COMMITTED, FILE_MD5_MISMATCH, FILE_NOT_CREATED, SLICE_HASH_MISMATCH,
                                        SLICE_TASK_MISMATCH, UPLOAD_INCOMPLETE, upload_server_ip)

KIB = 1024
MIB = 1024 * KIB
SLICE = 64 * KIB  # tests ask for 64 KB slices (slice_length=64) to stay small and fast
# The server decides slice lengths (by default 12,345 bytes short of the request, see
# test_server_decides_unaligned_slice_lengths); the task arithmetic below is easier to read
# with a granted length equal to the request, so make_yk sets youku_slice_length=SLICE.


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Yk:
    """A sandbox plus a keep-alive session and the steps of the protocol, by hand."""

    sb: YoukuSandbox
    http: requests.Session
    journal: UploadsJournal

    @property
    def creds(self) -> dict[str, str]:
        return self.sb.credentials

    def api(self, method: str, path: str, **params: Any) -> requests.Response:
        auth = {"client_id": self.creds["client_id"], "access_token": self.creds["access_token"]}
        merged = {**auth, **params}
        merged = {k: v for k, v in merged.items() if v is not None}
        url = f"{self.sb.api_base}/{path}"
        if method == "GET":
            return self.http.get(url, params=merged, timeout=10)
        return self.http.post(url, data=merged, timeout=10)

    def up(self, method: str, step: str, params: dict[str, Any], data: bytes | None = None) -> requests.Response:
        url = f"http://{self.sb.upload_server}/gupload/{step}"
        if method == "GET":
            return self.http.get(url, params=params, timeout=10)
        if step == "upload_slice":
            return self.http.post(url, params=params, data=data, timeout=10)
        return self.http.post(url, data=params, timeout=10)

    def create(self, content: bytes, title: str = "clip", file_md5: str | None = None, **extra: Any) -> dict[str, Any]:
        r = self.api(
            "GET",
            "uploads/create.json",
            title=title,
            tags="vidupd,test",
            file_name="clip.mp4",
            file_size=len(content),
            file_md5=file_md5 or md5(content),
            **extra,
        )
        assert r.status_code == 201, r.text
        return r.json()

    def create_file(self, token: str, size: int, slice_kb: int = SLICE // KIB) -> None:
        r = self.up(
            "POST", "create_file", {"upload_token": token, "file_size": size, "ext": "mp4", "slice_length": slice_kb}
        )
        assert r.status_code == 201, r.text

    def new_slice(self, token: str) -> dict[str, Any]:
        r = self.up("GET", "new_slice", {"upload_token": token})
        assert r.status_code == 201, r.text
        return r.json()

    def upload_slice(self, token: str, task: dict[str, Any], content: bytes, **override: Any) -> requests.Response:
        piece = content[task["offset"] : task["offset"] + task["length"]]
        body = override.pop("body", piece)
        params = {
            "upload_token": token,
            "slice_task_id": task["slice_task_id"],
            "offset": task["offset"],
            "length": task["length"],
            "hash": md5(piece),
            **override,
        }
        return self.up("POST", "upload_slice", params, data=body)

    def check(self, token: str) -> dict[str, Any]:
        r = self.up("GET", "check", {"upload_token": token})
        assert r.status_code == 200, r.text
        return r.json()

    def commit(self, token: str) -> requests.Response:
        """With the upload_server_ip `check` answers for this token (computed, so a dead
        token's commit can be tried too)."""
        return self.api("POST", "uploads/commit.json", upload_token=token, upload_server_ip=upload_server_ip(token))

    def upload_all(self, token: str, content: bytes, parallel: int = 1) -> None:
        """new_slice once per worker, then each worker follows upload_slice's next task."""

        def worker(task: dict[str, Any]) -> None:
            with requests.Session() as own:
                me = Yk(self.sb, own, self.journal)
                while task["slice_task_id"]:
                    r = me.upload_slice(token, task, content)
                    assert r.status_code == 201, r.text
                    task = r.json()

        first = [self.new_slice(token) for _ in range(parallel)]
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(worker, first))

    def full_upload(self, content: bytes, parallel: int = 1, **create: Any) -> tuple[str, str]:
        token = self.create(content, **create)["upload_token"]
        self.create_file(token, len(content))
        self.upload_all(token, content, parallel)
        r = self.commit(token)
        assert r.status_code == 200, r.text
        return token, r.json()["video_id"]


def assert_error(r: requests.Response, code: int, status: int = 400) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] and err["description"], err


@pytest.fixture
def make_yk(tmp_path: Path) -> Iterator[Any]:
    started: list[Yk] = []

    def make(data_dir: Path | None = None, encode_seconds: float = 2.0, clock: Any = time.time, **options: Any) -> Yk:
        d = data_dir or tmp_path / "sandbox"
        d.mkdir(exist_ok=True)
        journal = UploadsJournal(d / "uploads.jsonl")
        options.setdefault("youku_slice_length", SLICE)
        sb = YoukuSandbox(d, SandboxOptions(**options), journal, encode_seconds=encode_seconds, clock=clock)
        sb.start()
        started.append(Yk(sb, requests.Session(), journal))
        return started[-1]

    yield make
    for yk in started:
        yk.http.close()
        yk.sb.shutdown()


@pytest.fixture
def yk(make_yk: Any) -> Yk:
    return make_yk()


# ---- the six steps ----


def test_full_flow_with_parallel_slices(yk: Yk) -> None:
    content = os.urandom(10 * SLICE + 1234)
    created = yk.create(content)
    assert created["upload_server_uri"] == yk.sb.upload_server
    assert created["instant_upload_ok"] == "no"
    token = created["upload_token"]
    yk.create_file(token, len(content))
    tasks = [yk.new_slice(token) for _ in range(3)]
    assert [t["offset"] for t in tasks] == [0, SLICE, 2 * SLICE]
    assert len({t["slice_task_id"] for t in tasks}) == 3 and all(t["length"] == SLICE for t in tasks)
    assert yk.check(token)["status"] == 4

    def worker(task: dict[str, Any]) -> int:
        n = 0
        with requests.Session() as own:
            me = Yk(yk.sb, own, yk.journal)
            while task["slice_task_id"]:
                r = me.upload_slice(token, task, content)
                assert r.status_code == 201, r.text
                task = r.json()
                assert set(task) == {"slice_task_id", "offset", "length", "transferred", "finished"}
                n += 1
        return n

    with ThreadPoolExecutor(3) as pool:
        assert sum(pool.map(worker, tasks)) == 11
    status = yk.check(token)
    assert status == {
        "status": 1,
        "transferred_percent": 100,
        "confirmed_percent": 100,
        "empty_tasks": 0,
        "finished": True,
        "upload_server_ip": upload_server_ip(token),
    }
    assert yk.new_slice(token)["slice_task_id"] == 0
    r = yk.commit(token)
    assert r.status_code == 200
    video_id = r.json()["video_id"]
    assert video_id.startswith("X")
    [entry] = yk.journal.entries()
    assert entry["provider"] == "youku" and entry["remote_id"] == video_id and entry["kind"] == "video"
    assert entry["size"] == len(content) and entry["md5"] == md5(content) and entry["upload_token"] == token
    stored = yk.sb.store.files / f"{token}.mp4"
    assert stored.read_bytes() == content


def test_last_slice_length_is_decided_by_server(yk: Yk) -> None:
    content = os.urandom(SLICE + 10)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    first = yk.new_slice(token)
    nxt = yk.upload_slice(token, first, content).json()
    assert (nxt["offset"], nxt["length"], nxt["transferred"], nxt["finished"]) == (SLICE, 10, SLICE, False)
    done = yk.upload_slice(token, nxt, content).json()
    assert done == {"slice_task_id": 0, "offset": 0, "length": 0, "transferred": len(content), "finished": True}


def test_bad_slice_md5_is_rejected_and_the_task_stays_open(yk: Yk) -> None:
    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    task = yk.new_slice(token)
    assert_error(yk.upload_slice(token, task, content, hash=md5(b"other")), SLICE_HASH_MISMATCH)
    assert yk.check(token)["transferred_percent"] == 0
    corrupt = bytearray(content[:SLICE])
    corrupt[5] ^= 1
    r = yk.upload_slice(token, task, content, body=bytes(corrupt))
    assert_error(r, SLICE_HASH_MISMATCH)
    assert yk.upload_slice(token, task, content).status_code == 201  # same keep-alive connection


def test_slice_must_match_the_task_handed_out(yk: Yk) -> None:
    content = os.urandom(3 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    task = yk.new_slice(token)
    assert_error(yk.upload_slice(token, task, content, offset=SLICE), SLICE_TASK_MISMATCH)
    short = {**task, "length": SLICE - 1}
    assert_error(yk.upload_slice(token, short, content), SLICE_TASK_MISMATCH)
    ghost = {**task, "slice_task_id": 99}
    assert_error(yk.upload_slice(token, ghost, content), SLICE_TASK_MISMATCH)
    assert_error(yk.upload_slice(token, task, content, slice_task_id="x"), 1013)
    r = yk.up(
        "POST", "upload_slice", {"upload_token": token, "slice_task_id": 1, "offset": 0, "length": SLICE}, b"z" * SLICE
    )
    assert_error(r, 1012)
    assert yk.upload_slice(token, task, content).status_code == 201


def test_optional_crc32_is_checked(yk: Yk) -> None:
    import zlib

    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    task = yk.new_slice(token)
    good = f"{zlib.crc32(content[:SLICE]):08x}"
    assert_error(yk.upload_slice(token, task, content, crc=f"{int(good, 16) ^ 1:08x}"), SLICE_HASH_MISMATCH)
    assert_error(yk.upload_slice(token, task, content, crc="not-hex"), 1013)
    assert yk.upload_slice(token, task, content, crc=good.upper()).status_code == 201


def test_concurrent_commits_give_one_video_and_one_journal_line(yk: Yk) -> None:
    content = os.urandom(4 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    yk.upload_all(token, content, parallel=2)

    def commit(_: int) -> str:
        with requests.Session() as own:
            r = Yk(yk.sb, own, yk.journal).commit(token)
            assert r.status_code == 200, r.text
            return r.json()["video_id"]

    with ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(commit, range(8)))) == 1
    assert len(yk.journal.entries()) == 1


def test_new_slice_needs_create_file(yk: Yk) -> None:
    token = yk.create(b"x" * 100)["upload_token"]
    assert_error(yk.up("GET", "new_slice", {"upload_token": token}), FILE_NOT_CREATED)
    assert yk.check(token)["status"] == 4


def test_commit_checks_the_assembled_md5(yk: Yk) -> None:
    content = os.urandom(3 * SLICE)
    token = yk.create(content, file_md5=md5(b"something else"))["upload_token"]
    yk.create_file(token, len(content))
    yk.upload_all(token, content, parallel=2)
    assert_error(yk.commit(token), FILE_MD5_MISMATCH)
    assert yk.journal.entries() == []


def test_commit_of_an_incomplete_upload_is_refused(yk: Yk) -> None:
    content = os.urandom(3 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    yk.upload_slice(token, yk.new_slice(token), content)
    assert_error(yk.commit(token), UPLOAD_INCOMPLETE)


def test_commit_is_idempotent(yk: Yk) -> None:
    token, video_id = yk.full_upload(os.urandom(2 * SLICE))
    again = yk.commit(token)
    assert again.status_code == 200 and again.json()["video_id"] == video_id
    assert [e["remote_id"] for e in yk.journal.entries()] == [video_id]


def test_cancel_abandons_an_upload(yk: Yk) -> None:
    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    r = yk.api("GET", "uploads/cancel.json", upload_token=token, upload_server_ip="127.0.0.1")
    assert r.status_code == 200 and r.json() == {"upload_token": token}
    assert_error(yk.up("GET", "check", {"upload_token": token}), 120010223)
    assert_error(yk.commit(token), 120010223)
    assert not (yk.sb.store.files / f"{token}.part").exists()
    done, _ = yk.full_upload(os.urandom(SLICE))
    assert_error(yk.api("GET", "uploads/cancel.json", upload_token=done), ALREADY_COMMITTED)


def test_instant_upload_of_known_content(yk: Yk) -> None:
    content = os.urandom(2 * SLICE)
    _, first = yk.full_upload(content)
    created = yk.create(content, title="again")
    assert created["instant_upload_ok"] == "yes"
    token = created["upload_token"]
    assert yk.check(token)["status"] == 1
    yk.create_file(token, len(content))  # the stock client still calls it
    assert yk.new_slice(token) == {
        "slice_task_id": 0,
        "offset": 0,
        "length": 0,
        "transferred": len(content),
        "finished": True,
    }
    r = yk.commit(token)
    assert r.status_code == 200 and r.json()["video_id"] != first
    assert [e["md5"] for e in yk.journal.entries()] == [md5(content)] * 2
    assert yk.create(os.urandom(2 * SLICE))["instant_upload_ok"] == "no"


# ---- credentials ----


def test_refresh_rotates_the_token_pair(yk: Yk) -> None:
    old = yk.creds
    url = f"{yk.sb.api_base}/oauth2/token.json"
    form = {"client_id": old["client_id"], "grant_type": "refresh_token", "refresh_token": old["refresh_token"]}
    r = requests.post(url, data={**form, "client_secret": old["client_secret"]}, timeout=10)
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "refresh_token", "expires_in", "token_type"}
    assert pair["token_type"] == "bearer" and isinstance(pair["expires_in"], str) and int(pair["expires_in"]) > 0
    assert pair["access_token"] != old["access_token"] and pair["refresh_token"] != old["refresh_token"]
    assert yk.creds["access_token"] == pair["access_token"] and yk.creds["refresh_token"] == pair["refresh_token"]
    assert yk.create(b"v" * 10)["upload_token"]
    assert_error(requests.post(url, data=form, timeout=10), 1008)  # the old refresh token is spent
    assert_error(
        requests.post(url, data={**form, "refresh_token": pair["refresh_token"], "client_id": "nope"}, timeout=10), 1005
    )
    assert_error(
        requests.post(url, data={**form, "refresh_token": pair["refresh_token"], "grant_type": "password"}, timeout=10),
        1013,
    )


def test_access_token_expires_after_token_ttl(make_yk: Any) -> None:
    clock = FakeClock()
    yk = make_yk(token_ttl=60, clock=clock)
    content = os.urandom(SLICE)
    token = yk.create(content)["upload_token"]
    assert (
        yk.api(
            "POST", "oauth2/token.json", grant_type="refresh_token", refresh_token=yk.creds["refresh_token"]
        ).status_code
        == 200
    )
    yk.create_file(token, len(content))
    clock.advance(61)
    assert_error(yk.api("GET", "uploads/create.json", title="t"), 1009)
    yk.upload_all(token, content)  # the upload server only wants the upload token
    assert_error(yk.commit(token), 1009)
    form = {
        "client_id": yk.creds["client_id"],
        "grant_type": "refresh_token",
        "refresh_token": yk.creds["refresh_token"],
    }
    assert requests.post(f"{yk.sb.api_base}/oauth2/token.json", data=form, timeout=10).status_code == 200
    assert yk.commit(token).status_code == 200


def test_api_errors(yk: Yk) -> None:
    assert_error(yk.api("GET", "uploads/create.json", title="t", access_token="bogus"), 1008)
    assert_error(yk.api("GET", "uploads/create.json", title="t", client_id="bogus"), 1005)
    assert_error(yk.api("GET", "uploads/create.json", client_id=None), 1012)
    assert_error(
        yk.api("GET", "uploads/create.json", title="tt", tags="ok,go", file_name="a.mp4", file_md5=md5(b"")), 1012
    )
    base = {"title": "tt", "tags": "ok,go", "file_name": "a.mp4", "file_size": 10, "file_md5": md5(b"")}
    for bad in (
        {"file_size": "ten"},
        {"title": "x" * 61},
        {"tags": "x"},
        {"file_md5": "zz"},
        {"file_name": "notes.txt"},
        {"public_type": "nobody"},
        {"copyright_type": "stolen"},
    ):
        assert_error(yk.api("GET", "uploads/create.json", **{**base, **bad}), 1013)
    assert_error(yk.up("GET", "check", {}), 1012)
    assert_error(yk.up("GET", "check", {"upload_token": "nope"}), 120010223)
    assert yk.http.get(f"{yk.sb.api_base}/no/such.json", timeout=10).status_code == 404


def test_expired_upload_token(yk: Yk) -> None:
    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    task = yk.new_slice(token)
    yk.sb.expire_upload_token(token)
    assert_error(yk.up("GET", "check", {"upload_token": token}), 120010223)
    assert_error(yk.up("GET", "new_slice", {"upload_token": token}), 120010223)
    assert_error(yk.upload_slice(token, task, content), 120010223)
    assert_error(yk.commit(token), 120010223)


# ---- check and slice tasks ----


def test_check_status_4_2_3_1(make_yk: Any) -> None:
    clock = FakeClock()
    yk = make_yk(confirm_delay=5, clock=clock)
    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    first = yk.check(token)
    assert (first["status"], first["empty_tasks"], first["finished"]) == (4, 2, False)
    tasks = [yk.new_slice(token), yk.new_slice(token)]
    assert yk.check(token)["status"] == 2
    assert yk.upload_slice(token, tasks[0], content).json()["slice_task_id"] == 0
    mid = yk.check(token)
    assert (mid["status"], mid["transferred_percent"]) == (2, 50)
    yk.upload_slice(token, tasks[1], content)
    late = yk.check(token)
    assert (late["status"], late["transferred_percent"], late["confirmed_percent"]) == (3, 100, 0)
    assert_error(yk.commit(token), UPLOAD_INCOMPLETE)  # commit waits for status 1
    clock.advance(5)
    assert yk.check(token)["status"] == 1
    assert yk.commit(token).status_code == 200


def test_unfinished_task_is_handed_out_again(make_yk: Any) -> None:
    clock = FakeClock()
    yk = make_yk(slice_task_timeout=30, clock=clock)
    content = os.urandom(2 * SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    lost = yk.new_slice(token)  # its holder "dies"
    yk.upload_all(token, content)
    assert yk.check(token)["status"] == 2
    clock.advance(29)
    assert yk.check(token)["status"] == 2
    clock.advance(1)
    assert yk.check(token)["status"] == 4
    again = yk.new_slice(token)
    assert (again["slice_task_id"], again["offset"], again["length"]) == (lost["slice_task_id"], 0, SLICE)
    assert yk.upload_slice(token, again, content).json()["slice_task_id"] == 0
    late = yk.upload_slice(token, lost, content)  # the first holder wakes up: harmless
    assert late.status_code == 201 and late.json()["finished"] is True
    assert yk.check(token)["status"] == 1
    assert yk.commit(token).status_code == 200
    assert (yk.sb.store.files / f"{token}.mp4").read_bytes() == content


def test_duplicate_ids_reproduces_the_seed_bug(make_yk: Any) -> None:
    yk = make_yk(duplicate_ids=True)
    _, first = yk.full_upload(os.urandom(SLICE), title="one")
    _, second = yk.full_upload(os.urandom(SLICE), title="two")
    assert first == second
    entries = yk.journal.entries()
    assert [e["remote_id"] for e in entries] == [first, first] and entries[1]["duplicate_id"] is True
    assert entries[0]["md5"] != entries[1]["md5"]


def test_videos_show_moves_from_encoding_to_normal(make_yk: Any) -> None:
    clock = FakeClock()
    yk = make_yk(encode_seconds=2, clock=clock)
    _, video_id = yk.full_upload(os.urandom(SLICE), title="show me", category="Tech")
    show = {"client_id": yk.creds["client_id"], "video_id": video_id}
    r = yk.http.get(f"{yk.sb.api_base}/videos/show.json", params=show, timeout=10)
    info = r.json()
    assert r.status_code == 200 and info["state"] == "encoding" and info["id"] == video_id
    for key in (
        "id",
        "title",
        "link",
        "thumbnail",
        "duration",
        "category",
        "state",
        "created",
        "published",
        "description",
        "public_type",
        "copyright_type",
        "user",
        "tags",
        "view_count",
        "streamtypes",
    ):
        assert key in info
    assert (info["title"], info["category"], info["tags"]) == ("show me", "Tech", "vidupd,test")
    clock.advance(2)
    assert yk.http.get(f"{yk.sb.api_base}/videos/show.json", params=show, timeout=10).json()["state"] == "normal"
    missing = yk.http.get(f"{yk.sb.api_base}/videos/show.json", params={**show, "video_id": "XNope"}, timeout=10)
    assert_error(missing, 120020001)
    assert_error(yk.http.get(f"{yk.sb.api_base}/videos/show.json", params={**show, "client_id": "x"}, timeout=10), 1005)


# ---- modes, faults, restart ----


def test_hash_only_mode_still_checks_the_file_md5(make_yk: Any) -> None:
    yk = make_yk(hash_only=True)
    content = os.urandom(9 * SLICE + 7)
    token, video_id = yk.full_upload(content, parallel=4)
    assert yk.journal.entries()[0]["md5"] == md5(content)
    assert not any(yk.sb.store.files.iterdir())  # no bytes kept
    bad = yk.create(os.urandom(3 * SLICE), file_md5=md5(b"wrong"))["upload_token"]
    yk.create_file(bad, 3 * SLICE)
    yk.upload_all(bad, os.urandom(3 * SLICE), parallel=3)
    assert_error(yk.commit(bad), FILE_MD5_MISMATCH)


def test_max_rate_caps_slice_bodies(make_yk: Any) -> None:
    yk = make_yk(max_rate=2 * 1024 * 1024)
    start = time.monotonic()
    yk.full_upload(os.urandom(16 * SLICE))  # 1 MiB at 2 MiB/s
    assert time.monotonic() - start >= 0.4


def test_faults_are_survivable_by_a_retrying_client(make_yk: Any) -> None:
    yk = make_yk(fail_rate=0.3, seed=7)
    content = os.urandom(8 * SLICE + 5)
    seen: dict[str, int] = {"5xx": 0, "drop": 0}

    def retry(call: Any) -> requests.Response:
        for _ in range(50):
            try:
                r = call()
            except requests.ConnectionError:
                seen["drop"] += 1
                continue
            if r.status_code < 500:
                return r
            seen["5xx"] += 1
        raise AssertionError("no answer in 50 tries")

    r = retry(
        lambda: yk.api(
            "GET",
            "uploads/create.json",
            title="tt",
            tags="ok,go",
            file_name="f.mp4",
            file_size=len(content),
            file_md5=md5(content),
        )
    )
    token = r.json()["upload_token"]
    retry(lambda: yk.up("POST", "create_file", {"upload_token": token, "file_size": len(content), "slice_length": 64}))
    task = retry(lambda: yk.up("GET", "new_slice", {"upload_token": token})).json()
    while task["slice_task_id"]:
        task = retry(lambda task=task: yk.upload_slice(token, task, content)).json()
    assert retry(lambda: yk.up("GET", "check", {"upload_token": token})).json()["status"] == 1
    ids = {retry(lambda: yk.commit(token)).json()["video_id"] for _ in range(3)}
    assert len(ids) == 1 and seen["5xx"] and seen["drop"]
    assert [e["md5"] for e in yk.journal.entries()] == [md5(content)]


def test_restart_keeps_tokens_sessions_and_videos(make_yk: Any, tmp_path: Path) -> None:
    d = tmp_path / "restart"
    d.mkdir()
    yk = make_yk(data_dir=d)
    creds = yk.creds
    content = os.urandom(4 * SLICE)
    _, video_id = yk.full_upload(os.urandom(SLICE))
    done_token = yk.journal.entries()[0]["upload_token"]
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    first = yk.new_slice(token)
    held = yk.upload_slice(token, first, content).json()  # handed out, not yet uploaded
    upload_server = yk.sb.upload_server
    yk.sb.shutdown()

    yk2 = make_yk(data_dir=d)
    assert yk2.creds == creds
    assert yk2.sb.upload_server == upload_server  # where resuming clients will knock
    status = yk2.check(token)
    assert (status["status"], status["transferred_percent"]) == (4, 25)
    task = held
    while task["slice_task_id"]:  # the task handed out before the restart is still valid
        r = yk2.upload_slice(token, task, content)
        assert r.status_code == 201, r.text
        task = r.json()
    r = yk2.commit(token)
    assert r.status_code == 200, r.text
    assert yk2.commit(done_token).json()["video_id"] == video_id
    assert (yk2.sb.store.files / f"{token}.mp4").read_bytes() == content
    assert [e["md5"] for e in yk2.journal.entries()] == [yk.journal.entries()[0]["md5"], md5(content)]


def test_public_api_and_no_client_imports() -> None:
    params = list(inspect.signature(YoukuSandbox).parameters)
    assert params[:5] == ["data_dir", "options", "journal", "api_port", "upload_port"]
    for name in ("start", "shutdown", "expire_upload_token", "api_base", "upload_server", "credentials"):
        assert hasattr(YoukuSandbox, name)
    code = "import sys, vidupd.sandbox.youku; print(sorted(m for m in sys.modules if m.startswith('vidupd')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(m == "vidupd" or m.startswith("vidupd.sandbox") for m in json.loads(out.replace("'", '"')))


def test_concurrent_keep_alive_connections_do_not_block_each_other(make_yk: Any) -> None:
    yk = make_yk(hash_only=True)
    contents = [os.urandom(6 * SLICE) for _ in range(3)]
    ids: list[str] = []
    lock = threading.Lock()

    def one(content: bytes) -> None:
        with requests.Session() as own:
            _, vid = Yk(yk.sb, own, yk.journal).full_upload(content, parallel=2)
        with lock:
            ids.append(vid)

    threads = [threading.Thread(target=one, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(ids)) == 3
    assert sorted(e["md5"] for e in yk.journal.entries()) == sorted(md5(c) for c in contents)


# ---- the realistic legacy server (issue 10) ----


def test_server_decides_unaligned_slice_lengths(make_yk: Any) -> None:
    """By default the server grants 12,345 bytes less than asked: not 2 MiB, not KiB-aligned,
    and a slice sent with the requested length is refused."""
    yk = make_yk(youku_slice_length=0)
    content = os.urandom(2 * MIB + 5000)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content), slice_kb=2048)
    first = yk.new_slice(token)
    granted = 2 * MIB - 12345
    assert (first["offset"], first["length"]) == (0, granted)
    assert_error(yk.upload_slice(token, {**first, "length": 2 * MIB}, content), SLICE_TASK_MISMATCH)
    nxt = yk.upload_slice(token, first, content).json()
    assert (nxt["offset"], nxt["length"]) == (granted, len(content) - granted)
    assert yk.upload_slice(token, nxt, content).json()["finished"] is True
    assert yk.commit(token).status_code == 200
    assert (yk.sb.store.files / f"{token}.mp4").read_bytes() == content
    fixture = make_yk(data_dir=yk.sb.store.root.parent.parent / "fixture", youku_slice_length=12345)
    token = fixture.create(content)["upload_token"]
    fixture.create_file(token, len(content), slice_kb=2048)
    assert fixture.new_slice(token)["length"] == 12345  # the PHP SDK's fixture value


def test_commit_needs_the_upload_server_ip_check_named(yk: Yk) -> None:
    content = os.urandom(SLICE)
    token = yk.create(content)["upload_token"]
    yk.create_file(token, len(content))
    yk.upload_all(token, content)
    named = yk.check(token)["upload_server_ip"]
    assert named != "127.0.0.1" and named.count(".") == 3  # not the address the client resolved
    assert_error(yk.api("POST", "uploads/commit.json", upload_token=token, upload_server_ip="127.0.0.1"), 1013)
    assert_error(yk.api("POST", "uploads/commit.json", upload_token=token), 1012)
    r = yk.api("POST", "uploads/commit.json", upload_token=token, upload_server_ip=named)
    assert r.status_code == 200 and r.json()["video_id"].startswith("X")


def test_request_lines_over_8k_get_414(yk: Yk) -> None:
    """A GET create with a 2,000-character Chinese description is ~18 KB of request line:
    refused like nginx does; the same create as a POST form goes through."""
    content = os.urandom(SLICE)
    description = "优酷视频描述" * 333 + "优酷"  # 2,000 characters, 6,000 UTF-8 bytes, 18,000 escaped
    fields = {"title": "长描述", "tags": "vidupd,test", "file_name": "clip.mp4", "file_size": len(content),
              "file_md5": md5(content), "description": description}
    r = yk.api("GET", "uploads/create.json", **fields)
    assert r.status_code == 414 and r.headers.get("Connection") == "close"
    r = yk.api("POST", "uploads/create.json", **fields)
    assert r.status_code == 201, r.text
    token = r.json()["upload_token"]
    assert yk.up("GET", "check", {"upload_token": token, "pad": "x" * 8200}).status_code == 414
    exact = f"{yk.sb.api_base}/videos/show.json?client_id={yk.creds['client_id']}&video_id=XNope&pad="
    line = len("GET ") + len(exact) - len(yk.sb.api_base) + len(" HTTP/1.1")
    at_limit = yk.http.get(exact + "p" * (8192 - line), timeout=10)  # 8192 bytes exactly: served
    assert_error(at_limit, 120020001)
    assert yk.http.get(exact + "p" * (8193 - line), timeout=10).status_code == 414


def test_create_is_validated_as_documented(yk: Yk) -> None:
    content = os.urandom(100)
    base = {"title": "ok", "tags": "vidupd,test", "file_name": "clip.mp4", "file_size": len(content),
            "file_md5": md5(content)}

    def create(**change: Any) -> requests.Response:
        return yk.api("POST", "uploads/create.json", **{**base, **change})

    for good in ({"title": "标题"}, {"title": "x" * 50}, {"tags": ",".join(f"tag{i}" for i in range(10))},
                 {"tags": "x" * 20}, {"description": "描" * 2000}, {"copyright_type": "reproduced"},
                 {"public_type": "friend"}, {"public_type": "password", "watch_password": "s3cret"},
                 {"latitude": "31.23", "longitude": "121.47", "shoot_time": "2026-01-02 03:04:05"}):
        assert create(**good).status_code == 201, good
    for bad in ({"title": "x"}, {"title": "x" * 51}, {"tags": ",".join(f"tag{i}" for i in range(11))},
                {"tags": "x" * 21}, {"tags": "ok,,go"}, {"description": "描" * 2001},
                {"copyright_type": "stolen"}, {"public_type": "nobody"}, {"latitude": "91"},
                {"longitude": "east"}):
        assert_error(create(**bad), 1013)
    assert_error(create(public_type="password"), 1012)  # needs watch_password
    assert_error(create(tags=None), 1012)


def test_injected_faults_include_1001_on_the_api(make_yk: Any) -> None:
    yk = make_yk(fail_rate=1.0, seed=3)
    seen: set[tuple[int, int]] = set()
    for _ in range(60):
        try:
            r = yk.api("GET", "uploads/create.json", title="tt")
        except requests.ConnectionError:
            continue
        err = r.json()["error"]
        seen.add((r.status_code, err["code"]))
        assert err["description"] in ("Service temporarily unavailable", "Service exception")
    assert (503, 1001) in seen and {code for _, code in seen} == {1001, 1002}
    for _ in range(30):  # the upload server keeps its own 1002
        try:
            r = yk.up("GET", "check", {"upload_token": "x"})
        except requests.ConnectionError:
            continue
        assert r.json()["error"]["code"] == 1002

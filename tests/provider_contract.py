"""The provider contract, written once against the Provider interface and run for every
provider (in the spirit of rclone's fstests.Run and Filebeat's storecompliance).

A per-provider file (tests/test_contract_<name>.py) subclasses `ProviderContract` and gives
a `make_backend` fixture: a factory of `Backend`s, each owning its sandbox (real HTTP on
127.0.0.1) or folder, saying which target settings reach it, what it stores and which
secrets must never leak. The cases here build the provider as the daemon does (the target's
settings through `vidupd.config.load`, then `daemon._build_provider` with a real Ledger),
the requests as the pool does (`content_hash`: MD5 and piece digests, or CRC-64, per
`needs_md5`), and are gated by `features(provider)` and the provider's `kinds`.

Every case runs twice (`again`): its second phase (the resume, the rerun, the status poll)
uses either the same provider instance or a fresh one built on a reopened ledger and a
reopened checkpoint store, as after a daemon restart. On teardown every note, checkpoint,
remote id, result, exception and log record of the case is searched for the backend's
secrets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from helpers import write_config
from provider_harness import MIB, FileCheckpoint, Job, make_job, write_file

from vidupd import config as config_module
from vidupd.core.content import content_hash
from vidupd.core.errors import FileChanged, PermanentError, UploadCancelled
from vidupd.core.model import Metadata
from vidupd.core.throttle import Throttle
from vidupd.ledger import Ledger
from vidupd.providers.base import Provider, UploadResult
from vidupd.providers.features import ReportsStatus, features
from vidupd.service.daemon import _build_provider

TARGET = "contract"
READY_TIMEOUT = 20.0
RESUME_CHUNKS = 12  # a resumed file: enough chunks that a cancel after 3 leaves most unsent


class Backend:
    """One provider's side of the contract: where uploads land and what must stay secret.
    Subclasses set the class attributes and implement `settings`; the rest is optional."""

    provider: str  # the provider's registered name
    chunk: int = MIB  # the unit it acknowledges and checkpoints by (a slice, a part, a block)
    in_flight: int = 1  # chunks it may have read but not had acknowledged when cancelled
    faults: bool = False  # the sandbox was started with injected faults
    file_names = {"video": "clip.mp4", "image": "poster.png", "attached": "subs.vtt"}

    def settings(self) -> dict[str, Any]:
        """The target's keys as written in the config file (secrets inline)."""
        raise NotImplementedError

    def bad_credentials(self) -> dict[str, Any] | None:
        """Overrides of `settings` the platform refuses for good; None: nothing to refuse."""
        return None

    def stored(self) -> list[dict[str, Any]] | None:
        """What the platform holds, one dict per finished object (remote_id, md5, size);
        None if the provider stores nothing (null)."""
        return None

    def secrets(self) -> set[str]:
        """Every secret value the provider was given or the platform issued (asked at teardown)."""
        return set()

    def tune(self, provider: Provider) -> None:
        """Shorten what a test must not wait for (status-poll retries)."""

    def close(self) -> None:
        """Stop the sandbox."""


class CountingThrottle(Throttle):
    """No cap; counts the bytes the provider read from the source (every read goes through it)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.taken = 0
        self._count_lock = threading.Lock()

    def take(self, n: int, cancel: threading.Event | None = None) -> None:
        with self._count_lock:
            self.taken += n
        super().take(n, cancel)


class _LogTexts(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(record.getMessage() + (self.format(record) if record.exc_info else ""))
        except Exception:  # noqa: BLE001 - a broken record is not the provider's secret
            self.texts.append(repr(record.msg))


class Harness:
    """Builds providers as the daemon does, requests as the pool does, and records all that
    the provider said, for the secret check."""

    def __init__(self, backend: Backend, root: Path, again: str):
        self.backend = backend
        self.root = root
        self.again = again
        self.state = root / "state"
        self.files = root / "files"
        self.files.mkdir(parents=True)
        self.ledger = Ledger(self.state)
        self.providers: list[Provider] = []
        self.jobs: list[Job] = []
        self.checkpoints: list[FileCheckpoint] = []
        self.texts: list[str] = []
        self._config_n = 0

    # -- providers -----------------------------------------------------------------------
    def build(self, **overrides: Any) -> Provider:
        """A provider for the backend's settings (plus overrides; None drops a key), validated
        by the config loader and built by the daemon's own `_build_provider`."""
        body = {"provider": self.backend.provider, **self.backend.settings(), **overrides}
        body = {k: v for k, v in body.items() if v is not None}
        self._config_n += 1
        path = self.root / f"vidupd-{self._config_n}.toml"
        write_config(path, {"state_dir": str(self.state)}, {TARGET: body},
                     [{"path": str(self.files), "targets": [TARGET]}])
        provider = _build_provider(config_module.load(path), TARGET, self.ledger)
        self.backend.tune(provider)
        self.providers.append(provider)
        return provider

    def again_provider(self, provider: Provider) -> Provider:
        """The provider for a case's second phase: the same instance, or (again="fresh") a new
        one on a reopened ledger, as after a restart."""
        if self.again == "same":
            return provider
        provider.close()
        self.ledger.close()
        self.ledger = Ledger(self.state)
        return self.build()

    def checkpoint(self, name: str = "job") -> FileCheckpoint:
        cp = FileCheckpoint(self.root / f"checkpoint-{name}.json")
        self.checkpoints.append(cp)
        return cp

    def reopened(self, cp: FileCheckpoint) -> FileCheckpoint:
        """The same checkpoint store for the second phase (a new instance when fresh)."""
        if self.again == "same":
            return cp
        again = FileCheckpoint(cp.path)
        self.checkpoints.append(again)
        return again

    # -- jobs ------------------------------------------------------------------------------
    def file(self, size: int, kind: str = "video", seed: int = 1, name: str | None = None) -> Path:
        path = self.files / (name or f"s{seed}-{self.backend.file_names[kind]}")
        if kind == "attached":
            path.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\n" + "x" * size + "\n")
            return path
        return write_file(path, size, seed)

    def job(self, provider: Provider, path: Path, checkpoint: FileCheckpoint, *, kind: str = "video",
            job_id: int = 1, on_progress: Callable[[Job, int], None] | None = None,
            companions: dict[str, Path] | None = None) -> Job:
        """A Job whose request carries what the pool would compute for this provider."""
        throttle = CountingThrottle()
        job = make_job(path, self.root, Metadata(title="a contract clip", description="vidupd contract test"),
                       kind=kind, job_id=job_id, checkpoint=checkpoint, on_progress=on_progress,
                       companions=companions, throttle=throttle)
        content = content_hash(path, job.request.identity, "md5" if provider.needs_md5 else "crc64",
                               piece_size=provider.piece_size)
        job.request = dataclasses.replace(job.request, content=content)
        self.jobs.append(job)
        return job

    def upload(self, provider: Provider, job: Job) -> UploadResult:
        result = provider.upload(job.request, job.ctx)
        self.texts.append(repr(result))
        return result

    def fails(self, error: type[BaseException], fn: Callable[[], Any]) -> BaseException:
        with pytest.raises(error) as info:
            fn()
        chain: list[BaseException] = []
        e: BaseException | None = info.value
        while e is not None and len(chain) < 10:
            chain.append(e)
            e = e.__cause__ or e.__context__
        self.texts += [f"{type(x).__name__}: {x} {x!r}" for x in chain]
        return info.value

    @staticmethod
    def read(job: Job) -> int:
        throttle = job.ctx.throttle
        assert isinstance(throttle, CountingThrottle)
        return throttle.taken

    # -- the platform ----------------------------------------------------------------------
    def stored(self) -> list[dict[str, Any]]:
        stored = self.backend.stored()
        assert stored is not None
        return stored

    def holds(self, result: UploadResult, path: Path) -> None:
        """The platform holds exactly one object for the result, with the file's bytes."""
        stored = self.backend.stored()
        if stored is None:
            return
        mine = [s for s in stored if s["remote_id"] == result.remote_id]
        assert len(mine) == 1, f"{len(mine)} objects stored as {result.remote_id}"
        assert (mine[0]["md5"], mine[0]["size"]) == (md5_of(path), path.stat().st_size)

    # -- teardown --------------------------------------------------------------------------
    def close(self, log_texts: list[str]) -> None:
        for p in self.providers:
            p.close()
        self.ledger.close()
        secrets = {s for s in self.backend.secrets() if s}
        blob = json.dumps([[j.notes, j.remote_ids] for j in self.jobs] + [c.saves for c in self.checkpoints]
                          + self.texts + log_texts, default=str)
        leaked = sorted(s[:4] + "..." for s in secrets if s in blob)
        assert not leaked, f"secrets leaked into a note, checkpoint, result, exception or log: {leaked}"


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def assert_progress(job: Job, size: int) -> None:
    assert job.progress == sorted(job.progress), "progress went backwards"
    assert job.progress and job.progress[-1] == size


def cancel_at(limit: int) -> Callable[[Job, int], None]:
    def stop(job: Job, done: int) -> None:
        if done >= limit:
            job.cancel.set()
    return stop


def _needs(provider: Provider, feature: str) -> None:
    if not getattr(features(provider), feature):
        pytest.skip(f"{provider.name} does not declare the {feature!r} feature")


class ProviderContract:
    """The cases. A subclass provides `make_backend(faults: bool = False) -> Backend`."""

    @pytest.fixture(params=["same", "fresh"])
    def harness(self, request: pytest.FixtureRequest, make_backend: Callable[..., Backend],
                tmp_path: Path) -> Iterator[Callable[..., Harness]]:
        """Harnesses for this case (`faults=True`: on a sandbox with injected faults); the
        second phase of each case uses the same or a fresh provider (`again`)."""
        made: list[Harness] = []
        handler = _LogTexts()
        logging.getLogger().addHandler(handler)

        def make(faults: bool = False) -> Harness:
            h = Harness(make_backend(faults=faults), tmp_path / f"h{len(made)}", request.param)
            made.append(h)
            return h

        try:
            yield make
        finally:
            logging.getLogger().removeHandler(handler)
            try:
                for h in made:
                    h.close(handler.texts)
            finally:
                for h in made:
                    h.backend.close()

    # ---- cases ----------------------------------------------------------------------------

    def test_normal_upload_then_rerun_on_its_checkpoint(self, harness: Callable[..., Harness]) -> None:
        """A file goes whole; run again on its checkpoint (a crash before the ledger recorded
        the result) it gives the same id and sends nothing a second time."""
        h = harness()
        provider = h.build()
        path = h.file(4 * h.backend.chunk + 12345)
        size = path.stat().st_size
        cp = h.checkpoint()
        job = h.job(provider, path, cp)
        result = h.upload(provider, job)
        assert result.remote_kind == "video"
        assert_progress(job, size)
        assert h.read(job) >= size, "the file was not read through ctx (throttle)"
        if job.remote_ids or features(provider).resume:
            assert job.remote_ids == [(result.remote_id, "video")]
        assert bool(cp.saves) == features(provider).resume, "a checkpoint is kept exactly by Resumable providers"
        h.holds(result, path)
        if not features(provider).resume:
            return
        again = h.again_provider(provider)
        rerun = h.job(again, path, h.reopened(cp))
        assert h.upload(again, rerun).remote_id == result.remote_id
        assert h.read(rerun) == 0 and rerun.remote_ids in ([], [(result.remote_id, "video")])
        h.holds(result, path)
        if h.backend.stored() is not None:
            assert len(h.stored()) == 1

    def test_resume_after_cancel(self, harness: Callable[..., Harness]) -> None:
        """Cancelled part-way, the upload resumes from its checkpoint (also in a new provider):
        what the platform acknowledged is not sent again, and one object results."""
        h = harness()
        provider = h.build()
        _needs(provider, "resume")
        chunk = h.backend.chunk
        path = h.file(RESUME_CHUNKS * chunk)  # cancelled after 3: the parts in flight then go twice
        size = path.stat().st_size
        cp = h.checkpoint()
        first = h.job(provider, path, cp, on_progress=cancel_at(3 * chunk))
        h.fails(UploadCancelled, lambda: h.upload(provider, first))
        assert h.read(first) < size and cp.load(), "cancel did not stop the upload part-way with a checkpoint"
        assert h.stored() == []
        again = h.again_provider(provider)
        second = h.job(again, path, h.reopened(cp))
        result = h.upload(again, second)
        assert h.read(second) <= size - 2 * chunk, "the resumed upload sent what was acknowledged again"
        assert h.read(first) + h.read(second) <= size + h.backend.in_flight * chunk, \
            "more than the chunks in flight at the cancel went twice"
        assert second.progress[0] >= 2 * chunk, "progress did not start where the platform stands"
        assert_progress(second, size)
        announced = {rid for rid, _ in first.remote_ids + second.remote_ids}
        assert announced <= {result.remote_id}, "the resumed upload is another object than the first"
        h.holds(result, path)
        assert len(h.stored()) == 1

    def test_file_changed_mid_upload(self, harness: Callable[..., Harness]) -> None:
        """A file that changes while it is sent stops with FileChanged and nothing is stored;
        sent again (new identity, same checkpoint store), the new content arrives."""
        h = harness()
        provider = h.build()
        path = h.file(6 * h.backend.chunk)

        def edit(job: Job, done: int) -> None:  # in place: the size stays, the content and mtime change
            if done and os.stat(path).st_mtime_ns == job.request.identity.mtime_ns:
                with open(path, "r+b") as f:
                    f.write(b"edited")
                os.utime(path, ns=(time.time_ns(), job.request.identity.mtime_ns + 10**9))

        cp = h.checkpoint()
        job = h.job(provider, path, cp, on_progress=edit)
        h.fails(FileChanged, lambda: h.upload(provider, job))
        if h.backend.stored() is not None:
            assert h.stored() == []
        again = h.again_provider(provider)
        changed = h.job(again, path, h.reopened(cp), job_id=2)
        result = h.upload(again, changed)
        assert_progress(changed, path.stat().st_size)
        h.holds(result, path)
        if h.backend.stored() is not None:
            assert len(h.stored()) == 1

    def test_checkpoint_for_other_content_is_discarded(self, harness: Callable[..., Harness]) -> None:
        """A checkpoint left by another file's interrupted upload is not resumed for this one:
        this file's bytes, and only them, arrive."""
        h = harness()
        provider = h.build()
        _needs(provider, "resume")
        chunk = h.backend.chunk
        other = h.file(6 * chunk, seed=1)
        cp = h.checkpoint()
        first = h.job(provider, other, cp, on_progress=cancel_at(2 * chunk))
        h.fails(UploadCancelled, lambda: h.upload(provider, first))
        assert cp.load()
        path = h.file(6 * chunk, seed=2)  # the same size, other bytes
        again = h.again_provider(provider)
        job = h.job(again, path, h.reopened(cp), job_id=2)
        result = h.upload(again, job)
        assert result.remote_id not in {rid for rid, _ in first.remote_ids}
        assert_progress(job, path.stat().st_size)
        assert h.read(job) >= path.stat().st_size, "part of the file was taken as sent by the other's checkpoint"
        h.holds(result, path)
        assert [s["md5"] for s in h.stored()] == [md5_of(path)]

    def test_injected_faults_still_complete(self, harness: Callable[..., Harness]) -> None:
        """With a tenth of the platform's answers failing or dropped, uploads still complete
        whole (the faults are seen: retries are noted); a rerun gives the same ids."""
        h = harness(faults=True)
        if not h.backend.faults:
            pytest.skip(f"{h.backend.provider} has no platform to inject faults into")
        provider = h.build()
        jobs, results = [], []
        for n, size in enumerate((6 * h.backend.chunk + 77, 300 << 10), 1):
            path = h.file(size, seed=n)
            job = h.job(provider, path, h.checkpoint(f"job{n}"), job_id=n)
            results.append(h.upload(provider, job))
            assert_progress(job, size)
            h.holds(results[-1], path)
            jobs.append(job)
        assert any(j.actions("upload.retrying") for j in jobs), "no fault was met"
        if not features(provider).resume:
            return
        again = h.again_provider(provider)
        for job, result in zip(jobs, results):
            rerun = h.job(again, job.request.path, h.reopened(job.checkpoint), job_id=job.request.job_id)
            assert h.upload(again, rerun).remote_id == result.remote_id
        assert len(h.stored()) == 2

    def test_refused_credentials_fail_for_good_without_quoting_secrets(self, harness: Callable[..., Harness]) -> None:
        """Credentials the platform refuses end in a PermanentError (no retry loop) that quotes
        no secret; nothing is stored; with the right credentials (a new provider, as after a
        reload; or the same one again) the upload then goes through on the same checkpoint."""
        h = harness()
        bad = h.backend.bad_credentials()
        if bad is None:
            pytest.skip(f"{h.backend.provider} takes no credentials")
        provider = h.build(**bad)
        path = h.file(2 * h.backend.chunk)
        cp = h.checkpoint()
        job = h.job(provider, path, cp)
        h.fails(PermanentError, lambda: h.upload(provider, job))
        h.fails(PermanentError, lambda: h.upload(provider, h.job(provider, path, cp)))  # refused again, quietly
        assert h.stored() == [] and job.remote_ids == []
        provider.close()
        good = h.build()
        result = h.upload(good, h.job(good, path, h.reopened(cp)))
        h.holds(result, path)

    def test_status_reaches_ready(self, harness: Callable[..., Harness]) -> None:
        """After upload, media_status (also from a new provider) moves from pending to ready;
        an id the platform never gave is a PermanentError."""
        h = harness()
        provider = h.build()
        _needs(provider, "status")
        path = h.file(h.backend.chunk + 1)
        result = h.upload(provider, h.job(provider, path, h.checkpoint()))
        poller = h.again_provider(provider)
        assert isinstance(poller, ReportsStatus)
        states = []
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            status = poller.media_status(result.remote_id, result.remote_kind)
            states.append(status.state)
            if status.state == "ready":
                break
            assert status.state == "pending" and time.monotonic() < deadline, states
            time.sleep(0.1)
        h.fails(PermanentError, lambda: poller.media_status("XNOSUCHID00", result.remote_kind))

    @pytest.mark.parametrize("kind", ["image", "attached"])
    def test_other_kinds(self, harness: Callable[..., Harness], kind: str) -> None:
        """Each declared kind of local file arrives as an object of that kind; a kind not
        declared is refused for good."""
        h = harness()
        provider = h.build()
        path = h.file(50 << 10, kind=kind, seed=4)
        cp = h.checkpoint()
        job = h.job(provider, path, cp, kind=kind)
        if kind not in provider.kinds:
            h.fails(PermanentError, lambda: h.upload(provider, job))
            return
        result = h.upload(provider, job)
        assert result.remote_kind == kind
        assert_progress(job, path.stat().st_size)
        h.holds(result, path)
        if features(provider).resume:
            again = h.again_provider(provider)
            assert h.upload(again, h.job(again, path, h.reopened(cp), kind=kind)).remote_id == result.remote_id

    def test_cover_travels_with_its_video_once(self, harness: Callable[..., Harness]) -> None:
        """A video's companion cover is stored once, announced as an image, and not sent
        again when the video resumes after a cancel."""
        h = harness()
        provider = h.build()
        _needs(provider, "cover")
        chunk = h.backend.chunk
        video, cover = h.file(RESUME_CHUNKS * chunk, seed=2), h.file(20 << 10, seed=3, name="s2-clip.jpg")
        cp = h.checkpoint()
        first = h.job(provider, video, cp, on_progress=cancel_at(3 * chunk), companions={"cover": cover})
        h.fails(UploadCancelled, lambda: h.upload(provider, first))
        images = [rid for rid, kind in first.remote_ids if kind == "image"]
        assert len(images) == 1
        again = h.again_provider(provider)
        second = h.job(again, video, h.reopened(cp), companions={"cover": cover})
        result = h.upload(again, second)
        assert [kind for _, kind in second.remote_ids] in ([], ["video"])
        h.holds(result, video)
        assert sorted(s["md5"] for s in h.stored()) == sorted([md5_of(video), md5_of(cover)])
        assert [s["remote_id"] for s in h.stored() if s["md5"] == md5_of(cover)] == images

    def test_a_cover_goes_only_to_providers_that_take_covers(self, harness: Callable[..., Harness]) -> None:
        """Without the TakesCovers feature a companion cover is ignored: only the video arrives."""
        h = harness()
        provider = h.build()
        if features(provider).cover:
            pytest.skip(f"{provider.name} takes covers")
        video, cover = h.file(2 * h.backend.chunk, seed=2), h.file(20 << 10, seed=3, name="s2-clip.jpg")
        job = h.job(provider, video, h.checkpoint(), companions={"cover": cover})
        result = h.upload(provider, job)
        assert [kind for _, kind in job.remote_ids] in ([], ["video"])
        h.holds(result, video)
        if h.backend.stored() is not None:
            assert [s["md5"] for s in h.stored()] == [md5_of(video)]

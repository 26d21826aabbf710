"""YoukuProvider against the Youku sandbox over real HTTP on 127.0.0.1: what is specific to
Youku's protocol. What every provider must do (resume, changed files, faults, secrets, status)
is the shared contract, tests/provider_contract.py, run for Youku by test_contract_youku.py.

Each test calls `provider.upload()` directly with a JSON-file checkpoint store, a cancel
event, no bandwidth cap and a fast retry policy, then checks what the sandbox accepted
(its uploads journal) as well as what the provider reported.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from provider_harness import MIB, FileCheckpoint, Job, make_job, write_file

from vidupd.core.errors import CredentialsExpired, LeaseLost, PermanentError, TransientError, UploadCancelled
from vidupd.core.model import Metadata
from vidupd.core.secrets import Secret
from vidupd.ledger import Ledger, LedgerShared
from vidupd.providers.youku.api import TokenPair
from vidupd.providers.youku.wire import (CODE_UPLOAD_TOKEN_EXPIRED, AccessTokenInvalid, UploadTokenExpired, _decode,
                                         _translate)
from vidupd.providers.youku.params import clean_tags as _clean_tags
from vidupd.providers.youku.provider import YoukuProvider
from vidupd.providers.youku.slices import Checkpoint, resolve_upload_server
from vidupd.providers.youku.tokens import TokenKeeper
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox
from vidupd.sandbox.youku_state import granted_slice_length

SLICE = 2 * MIB  # the provider asks for 2048 KB slices (the sandbox grants 12,345 bytes less)

pytestmark = pytest.mark.timeout(120)


# ---- harness ------------------------------------------------------------------------


@dataclass
class Env:
    sb: YoukuSandbox
    journal: UploadsJournal
    tmp: Path
    state_dir: Path
    providers: list[YoukuProvider] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    ledgers: list[Ledger] = field(default_factory=list)
    secrets_seen: set[str] = field(default_factory=set)

    def provider(self, **overrides: Any) -> YoukuProvider:
        creds = self.sb.credentials
        self.secrets_seen.update(creds[k] for k in ("client_secret", "access_token", "refresh_token"))
        settings: dict[str, Any] = {
            "client_id": creds["client_id"],
            "client_secret": Secret(creds["client_secret"]),
            "access_token": Secret(creds["access_token"]),
            "refresh_token": Secret(creds["refresh_token"]),
            "api_base": self.sb.api_base,
            "tags": ["vidupd", "test"],
            "category": None,
            "copyright_type": "original",
            "public_type": "all",
            "upload_protocol": "slices",  # this file tests the six-step flow (the OSS flow: test_youku_oss_e2e)
            "slice_concurrency": 4,
            "confirm_wait": 0.2,
            "confirm_timeout": 30.0,
            "request_timeout": 10.0,
        }
        settings.update(overrides)
        if not self.ledgers:  # the rotating token pair lives in the ledger, as in the daemon
            self.ledgers.append(Ledger(self.state_dir))
        p = YoukuProvider("yk", settings, self.state_dir, LedgerShared(self.ledgers[0]))
        self.providers.append(p)
        return p

    def file(self, name: str, size: int, seed: int = 1) -> Path:
        return write_file(self.tmp / name, size, seed)

    def job(self, path: Path, job_id: int = 1, checkpoint: FileCheckpoint | None = None,
            on_progress: Callable[[Job, int], None] | None = None, title: str = "a clip",
            tags: tuple[str, ...] = ()) -> Job:
        job = make_job(path, self.tmp, Metadata(title=title, description="vidupd test upload", tags=tags),
                       job_id=job_id, checkpoint=checkpoint, on_progress=on_progress)
        self.jobs.append(job)
        return job

    def entries(self) -> list[dict[str, Any]]:
        return self.journal.entries()


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """Start a sandbox with the given options; on teardown check nothing leaked a secret."""
    envs: list[Env] = []

    def start(encode_seconds: float = 0.3, upload_token_ttl: float = 24 * 3600, **options: Any) -> Env:
        root = tmp_path / f"env{len(envs)}"
        root.mkdir()
        journal = UploadsJournal(root / "uploads.jsonl")
        sb = YoukuSandbox(root / "sandbox", SandboxOptions(**options), journal,
                          encode_seconds=encode_seconds, upload_token_ttl=upload_token_ttl)
        sb.start()
        env = Env(sb, journal, root, root / "state")
        envs.append(env)
        return env

    yield start
    for env in envs:
        for p in env.providers:
            p.close()
        for ledger in env.ledgers:
            ledger.close()
        env.sb.shutdown()
        secrets = env.secrets_seen | {env.sb.credentials[k] for k in ("access_token", "refresh_token")}
        for job in env.jobs:
            blob = json.dumps([job.notes, job.checkpoint.saves, job.remote_ids], default=str)
            for s in secrets:
                assert s not in blob, "a secret leaked into a note or a checkpoint"


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def count_calls(obj: Any, name: str, before: Callable[..., None] | None = None,
                after: Callable[..., None] | None = None) -> list[tuple[Any, ...]]:
    """Wrap obj.name (an instance attribute shadows the method) and record each call's args."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(obj, name)
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(args)
        if before:
            before(*args)
        result = real(*args, **kwargs)
        if after:
            after(*args)
        return result

    setattr(obj, name, wrapper)
    return calls


def assert_monotonic(values: list[int]) -> None:
    assert values == sorted(values), "progress went backwards"


# ---- pure helpers -------------------------------------------------------------------


def test_clean_tags_fits_youku_limits() -> None:
    raw = ["a", " news ", "news", "x" * 30, "one,two", "，中文标签"] + [f"t{i}" for i in range(20)]
    tags = _clean_tags(raw)
    assert tags[:4] == ["news", "x" * 20, "one", "two"]
    assert "中文标签" in tags
    assert len(tags) == 10 and all(2 <= len(t) <= 20 for t in tags)


def test_resolve_keeps_port_and_resolves_once() -> None:
    assert resolve_upload_server("localhost:8123") in ("127.0.0.1:8123", "[::1]:8123")
    assert resolve_upload_server("127.0.0.1") == "127.0.0.1"
    assert resolve_upload_server("http://127.0.0.1:81/x") == "127.0.0.1:81"
    with pytest.raises(TransientError):
        resolve_upload_server("no-such-host.invalid")


def test_checkpoint_round_trip_and_rejects_foreign_state() -> None:
    cp = Checkpoint("tok", "127.0.0.1:1", "0" * 32, 5, {"dev": 1}, 1.0, file_created=True)
    assert Checkpoint.from_json(json.loads(json.dumps(cp.to_json()))) == cp
    assert Checkpoint.from_json({"version": 99, "provider": "youku"}) is None
    assert Checkpoint.from_json({**cp.to_json(), "provider": "aliyun-vod"}) is None
    assert "tok" not in repr(cp)


def test_token_keeper_refreshes_once_for_many_workers(tmp_path: Path) -> None:
    class FakeApi:
        calls = 0
        rotating = threading.Event()  # the server has begun replacing the old token

        def refresh(self, refresh_token: str, client_secret: str) -> TokenPair:
            assert refresh_token == f"refresh-{self.calls}"
            self.rotating.set()
            self.calls += 1
            time.sleep(0.05)
            return TokenPair(f"access-{self.calls}", f"refresh-{self.calls}")

    api = FakeApi()
    ledger = Ledger(tmp_path / "state")
    store = LedgerShared(ledger)
    keeper = TokenKeeper(api, TokenPair("access-0", "refresh-0"), "", store, "cid")  # type: ignore[arg-type]
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def call(i: int) -> None:
        def fn(token: str) -> str:
            if token == "access-0":
                barrier.wait()  # every worker holds the old token at once
                if i % 2 and api.rotating.wait(5):  # a replaced token may be forgotten: "invalid"
                    raise AccessTokenInvalid("1008", code=1008, http_status=400)
                raise CredentialsExpired("1009")
            return token

        seen.append(keeper.call(fn))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == ["access-1"] * 8 and api.calls == 1

    def invalid(token: str) -> str:
        raise AccessTokenInvalid("1008", code=1008, http_status=400)

    with pytest.raises(AccessTokenInvalid):  # refused again right after our own refresh: no retry loop
        keeper.call(invalid)
    assert api.calls == 2

    # The pair lives in the ledger, not in a file: another keeper (another process) takes it up,
    assert not list(tmp_path.rglob("tokens.json"))
    again = TokenKeeper(api, TokenPair("access-0", "refresh-0"), "", LedgerShared(ledger), "cid")  # type: ignore[arg-type]
    assert again.current()[1] == "access-2"
    # and a changed configured pair (the app authorised again) wins over it.
    reauthorised = TokenKeeper(api, TokenPair("access-new", "refresh-new"), "", store, "cid")  # type: ignore[arg-type]
    assert reauthorised.current()[1] == "access-new"
    ledger.close()


def test_token_keeper_follows_a_refresh_made_by_another_process(tmp_path: Path) -> None:
    """Two keepers on one ledger (two processes): when one refreshes, the other's next refused
    call re-reads the pair and uses it, without refreshing with its own, now void, token."""

    class RotatingApi:  # the server: the refresh token rotates, an old one is refused
        def __init__(self) -> None:
            self.valid = ("access-0", "refresh-0")
            self.refreshes = 0

        def refresh(self, refresh_token: str, client_secret: str) -> TokenPair:
            if refresh_token != self.valid[1]:
                raise PermanentError("youku oauth2/token: the refresh token was rejected")
            self.refreshes += 1
            self.valid = (f"access-{self.refreshes}", f"refresh-{self.refreshes}")
            return TokenPair(*self.valid)

    api = RotatingApi()

    def fn(token: str) -> str:
        if token != api.valid[0]:
            raise AccessTokenInvalid("1008", code=1008, http_status=400)
        return token

    ledger_a, ledger_b = Ledger(tmp_path / "state"), Ledger(tmp_path / "state")  # two connections
    a = TokenKeeper(api, TokenPair("access-0", "refresh-0"), "", LedgerShared(ledger_a), "cid")  # type: ignore[arg-type]
    b = TokenKeeper(api, TokenPair("access-0", "refresh-0"), "", LedgerShared(ledger_b), "cid")  # type: ignore[arg-type]
    assert a.call(fn) == b.call(fn) == "access-0"
    api.valid = ("expired", "refresh-0")  # the access token expires on the server
    assert a.call(fn) == "access-1" and api.refreshes == 1
    assert b.call(fn) == "access-1" and api.refreshes == 1  # b re-read; it did not refresh
    api.valid = ("expired", "refresh-1")
    assert b.call(fn) == "access-2" and a.call(fn) == "access-2" and api.refreshes == 2
    ledger_a.close()
    ledger_b.close()


def test_token_keeper_takes_over_an_old_tokens_file(tmp_path: Path) -> None:
    """An older vidupd kept the rotated pair in tokens.json: it is moved into the ledger once."""
    configured = TokenPair("access-0", "refresh-0")
    from vidupd.providers.youku.tokens import _pair_id
    legacy = tmp_path / "target"
    legacy.mkdir()
    (legacy / "tokens.json").write_text(json.dumps({"access_token": "access-7", "refresh_token": "refresh-7",
                                                    "configured": _pair_id(configured)}))
    ledger = Ledger(tmp_path / "state")
    keeper = TokenKeeper(None, configured, "", LedgerShared(ledger), "cid", legacy_dir=legacy)  # type: ignore[arg-type]
    assert keeper.current()[1] == "access-7"
    assert not (legacy / "tokens.json").exists()
    ledger.close()


# ---- uploads against the sandbox ----------------------------------------------------


def test_normal_upload(env: Env) -> None:
    path = env.file("clip.mp4", 5 * MIB + 12345)
    job = env.job(path, title="t" * 80)
    result = env.provider().upload(job.request, job.ctx)

    [entry] = env.entries()
    assert entry["remote_id"] == result.remote_id and entry["md5"] == job.request.md5
    assert entry["size"] == job.request.size and entry["title"] == "t" * 50  # cut to Youku's 2-50 characters
    assert result.remote_kind == "video" and job.remote_ids == [(result.remote_id, "video")]
    assert_monotonic(job.progress)
    assert job.progress[-1] == job.request.size
    saved = job.checkpoint.load()
    assert saved is not None and saved["video_id"] == result.remote_id
    first = job.checkpoint.saves[0]  # saved right after create, before any byte went out
    assert first["upload_token"] and first["server"] == env.sb.upload_server and not first["file_created"]


def test_parallel_slices(env: Env) -> None:
    path = env.file("big.mp4", 9 * SLICE - 1000)
    job = env.job(path)
    provider = env.provider(slice_concurrency=4)
    inflight = [0, 0]  # current, maximum
    lock = threading.Lock()

    def enter(*_: Any) -> None:
        with lock:
            inflight[0] += 1
            inflight[1] = max(inflight)
        time.sleep(0.1)  # hold the slot so overlapping workers are visible

    def leave(*_: Any) -> None:
        with lock:
            inflight[0] -= 1

    calls = count_calls(provider.api, "upload_slice", enter, leave)
    result = provider.upload(job.request, job.ctx)
    assert len(calls) >= 9
    assert inflight[1] >= 3, f"at most {inflight[1]} slices in flight"
    granted = granted_slice_length(2048, 0)  # the server decides: not the 2 MiB asked for
    assert sorted(c[2].offset for c in calls) == list(range(0, 9 * SLICE - 1000, granted))
    [entry] = env.entries()
    assert entry["remote_id"] == result.remote_id and entry["md5"] == job.request.md5
    assert_monotonic(job.progress)


def test_instant_upload_of_known_content(env: Env) -> None:
    provider = env.provider()
    first = env.file("one.mp4", 3 * MIB)
    r1 = provider.upload(env.job(first, 1).request, env.jobs[0].ctx)
    second = env.tmp / "two.mp4"
    second.write_bytes(first.read_bytes())
    job = env.job(second, 2)
    slices = count_calls(provider.api, "upload_slice")
    creates = count_calls(provider.api, "create_file")
    r2 = provider.upload(job.request, job.ctx)
    assert slices == [] and creates == []
    assert job.actions("upload.instant")
    assert job.progress[-1] == job.request.size
    assert r2.remote_id != r1.remote_id
    assert [e["md5"] for e in env.entries()] == [job.request.md5] * 2


def test_waits_with_bounded_backoff_while_youku_confirms(make_env: Callable[..., Env]) -> None:
    env = make_env(confirm_delay=1.0)
    job = env.job(env.file("confirm.mp4", 2 * SLICE))
    result = env.provider(confirm_wait=0.3).upload(job.request, job.ctx)
    waits = job.actions("upload.waiting")
    assert waits and all(w["status"] in (2, 3) for w in waits)
    assert all("transferred_percent" in w and "confirmed_percent" in w for w in waits)
    assert max(w["wait_seconds"] for w in waits) <= 0.3
    assert [e["remote_id"] for e in env.entries()] == [result.remote_id]


def test_confirm_timeout_and_cancel_while_waiting(make_env: Callable[..., Env]) -> None:
    env = make_env(confirm_delay=30.0)
    job = env.job(env.file("slow.mp4", MIB))
    with pytest.raises(TransientError, match="not confirmed"):
        env.provider(confirm_wait=0.2, confirm_timeout=0.5).upload(job.request, job.ctx)

    job2 = env.job(job.request.path, checkpoint=job.checkpoint)
    threading.Timer(0.3, job2.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(UploadCancelled):
        env.provider(confirm_wait=10.0).upload(job2.request, job2.ctx)
    assert time.monotonic() - started < 3
    assert env.entries() == []


def test_crash_after_commit_commits_again_with_same_token(env: Env) -> None:
    path = env.file("commit.mp4", 3 * MIB)
    provider = env.provider()

    class Crash(BaseException):
        """The daemon dies after the server committed but before the answer was recorded."""

    def die(*_: Any) -> None:
        raise Crash()

    count_calls(provider.api, "commit", after=die)
    job = env.job(path)
    with pytest.raises(Crash):
        provider.upload(job.request, job.ctx)
    saved = job.checkpoint.load()
    assert saved and saved["committing"] and not saved["video_id"]
    [entry] = env.entries()

    provider2 = env.provider()
    creates = count_calls(provider2.api, "create")
    commits = count_calls(provider2.api, "commit")
    job2 = env.job(path, checkpoint=job.checkpoint)
    result = provider2.upload(job2.request, job2.ctx)
    assert result.remote_id == entry["remote_id"]
    assert creates == [] and len(commits) == 1
    assert len(env.entries()) == 1

    # A third run after the id was saved answers from the checkpoint without any call.
    provider3 = env.provider()
    calls = count_calls(provider3.api, "commit") + count_calls(provider3.api, "create")
    job3 = env.job(path, checkpoint=job.checkpoint)
    assert provider3.upload(job3.request, job3.ctx).remote_id == entry["remote_id"]
    assert calls == [] and job3.remote_ids == [(entry["remote_id"], "video")]


def test_a_lost_lease_never_commits_or_cancels(env: Env) -> None:
    """Issue 13: the job was taken over while this host sent its slices (it was frozen past
    its lease): it must neither commit nor cancel the upload token the new holder resumes."""
    path = env.file("taken.mp4", 3 * MIB)
    provider = env.provider()
    commits, cancels = count_calls(provider.api, "commit"), count_calls(provider.api, "cancel")
    job = env.job(path)

    def lost() -> None:
        raise LeaseLost(1, "host-a")

    with pytest.raises(LeaseLost):
        provider.upload(job.request, dataclasses.replace(job.ctx, ensure_held=lost))
    assert commits == [] and cancels == [] and env.entries() == []
    saved = job.checkpoint.load()
    assert saved and saved["upload_token"] and not saved["video_id"]  # what the new holder resumes


def test_expired_upload_token_on_resume_starts_over(make_env: Callable[..., Env]) -> None:
    env = make_env(slice_task_timeout=0.5)
    path = env.file("expire.mp4", 4 * SLICE)

    def stop_early(job: Job, n: int) -> None:
        if n >= SLICE:
            job.cancel.set()

    provider = env.provider(slice_concurrency=1)
    job = env.job(path, on_progress=stop_early)
    with pytest.raises(UploadCancelled):
        provider.upload(job.request, job.ctx)
    old = job.checkpoint.load()
    assert old
    env.sb.expire_upload_token(old["upload_token"])

    job2 = env.job(path, checkpoint=job.checkpoint)
    result = provider.upload(job2.request, job2.ctx)
    [restart] = job2.actions("upload.restarted")
    assert restart["reason"] == str(CODE_UPLOAD_TOKEN_EXPIRED)
    assert (job.checkpoint.load() or {})["upload_token"] != old["upload_token"]
    [entry] = env.entries()
    assert entry["remote_id"] == result.remote_id and entry["md5"] == job.request.md5


def test_upload_token_expiring_mid_transfer_starts_over(env: Env) -> None:
    path = env.file("mid.mp4", 6 * SLICE)
    expired: list[str] = []

    def expire_once(job: Job, n: int) -> None:
        if not expired:
            token = (job.checkpoint.load() or {})["upload_token"]
            expired.append(token)
            env.sb.expire_upload_token(token)

    job = env.job(path, on_progress=expire_once)
    result = env.provider(slice_concurrency=4).upload(job.request, job.ctx)
    assert len(job.actions("upload.restarted")) == 1
    [entry] = env.entries()
    assert entry["remote_id"] == result.remote_id and entry["upload_token"] != expired[0]


def test_access_token_expiry_mid_upload_refreshes_once(make_env: Callable[..., Env]) -> None:
    # 8 MiB at 4 MiB/s takes about 2 s: the 1.5 s token dies between create and commit.
    env = make_env(token_ttl=1.5, max_rate=4 * MIB)
    configured = env.sb.credentials["access_token"]
    provider = env.provider(slice_concurrency=4)
    refreshes = count_calls(provider.api, "refresh")
    commits = count_calls(provider.api, "commit")
    path = env.file("ttl.mp4", 4 * SLICE)
    job = env.job(path)
    result = provider.upload(job.request, job.ctx)
    assert len(refreshes) == 1 and len(job.actions("auth.refreshed")) == 1
    assert len(commits) == 2  # the first commit met the expired token
    assert env.sb.credentials["access_token"] != configured
    assert [e["remote_id"] for e in env.entries()] == [result.remote_id]


def test_concurrent_uploads_share_one_refresh(make_env: Callable[..., Env]) -> None:
    env = make_env(token_ttl=1.0)
    provider = env.provider(slice_concurrency=4)
    refreshes = count_calls(provider.api, "refresh")
    before_commit: list[int] = []  # refreshes done before the commits (a slow start may need one)
    barrier = threading.Barrier(4, action=lambda: before_commit.append(len(refreshes)), timeout=30)
    waited = threading.local()

    def all_commit_together(*_: Any) -> None:
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
            time.sleep(1.1)  # every upload now holds the same expired token

    commits = count_calls(provider.api, "commit", before=all_commit_together)
    jobs = [env.job(env.file(f"c{i}.mp4", 2 * SLICE + i, seed=i), job_id=i) for i in range(4)]
    results: dict[int, Any] = {}

    def run(job: Job) -> None:
        try:
            results[job.request.job_id] = provider.upload(job.request, job.ctx)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            results[job.request.job_id] = e

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not isinstance(r, BaseException) for r in results.values()), results
    assert len(refreshes) - before_commit[0] == 1
    assert len(commits) == 8  # all four met the expired token, one refreshed, all retried
    assert sorted(e["remote_id"] for e in env.entries()) == sorted(r.remote_id for r in results.values())


def test_refreshed_pair_is_kept_in_the_ledger_and_reused(make_env: Callable[..., Env]) -> None:
    env = make_env(token_ttl=1.0)
    time.sleep(1.05)  # the configured access token is already dead
    provider = env.provider()
    job = env.job(env.file("tok.mp4", MIB))
    provider.upload(job.request, job.ctx)
    assert not list(env.tmp.rglob("tokens.json"))
    raw = env.ledgers[0].shared_get(provider.tokens.key)
    assert raw is not None and set(raw.data) == {"sealed"}  # no token in the ledger's text (issue 14)
    assert env.sb.credentials["access_token"] not in json.dumps(raw.data)
    saved = provider.tokens._store.load(provider.tokens.key)  # opened with the config's client_secret
    assert saved is not None and saved.generation == 1  # refreshed once (the configured pair is not copied)
    assert saved.data["access_token"] == env.sb.credentials["access_token"]
    assert saved.data["refresh_token"] == env.sb.credentials["refresh_token"]
    env.secrets_seen.update((saved.data["access_token"], saved.data["refresh_token"]))

    # A restart with the same (now stale) configured pair uses the stored one: the
    # configured refresh token was rotated away, so only the ledger's can still refresh.
    time.sleep(1.05)
    provider2 = env.provider(**{k: Secret(v) for k, v in _configured(env.providers[0]).items()})
    refreshes = count_calls(provider2.api, "refresh")
    job2 = env.job(env.file("tok2.mp4", MIB, seed=2), job_id=2)
    provider2.upload(job2.request, job2.ctx)
    assert len(refreshes) == 1 and len(env.entries()) == 2


def _configured(provider: YoukuProvider) -> dict[str, str]:
    return {"access_token": provider.config.access_token.reveal(),
            "refresh_token": provider.config.refresh_token.reveal()}


def test_no_refresh_token_is_permanent_and_quiet(make_env: Callable[..., Env]) -> None:
    env = make_env(token_ttl=0.5)
    time.sleep(0.55)
    provider = env.provider(refresh_token=None)
    job = env.job(env.file("nor.mp4", MIB))
    with pytest.raises(PermanentError) as info:
        provider.upload(job.request, job.ctx)
    assert "no refresh_token configured" in str(info.value)
    assert_no_secret(env, info.value)


def test_changed_content_discards_old_checkpoint(env: Env) -> None:
    path = env.file("swap.mp4", 2 * MIB)
    job = env.job(path)
    job.checkpoint.save(Checkpoint("stale", env.sb.upload_server, "f" * 32, 99, {}, 0.0).to_json())
    result = env.provider().upload(job.request, job.ctx)
    assert job.actions("upload.restarted")[0]["reason"] == "content changed"
    assert [e["remote_id"] for e in env.entries()] == [result.remote_id]


def test_errors_carry_no_secrets(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    creds = env.sb.credentials
    errors: list[BaseException] = []
    job = env.job(env.file("err.mp4", MIB))

    bad = env.provider(access_token=Secret("bogus-access-token-123"), refresh_token=None)
    env.secrets_seen.add("bogus-access-token-123")
    with pytest.raises(PermanentError) as info:  # 1008 invalid token
        bad.upload(job.request, job.ctx)
    errors.append(info.value)

    wrong_secret = env.provider(client_secret=Secret("wrong-client-secret"))
    env.secrets_seen.add("wrong-client-secret")
    with pytest.raises(PermanentError) as info:  # refresh refused
        wrong_secret.tokens.refresh(wrong_secret.tokens.current()[0])
    errors.append(info.value)

    dead = env.provider(api_base="http://127.0.0.1:9", request_timeout=2.0)
    with pytest.raises(TransientError) as refused:  # connection refused, after retries
        dead.upload(job.request, job.ctx)
    errors.append(refused.value)

    for e in errors:
        assert_no_secret(env, e)
    assert creds["access_token"] not in repr(env.providers[0].tokens.__dict__)


def _response(status: int, body: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    return status, dict(headers or {})


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, '{"error": {"code": 120010223, "type": "UploadsException", "description": "Expired upload token"}}',
     UploadTokenExpired),
    (400, '{"error": {"code": 1009, "type": "SystemException", "description": "Expired token"}}', CredentialsExpired),
    (401, "", CredentialsExpired),
    (400, "code=1008&type=SystemException&description=Invalid+token", AccessTokenInvalid),
    (400, '{"error": {"code": 1013, "description": "Invalid parameter: title"}}', PermanentError),
    (404, "<html>not here</html>", PermanentError),
    (503, "<html>busy</html>", TransientError),
    (400, '{"error": {"code": 1002, "description": "Service exception"}}', TransientError),
    (200, '{"error": {"code": 1013, "description": "bad"}}', PermanentError),
])
def test_error_translation(status: int, body: str, expected: type[Exception]) -> None:
    error = _translate("step", *_response(status, body), (_decode(body) or {}).get("error"), ())
    assert type(error) is expected or (expected is PermanentError and isinstance(error, PermanentError)
                                       and not isinstance(error, (UploadTokenExpired, AccessTokenInvalid)))


def test_error_translation_scrubs_and_hints() -> None:
    body = '{"error": {"code": 1013, "description": "token tok-SECRET-1 is bad"}}'
    error = _translate("create", *_response(400, body), json.loads(body)["error"], ("tok-SECRET-1",))
    assert "tok-SECRET-1" not in str(error) and "1013" in str(error)
    busy = _translate("check", *_response(503, "", {"Retry-After": "7"}), None, ())
    assert isinstance(busy, TransientError) and busy.retry_after == 7.0


def assert_no_secret(env: Env, error: BaseException) -> None:
    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(f"{type(x).__name__}: {x} {x!r}" for x in chain)
    for s in env.secrets_seen | set(env.sb.credentials.values()) - {env.sb.credentials["client_id"]}:
        assert s not in text, f"secret in error: {type(error).__name__}"


@pytest.mark.parametrize("protocol", ["slices", "oss"])
def test_a_create_answered_after_a_takeover_is_cancelled(env: Env, protocol: str) -> None:
    """Issue 13: this host's create was answered after its job was taken over (it was frozen
    with the request in flight): the first checkpoint save is refused, so the upload token
    is known to this host alone. It is cancelled, not left open until it expires."""
    path = env.file("late.mp4", 3 * MIB)
    provider = env.provider(upload_protocol=protocol)
    cancels = count_calls(provider.api, "cancel")
    job = env.job(path)

    class TakenOver(FileCheckpoint):
        def save(self, state: dict[str, Any]) -> None:
            raise LeaseLost(1, "host-a")

    taken = TakenOver(job.checkpoint.path)
    with pytest.raises(LeaseLost):
        provider.upload(job.request, dataclasses.replace(job.ctx, checkpoint=taken))
    assert len(cancels) == 1
    assert env.sb.open_uploads()["youku_tokens"] == []
    counts = env.sb.counters()
    assert counts[f"open_{protocol}"] == 0 and counts[f"cancelled_{protocol}"] == 1, counts
    assert env.entries() == []

"""VOD end to end with the OSS signature versions: the real daemon (subprocess) against the
VOD and OSS sandboxes over HTTP on loopback. A sandbox in its default mode accepts V4 only,
as an account opened since 2025-03 does: vidupd must sign V4 by default (with UploadAuth's
Region), and `oss_signature = "v1"` must still reach an older account (`both`)."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import actions, drop_random as drop, md5_file as md5, wait_for
from test_vod_e2e import Env

MiB = 1 << 20


@pytest.fixture
def make_env(make_site):
    return partial(make_site, Env)


def _upload_two(env: Env) -> None:
    """A PutObject-sized file and a multipart one (8 MiB parts), both through to media.ready,
    the sandbox holding exactly their bytes."""
    small = drop(env.outbox / "small.mp4", 2 * MiB)
    big = drop(env.outbox / "big.mp4", 20 * MiB)
    with env.daemon() as d:
        wait_for(lambda: len(actions(env.events, "media.ready")) >= 2, 120, what="two ready videos")
        d.stop()
    done = {e["file.path"].rsplit("/", 1)[-1]: e["vidupd.remote_id"] for e in env.completed()}
    by_id = {e["remote_id"]: e for e in env.journal.entries()}
    for name, path in (("small.mp4", small), ("big.mp4", big)):
        entry = by_id[done[name]]
        assert entry["md5"] == md5(path) and entry["size"] == path.stat().st_size, name
    assert not actions(env.events, "upload.failed")


def test_vod_signs_v4_against_the_default_sandbox(make_env) -> None:
    env = make_env()  # SandboxOptions(): oss_signature "v4", V1 refused
    _upload_two(env)
    assert env.oss.signatures["v4"] >= 6 and env.oss.signatures["v1"] == 0, env.oss.signatures


def test_vod_oss_signature_v1_reaches_a_sandbox_taking_both(make_env) -> None:
    env = make_env(target={"oss_signature": "v1"}, oss_signature="both")
    _upload_two(env)
    assert env.oss.signatures["v1"] >= 6 and env.oss.signatures["v4"] == 0, env.oss.signatures


def test_vod_oss_signature_v1_is_refused_by_a_v4_sandbox(make_env) -> None:
    """An old set-up's V1 against a V4-only account: the job fails for good with OSS's
    refusal, nothing is stored."""
    env = make_env(target={"oss_signature": "v1"})
    drop(env.outbox / "old.mp4", 1 * MiB)
    with env.daemon() as d:
        (failed,) = wait_for(lambda: actions(env.events, "upload.failed"), 60, what="the upload to fail")
        d.stop()
    assert "AccessDenied" in str(failed) and "V4" in str(failed)
    assert not env.journal.entries() and env.oss.signatures == {"v1": 0, "v4": 0}

"""`vidupd status` only reads the ledger, so it must not demand the platform credentials:
with secrets given as `{ credential = "..." }` (the README's recommendation for systemd) it
used to exit 2 with "CREDENTIALS_DIRECTORY is not set" outside the unit (issue 11)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import vidupd
from test_config import good_config

from vidupd.config import load
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import Ledger


@pytest.fixture
def no_credentials(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}


def test_status_reads_the_ledger_without_the_units_credentials(tmp_path: Path, no_credentials):
    cfg = good_config(tmp_path, 'access_token = { credential = "yk_token" }')
    refused = vidupd("check-config", "-c", str(cfg), env=no_credentials)
    assert refused.returncode == 2 and "CREDENTIALS_DIRECTORY is not set" in refused.stderr  # run would refuse
    out = vidupd("status", "-c", str(cfg), env=no_credentials)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no jobs yet"
    clip = tmp_path / "outbox" / "clip.mp4"
    clip.write_bytes(b"x" * 10)
    ledger = Ledger(tmp_path / "state")
    ledger.offer(clip, str(clip.parent), [("yk", "video")], FileIdentity.of(clip.stat()), Metadata("clip"))
    ledger.close()
    out = vidupd("status", "-c", str(cfg), "--json", env=no_credentials)
    assert out.returncode == 0, out.stderr
    assert [j["state"] for j in json.loads(out.stdout)["jobs"]] == ["queued"]


def test_an_unread_secret_refuses_to_be_used(tmp_path: Path, no_credentials):
    cfg = load(good_config(tmp_path, 'access_token = { env = "NOT_SET_ANYWHERE" }'), read_secrets=False)
    token = cfg.targets["yk"].settings["access_token"]
    assert token.origin == "env:NOT_SET_ANYWHERE"
    with pytest.raises(RuntimeError, match="not read"):
        token.reveal()
    bad = good_config(tmp_path, 'access_token = { enn = "X" }')  # the form is still checked
    with pytest.raises(Exception, match="did you mean 'env'"):
        load(bad, read_secrets=False)


def test_retry_and_prioritize_change_the_ledger_without_the_units_credentials(tmp_path: Path, no_credentials):
    """Both only rewrite ledger rows; an operator runs them from a shell, outside the unit."""
    cfg = good_config(tmp_path, 'access_token = { credential = "yk_token" }')
    clip = tmp_path / "outbox" / "clip.mp4"
    clip.write_bytes(b"x" * 10)
    ledger = Ledger(tmp_path / "state")
    [offer] = ledger.offer(clip, str(clip.parent), [("yk", "video")], FileIdentity.of(clip.stat()), Metadata("clip"))
    ledger.close()
    out = vidupd("prioritize", "-c", str(cfg), str(offer.job_id), env=no_credentials)
    assert out.returncode == 0, out.stderr
    out = vidupd("retry", "-c", str(cfg), "--failed", env=no_credentials)
    assert out.returncode == 0, out.stderr
    assert "0 job(s) queued again" in out.stdout

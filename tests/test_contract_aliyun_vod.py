"""The provider contract (tests/provider_contract.py) for `aliyun-vod`, against the OSS + VOD
sandboxes. Every STS secret and token and every UploadAuth the sandbox issues is a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from provider_contract import Backend, ProviderContract
from provider_harness import MIB, POLICY, record_issued_secrets

from vidupd.providers.base import Provider
from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.oss import OssSandbox
from vidupd.sandbox.vod import VodSandbox

pytestmark = pytest.mark.timeout(120)


class VodBackend(Backend):
    provider = "aliyun-vod"
    chunk = MIB  # part_size below
    in_flight = 4  # part_concurrency below
    file_names = {"video": "clip.mp4", "image": "poster.png", "attached": "subs.vtt"}

    def __init__(self, root: Path, faults: bool):
        self.faults = faults
        self.journal = UploadsJournal(root / "uploads.jsonl")
        opts = SandboxOptions(**({"fail_rate": 0.1, "seed": 7} if faults else {}))
        self.oss = OssSandbox(root / "sb", opts, self.journal)
        self.oss.start()
        self.vod = VodSandbox(root / "sb", opts, self.journal, self.oss, status_delays=(0.1, 0.2))
        self.vod.start()
        self.issued: list[str] = []
        record_issued_secrets(self.oss, self.vod, self.issued)

    def settings(self) -> dict[str, Any]:
        creds = self.vod.credentials
        return {"access_key_id": creds["access_key_id"], "access_key_secret": creds["access_key_secret"],
                "region": self.vod.region, "endpoint": self.vod.endpoint, "part_size": MIB,
                "part_concurrency": 4, "request_timeout": 10.0, "tags": ["vidupd", "test"]}

    def bad_credentials(self) -> dict[str, Any]:
        self.issued.append("wrong-secret-value-123")
        return {"access_key_secret": "wrong-secret-value-123"}

    def stored(self) -> list[dict[str, Any]]:
        return self.journal.entries()

    def secrets(self) -> set[str]:
        return {self.vod.credentials["access_key_secret"], *self.issued}

    def tune(self, provider: Provider) -> None:
        provider.call_retry = POLICY  # type: ignore[attr-defined]  # status polls: fast retries

    def close(self) -> None:
        self.vod.shutdown()
        self.oss.shutdown()


class TestAliyunVodContract(ProviderContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Iterator[Callable[..., Backend]]:
        made: list[int] = []

        def make(faults: bool = False) -> Backend:
            root = tmp_path / f"vod{len(made)}"
            made.append(1)
            root.mkdir()
            return VodBackend(root, faults)

        yield make

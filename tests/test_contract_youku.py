"""The provider contract (tests/provider_contract.py) for `youku`, against the Youku sandbox,
once per flow: the OSS-based upload (upload_protocol "oss") and the six-step slice flow
("slices")."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from provider_contract import Backend, ProviderContract
from provider_harness import MIB

from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox

pytestmark = pytest.mark.timeout(120)
PART = MIB  # the OSS flow's part_size below
# The sandbox verifies V4 once it has --oss-signature; before that it speaks V1 only.
SIGNATURE = "v4" if "oss_signature" in {f.name for f in dataclasses.fields(SandboxOptions)} else "v1"


class YoukuBackend(Backend):
    provider = "youku"

    def __init__(self, root: Path, faults: bool, protocol: str):
        self.faults = faults
        self.protocol = protocol
        # slices: the slice the provider asks for and the sandbox grants; oss: a part
        self.chunk = 2 * MIB if protocol == "slices" else PART
        self.in_flight = 2  # slice_concurrency / part_concurrency below
        self.journal = UploadsJournal(root / "uploads.jsonl")
        # A slice handed out but not sent (cancelled in flight) is handed out again after 0.5 s.
        extra: dict[str, Any] = {"fail_rate": 0.1, "seed": 7} if faults else {}
        if protocol == "slices" and "youku_slice_length" in {f.name for f in dataclasses.fields(SandboxOptions)}:
            extra["youku_slice_length"] = 2 * MIB  # aligned slices: the contract counts bytes by chunk
        options = SandboxOptions(slice_task_timeout=0.5, **extra)
        self.sb = YoukuSandbox(root / "sandbox", options, self.journal, encode_seconds=0.3)
        self.sb.start()
        self.given: set[str] = set()

    def settings(self) -> dict[str, Any]:
        creds = self.sb.credentials
        self.given.update(creds[k] for k in ("client_secret", "access_token", "refresh_token"))
        return {"client_id": creds["client_id"], "client_secret": creds["client_secret"],
                "access_token": creds["access_token"], "refresh_token": creds["refresh_token"],
                "api_base": self.sb.api_base, "tags": ["vidupd", "test"], "upload_protocol": self.protocol,
                "slice_concurrency": 2, "part_size": PART, "part_concurrency": 2, "oss_signature": SIGNATURE,
                "confirm_wait": 0.2, "confirm_timeout": 30.0, "request_timeout": 10.0}

    def bad_credentials(self) -> dict[str, Any]:
        self.given.update(("bogus-access-token-123", "wrong-client-secret"))
        return {"access_token": "bogus-access-token-123", "client_secret": "wrong-client-secret"}

    def stored(self) -> list[dict[str, Any]]:
        entries = self.journal.entries()
        assert all(e.get("flow", "slices") == self.protocol for e in entries), "uploaded through the other flow"
        return entries

    def secrets(self) -> set[str]:
        creds = self.sb.credentials
        return self.given | {creds[k] for k in ("client_secret", "access_token", "refresh_token")}

    def close(self) -> None:
        self.sb.shutdown()


@pytest.mark.parametrize("protocol", ["oss", "slices"])
class TestYoukuContract(ProviderContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path, protocol: str) -> Iterator[Callable[..., Backend]]:
        def make(faults: bool = False) -> Backend:
            root = tmp_path / f"youku{len(list(tmp_path.glob('youku*')))}"
            root.mkdir()
            return YoukuBackend(root, faults, protocol)

        yield make

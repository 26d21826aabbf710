"""The provider contract (tests/provider_contract.py) for `youku`, against the Youku sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from provider_contract import Backend, ProviderContract
from provider_harness import MIB

from vidupd.sandbox.common import SandboxOptions, UploadsJournal
from vidupd.sandbox.youku import YoukuSandbox

pytestmark = pytest.mark.timeout(120)


class YoukuBackend(Backend):
    provider = "youku"
    chunk = 2 * MIB  # the slice the provider asks for and the sandbox grants
    in_flight = 2  # slice_concurrency below

    def __init__(self, root: Path, faults: bool):
        self.faults = faults
        self.journal = UploadsJournal(root / "uploads.jsonl")
        # A slice handed out but not sent (cancelled in flight) is handed out again after 0.5 s.
        options = SandboxOptions(slice_task_timeout=0.5, **({"fail_rate": 0.1, "seed": 7} if faults else {}))
        self.sb = YoukuSandbox(root / "sandbox", options, self.journal, encode_seconds=0.3)
        self.sb.start()
        self.given: set[str] = set()

    def settings(self) -> dict[str, Any]:
        creds = self.sb.credentials
        self.given.update(creds[k] for k in ("client_secret", "access_token", "refresh_token"))
        return {"client_id": creds["client_id"], "client_secret": creds["client_secret"],
                "access_token": creds["access_token"], "refresh_token": creds["refresh_token"],
                "api_base": self.sb.api_base, "tags": ["vidupd", "test"], "slice_concurrency": 2, "upload_protocol": "slices",
                "confirm_wait": 0.2, "confirm_timeout": 30.0, "request_timeout": 10.0}

    def bad_credentials(self) -> dict[str, Any]:
        self.given.update(("bogus-access-token-123", "wrong-client-secret"))
        return {"access_token": "bogus-access-token-123", "client_secret": "wrong-client-secret"}

    def stored(self) -> list[dict[str, Any]]:
        return self.journal.entries()

    def secrets(self) -> set[str]:
        creds = self.sb.credentials
        return self.given | {creds[k] for k in ("client_secret", "access_token", "refresh_token")}

    def close(self) -> None:
        self.sb.shutdown()


class TestYoukuContract(ProviderContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Iterator[Callable[..., Backend]]:
        def make(faults: bool = False) -> Backend:
            root = tmp_path / f"youku{len(list(tmp_path.glob('youku*')))}"
            root.mkdir()
            return YoukuBackend(root, faults)

        yield make

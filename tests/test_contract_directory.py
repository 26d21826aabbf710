"""The provider contract (tests/provider_contract.py) for `directory`, delivering into a
folder under tmp_path; what it holds is read back from that folder (manifest and bytes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from provider_contract import Backend, ProviderContract
from provider_harness import MIB

from vidupd.providers import directory

pytestmark = pytest.mark.timeout(60)


class DirectoryBackend(Backend):
    provider = "directory"

    def __init__(self, dest: Path):
        self.dest = dest
        self.faults = False  # a local folder: no platform to inject faults into

    def settings(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "fsync": True}

    def stored(self) -> list[dict[str, Any]]:
        out = []
        for manifest in sorted(self.dest.glob("*.json")):
            meta = json.loads(manifest.read_text())
            [data] = [p for p in self.dest.glob(f"{meta['remote_id']}.*") if p.suffix != ".json"]
            out.append({"remote_id": meta["remote_id"], "md5": hashlib.md5(data.read_bytes()).hexdigest(),
                        "size": data.stat().st_size})
        return out


class TestDirectoryContract(ProviderContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Backend]:
        # Checkpoint every MiB rather than every 8: the resume cases stay a few MiB.
        monkeypatch.setattr(directory, "CHECKPOINT_EVERY", MIB)
        return lambda faults=False: DirectoryBackend(tmp_path / "dest")

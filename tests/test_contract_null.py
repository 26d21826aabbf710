"""The provider contract (tests/provider_contract.py) for `null`: it reads every file through
the context and stores nothing, so only the cases that need no platform apply."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from provider_contract import Backend, ProviderContract

pytestmark = pytest.mark.timeout(60)


class NullBackend(Backend):
    provider = "null"

    def __init__(self, faults: bool):
        self.faults = False  # no platform to inject faults into

    def settings(self) -> dict[str, Any]:
        return {"read": True}


class TestNullContract(ProviderContract):
    @pytest.fixture
    def make_backend(self) -> Callable[..., Backend]:
        return lambda faults=False: NullBackend(faults)

"""Secret values: never printed, never logged, never stored in the ledger.

A `Secret` hides its value from repr/str/format; `reveal()` is the only way to the text.
Every secret created is also registered, so the event pipeline can scrub any occurrence
of it from log lines, whatever path the text took to get there (an exception message
quoting a URL, a library's debug log of a request).
"""

from __future__ import annotations

import threading

_registry_lock = threading.Lock()
_registry: set[str] = set()
_MIN_REDACT_LEN = 4  # shorter values would scrub ordinary words


class Secret:
    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "inline"):
        self._value = value
        self.origin = origin  # "inline", "env:NAME", "file:PATH", "credential:NAME" (not secret)
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, origin={self.origin!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # refuse pickling into caches or queues by accident
        raise TypeError("Secret values cannot be pickled")


def register(value: str) -> None:
    """Add a value (e.g. a refreshed access token) to the set scrubbed from all output."""
    if value and len(value) >= _MIN_REDACT_LEN:
        with _registry_lock:
            _registry.add(value)


def known() -> tuple[str, ...]:
    """Registered values, longest first (so a secret containing another is scrubbed whole)."""
    with _registry_lock:
        return tuple(sorted(_registry, key=len, reverse=True))


def redact(text: str) -> str:
    for value in known():
        if value in text:
            text = text.replace(value, "***")
    return text


def reveal(value: "Secret | str") -> str:
    return value.reveal() if isinstance(value, Secret) else value

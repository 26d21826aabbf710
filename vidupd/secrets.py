"""Secret values: never printed, never logged, never stored in the ledger.

A `Secret` hides its value from repr/str/format; `reveal()` is the only way to the text.
Every secret created is also registered, so the event pipeline can scrub any occurrence
of it from log lines, whatever path the text took to get there (an exception message
quoting a URL, a library's debug log of a request).
"""

from __future__ import annotations

import threading
from typing import Iterable

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


_SCAN_FROM = 16  # registered values from which redact() looks up prefixes instead of trying each


class _Index:
    """The registered values sorted longest first, and by their first _MIN_REDACT_LEN
    characters; rebuilt only when a value is added (every VOD upload adds its STS pair, so
    the registry grows with the files sent and redact() must not cost O(registry) per line)."""

    def __init__(self, values: set[str]):
        self.values = tuple(sorted(values, key=len, reverse=True))
        self.rank = {v: i for i, v in enumerate(self.values)}
        self.by_prefix: dict[str, list[str]] = {}
        for v in self.values:
            self.by_prefix.setdefault(v[:_MIN_REDACT_LEN], []).append(v)
        # a replacement can only create a new occurrence of a value that contains '*'
        self.starred = [v for v in self.values if "*" in v]


_index: _Index | None = None


def register(value: str) -> None:
    """Add a value (e.g. a refreshed access token) to the set scrubbed from all output."""
    global _index
    if value and len(value) >= _MIN_REDACT_LEN:
        with _registry_lock:
            if value not in _registry:
                _registry.add(value)
                _index = None


def _current() -> _Index:
    global _index
    with _registry_lock:
        if _index is None:
            _index = _Index(_registry)
        return _index


def known() -> tuple[str, ...]:
    """Registered values, longest first (so a secret containing another is scrubbed whole)."""
    return _current().values


def redact(text: str) -> str:
    index = _current()
    values: Iterable[str] = index.values
    if len(index.values) > _SCAN_FROM:  # only the values whose first characters occur in the text
        n = _MIN_REDACT_LEN
        grams = {text[i:i + n] for i in range(len(text) - n + 1)}
        found = {v for g in grams & index.by_prefix.keys() for v in index.by_prefix[g]}
        values = sorted(found.union(index.starred), key=index.rank.__getitem__)
    for value in values:
        if value in text:
            text = text.replace(value, "***")
    return text


def reveal(value: "Secret | str") -> str:
    return value.reveal() if isinstance(value, Secret) else value

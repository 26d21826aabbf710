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
        self._value: str | None = value
        self.origin = origin  # "inline", "env:NAME", "file:PATH", "credential:NAME" (not secret)
        register(value)

    @classmethod
    def unread(cls, origin: str) -> "Secret":
        """A secret a read-only command did not read (see config.load(read_secrets=False))."""
        secret = cls("", origin)
        secret._value = None
        return secret

    def reveal(self) -> str:
        if self._value is None:
            raise RuntimeError(f"secret {self.origin} was not read by this command")
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
# Every VOD upload registers its STS pair, so the registry grows with the files sent: redact(),
# run on every event line, must not cost O(registry) per line. Values are also indexed by their
# first _MIN_REDACT_LEN characters (updated as they are added), and the sorted tuple is cached.
_by_prefix: dict[str, list[str]] = {}
_starred: list[str] = []  # values with a '*': the only kind a replacement ("***") could create
_sorted: tuple[str, ...] | None = None


def register(value: str) -> None:
    """Add a value (e.g. a refreshed access token) to the set scrubbed from all output."""
    global _sorted
    if value and len(value) >= _MIN_REDACT_LEN:
        with _registry_lock:
            if value in _registry:
                return
            _registry.add(value)
            _by_prefix.setdefault(value[:_MIN_REDACT_LEN], []).append(value)
            if "*" in value:
                _starred.append(value)
            _sorted = None


def known() -> tuple[str, ...]:
    """Registered values, longest first (so a secret containing another is scrubbed whole)."""
    global _sorted
    with _registry_lock:
        if _sorted is None:
            _sorted = tuple(sorted(_registry, key=len, reverse=True))
        return _sorted


def redact(text: str) -> str:
    if len(_registry) <= _SCAN_FROM:
        values: Iterable[str] = known()
    else:  # only the values whose first characters occur in the text, longest first as above
        n = _MIN_REDACT_LEN
        grams = {text[i:i + n] for i in range(len(text) - n + 1)}
        with _registry_lock:
            found = {v for g in grams if g in _by_prefix for v in _by_prefix[g]}
            found.update(_starred)
        values = sorted(found, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, "***")
    return text


def reveal(value: "Secret | str") -> str:
    return value.reveal() if isinstance(value, Secret) else value

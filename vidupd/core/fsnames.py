"""File names are bytes on Linux, and not every name is UTF-8.

Python decodes a non-UTF-8 name with surrogate escapes (b'\\xff' -> '\\udcff'), which opens
the file fine but cannot be encoded as UTF-8: SQLite, JSON lines, HTTP and the terminal
would all raise. These helpers are the one place that bridges the two worlds:
- `safe_text`: valid UTF-8 text for showing or sending (events, status, titles, file
  names on the wire); undecodable bytes become backslash escapes (`\\xff\\xfe.mp4`).
- `path_to_db` / `path_from_db`: the ledger keeps the name's bytes faithfully (UTF-8 names
  as TEXT, as always; other names as a BLOB of their bytes), so the file is found again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def safe_text(value: PathLike) -> str:
    """`value` as valid UTF-8 text: unchanged if it already is, otherwise each undecodable
    byte as `\\xNN` (and any other lone surrogate as `\\udNNN`)."""
    text = os.fspath(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate not from a file name (e.g. "\ud800" in a JSON sidecar)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def path_to_db(path: PathLike) -> str | bytes:
    """The value the ledger stores for `path`: TEXT if it is UTF-8, else a BLOB of its bytes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text)


def path_from_db(value: str | bytes) -> Path:
    """The inverse of `path_to_db`."""
    return Path(os.fsdecode(value) if isinstance(value, bytes) else value)

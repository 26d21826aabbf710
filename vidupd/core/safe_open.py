"""Opening a file vidupd is about to read (media, sidecar, cover) without ever blocking on it.

A plain `open()` of a FIFO waits for a writer forever, and one of a device can have side
effects; a watched folder or a one-shot argument can hold either. So every such file is
opened here: stat (devices and sockets are never opened), then `open` with `O_NONBLOCK`
(a FIFO swapped in after the stat returns at once instead of blocking), `fstat` of what was
really opened, and only a regular file is kept (`O_NONBLOCK` cleared again).

Its own module, not `atomic.py`: that one writes vidupd's state, this one reads user files;
both are core helpers every layer may use.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import NotRegularFile

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

_TYPES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def file_type(mode: int) -> str | None:
    """None for a regular file, else what it is ("a FIFO", "a directory", ...), for messages."""
    if stat.S_ISREG(mode):
        return None
    for test, name in _TYPES:
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path | str, st: os.stat_result) -> None:
    """Raise NotRegularFile unless `st` (of `path`) describes a regular file."""
    what = file_type(st.st_mode)
    if what is not None:
        raise NotRegularFile(path, what)


def open_regular(path: Path | str) -> int:
    """A read-only descriptor of `path` (symlinks followed), which must be a regular file.

    Raises NotRegularFile for anything else, OSError (FileNotFoundError, ...) as `os.open` does."""
    check_regular(path, os.stat(path))
    try:
        fd = os.open(path, _FLAGS)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket (or a device without its driver) took the name since the stat
            check_regular(path, os.stat(path))
        raise
    try:
        check_regular(path, os.fstat(fd))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path | str, limit: int | None = None) -> bytes:
    """The whole content of the regular file `path`; with `limit`, at most `limit` + 1 bytes
    (so a caller can tell "too large" without reading a huge file)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit + 1)

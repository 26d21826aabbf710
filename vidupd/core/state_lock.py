"""Exclusive locks on files under state_dir, held by the kernel (flock), so a process that
dies, even by kill -9, lets go of them without any clean-up.

`DaemonLock`: one daemon per state_dir. A second `vidupd run` on the same state would
race the first one for the same jobs and the same rotating tokens; it refuses to start and
names the running daemon. One-shot commands do not take it: they share the ledger safely
through leases.

`FileLock`: a short exclusive section across processes (a token refresh), also usable
from several threads of one process (each holder opens its own descriptor).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from .statedir import make_dirs

DAEMON_LOCK = "daemon.lock"


class AlreadyRunning(RuntimeError):
    """Another daemon holds this state_dir."""


def _open(path: Path) -> int:
    make_dirs(path.parent)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


class DaemonLock:
    """Held from start to exit of `vidupd run`; the file says who holds it (pid, since when)."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / DAEMON_LOCK
        self._fd: int | None = None

    def acquire(self) -> "DaemonLock":
        fd = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise AlreadyRunning(f"{self.path.parent}: another vidupd daemon is running on this state_dir "
                                 f"({holder}); stop it first, or give this one its own state_dir") from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:  # who holds it, for the message above; the lock itself is the flock, not this text
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:  # a full disk must not stop the daemon: the message is then vaguer
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "DaemonLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(info["since"])))
        return f"pid {int(info['pid'])} on {info.get('host', '?')}, running since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


class FileLock:
    """An exclusive section shared by the threads of this process and by other processes."""

    def __init__(self, path: Path):
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> "FileLock":
        self._threads.acquire()
        try:
            fd = _open(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)
        finally:
            self._threads.release()

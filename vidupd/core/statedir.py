"""The state dir is private to the user vidupd runs as: it holds the ledger, whose
checkpoints carry platform upload tokens, and the targets' token files.

New folders under it are made 0700 and the ledger's files 0600. A state dir that already
exists with group or other access (made by hand, or by `vidupd sandbox` before it made
it 0700) is tightened by the commands that write state, each time with a warning naming
the folder and its old mode; `check-config` only says it would be, and `status` leaves
it alone (read paths change nothing). That check is config.state_modes's; this module
makes folders and files with the right modes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
LEDGER_FILES = ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm")


def make_dirs(path: Path) -> None:
    """`mkdir -p` whose new folders are all 0700 (Path.mkdir gives parents the umask's mode)."""
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made by another process meanwhile
            pass
    if not path.is_dir():
        path.mkdir()  # raises the error that says why (a file in the way, a dangling link)


def create_private(path: Path) -> None:
    """Create `path` 0600 if missing, and take group/other access from it if present."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        old = stat.S_IMODE(os.fstat(fd).st_mode)
        if old & ~FILE_MODE:
            os.fchmod(fd, old & FILE_MODE)
    finally:
        os.close(fd)


def prepare_ledger_files(state_dir: Path) -> None:
    """Before SQLite opens the ledger: the state dir and the database file exist, private.
    SQLite creates the -wal and -shm files with the database file's mode; ones left by an
    older vidupd are tightened too."""
    make_dirs(state_dir)
    for i, name in enumerate(LEDGER_FILES):
        if i == 0 or (state_dir / name).exists():
            create_private(state_dir / name)



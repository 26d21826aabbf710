"""The state dir is private to the user vidupd runs as: it holds the ledger, whose
checkpoints carry platform upload tokens, and the targets' token files.

New folders under it are made 0700 and the ledger's files 0600. A state dir that already
exists with group or other access (made by hand, or by `vidupd sandbox` before it made
it 0700) is tightened by the commands that write state, each time with a warning naming
the folder and its old mode; `check-config` only says it would be, and `status` leaves
it alone (read paths change nothing).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from .config import Config, Problem

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


def _loose(path: Path, allowed: int) -> int | None:
    """The mode of `path` if it grants more than `allowed`, else None (also if missing)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & ~allowed else None


def secure(config: Config, change: bool = True) -> tuple[Problem, ...]:
    """Take group/other access from an existing `config.state_dir` and its ledger files (a
    missing one is made 0700 by whoever creates it first: `make_dirs`). Returns a warning
    for each thing that was (or, with `change=False`, would be) tightened, as config
    warnings (`FILE: state_dir: ...`)."""
    state = config.state_dir
    found = [(state, DIR_MODE)] + [(state / name, FILE_MODE) for name in LEDGER_FILES]
    out: list[Problem] = []
    for path, allowed in found:
        old = _loose(path, allowed)
        if old is None:
            continue
        what = str(path) if path == state else f"ledger file {path}"
        new = old & allowed
        if not change:
            out.append(Problem(str(config.source), "state_dir", f"{what} is mode {old:o} (group/other may "
                               f"read the ledger's upload tokens); vidupd will change it to {new:o} when it runs",
                               warning=True))
            continue
        try:
            os.chmod(path, new)
        except OSError as e:
            out.append(Problem(str(config.source), "state_dir", f"{what} is mode {old:o} (group/other may "
                               f"read the ledger's upload tokens) and cannot be changed ({e.strerror}); "
                               f"chmod {new:o} it", warning=True))
            continue
        out.append(Problem(str(config.source), "state_dir", f"{what} was mode {old:o} (group/other could "
                           f"read the ledger's upload tokens); changed to {new:o}", warning=True))
    return tuple(out)


def secured(config: Config, change: bool = True) -> Config:
    """`config` after `secure`, its warnings extended with what was tightened."""
    found = secure(config, change)
    return dataclasses.replace(config, warnings=config.warnings + found) if found else config

"""A state dir open to group or other is tightened (or, for check-config, reported) as a
config warning: `FILE: state_dir: ...`. The modes themselves are core.statedir's."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from ..core.statedir import DIR_MODE, FILE_MODE, LEDGER_FILES
from .model import Config, Problem


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

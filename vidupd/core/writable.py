"""Whether a file could be appended to (created, with its missing folders, if need be), found
without writing anything: `check-config` must not write (it runs as systemd's ExecReload=,
read-only), yet must refuse the event log `run` would fail to open (a FileNotFoundError
there is exit 1, which systemd restarts in a loop, instead of exit 2, a config error).

Permission bits alone do not tell it for root (who may write anywhere) nor on a read-only
mount (ProtectSystem=strict) nor on a virtual file system (/proc, /sys), so those are
looked at too: the mount's read-only flag and its type (/proc/self/mountinfo)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# File systems of the kernel's own objects: nothing can be created there.
VIRTUAL = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "pstore",
                     "bpf", "configfs", "efivarfs", "fusectl", "mqueue", "binfmt_misc", "autofs", "nsfs"})


def append_problem(path: Path) -> str | None:
    """None if `path` can be opened for appending, else what stands in the way."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _create_problem(path)
    except NotADirectoryError:
        return _create_problem(path)
    except OSError as e:
        return f"cannot look at {path}: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a directory"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable (mode {stat.S_IMODE(st.st_mode):o}, owner uid {st.st_uid})"
    if stat.S_ISREG(st.st_mode):
        return _mount_problem(path, path)
    return None  # a terminal, a pipe, /dev/stdout: writable as found


def _create_problem(path: Path) -> str | None:
    """Why `path` (missing) could not be created with its missing folders, or None."""
    ancestor = path.parent
    while True:
        try:
            st = os.stat(ancestor)
            break
        except (FileNotFoundError, NotADirectoryError):
            if ancestor == ancestor.parent:
                return f"cannot create {path}: no folder of it exists"
            ancestor = ancestor.parent
        except OSError as e:
            return f"cannot create {path}: {ancestor}: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"cannot create {path}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {path}: no permission to write in {ancestor}"
    return _mount_problem(path, ancestor)


def _mount_problem(path: Path, where: Path) -> str | None:
    try:
        read_only = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"cannot write {path}: {where} is on a read-only file system"
    kind = fs_type(where)
    if kind in VIRTUAL:
        return f"cannot create {path}: {where} is on {kind}, a virtual file system that holds no files"
    return None


def fs_type(path: Path) -> str | None:
    """The type of the file system `path` is on ("ext4", "proc"), from the mount whose
    mount point is the longest prefix of its real path; None if that cannot be read."""
    real = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "-" not in fields:
                    continue
                mount = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, fields[fields.index("-") + 1]
    except OSError:
        return None
    return kind

"""The values every layer shares: what a file is (FileIdentity), what is said about it
(Metadata), the kinds of media, and the shared-value store the ledger offers providers."""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, TypeVar

D = TypeVar("D")

KINDS = ("video", "image", "attached", "url_pull")


REMOTE_KINDS = ("video", "image", "attached", "url_pull", "registered")


@dataclass(frozen=True)
class Metadata:
    """What the platform is told about a file (from the sidecar, else defaults)."""

    title: str
    description: str = ""
    tags: tuple[str, ...] = ()
    category: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific sidecar keys


@dataclass(frozen=True)
class FileIdentity:
    """What makes 'the same file version' on disk: with the path, inode, size and mtime_ns
    (a change to any of them means new content). The same on every host that sees the
    file, so hosts sharing one outbox through one ledger make one job of it.

    Not the device number: `st_dev` is the number the *client* gave the mount (NFS and SMB
    mounts get an anonymous one per client and per mount, which may change at a remount or
    reboot), so it differs between hosts and would make every host's sighting a new job. It
    is kept (`dev`) for information only: never compared, never hashed.

    The inode is the server's file id (NFS's fileid, SMB's with `serverino`, the Linux
    default): stable for the life of the file and kept by a rename, so a file renamed
    within the outbox is still recognised. The mtime is compared to the nanosecond as the
    server reports it; a server that stores coarser times (seconds, or SMB's 100 ns) reports
    the same truncated value to every client, so hosts agree. What we do not do is round:
    hosts must see the outbox through the same kind of mount (all NFS, or all SMB), since a
    host reading the export's own disk and one reading it over SMB see different precisions
    and so different versions (two jobs)."""

    dev: int = field(compare=False)  # the client's device number: information only (see above)
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class SharedValue:
    """A value every process using the same ledger sees; `generation` grows by one per write."""

    generation: int
    data: Mapping[str, Any] = field(repr=False)


class SharedStore(Protocol):
    """Small values shared by every process (and, on a shared ledger, every host) that uses
    the same ledger: OAuth tokens that rotate on refresh, so one process's refresh does not
    leave the others holding a dead token. Values may be secrets: they are kept apart from
    jobs and never shown. Keys are chosen by the provider."""

    def load(self, key: str) -> SharedValue | None: ...

    def update(self, key: str,
               change: Callable[[SharedValue | None], Mapping[str, Any] | None]) -> SharedValue | None:
        """Call `change` with the newest value while holding the key's lock, which excludes
        every other process; store what it returns (generation + 1), or nothing if it
        returns None. Returns the value stored afterwards. Exceptions from `change` pass
        through and nothing is written."""
        ...


def from_fields(cls: type[D], data: Mapping[str, Any]) -> D | None:
    """An instance of dataclass `cls` from the keys of `data` it declares (others ignored:
    a newer writer's extra fields); None when required ones are missing. For values read
    back from storage, such as checkpoints, that must be dropped rather than trusted."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None

"""What a file becomes, decided once for both ways a file comes in: the watcher's intake
(`offers.Intake`) and `vidupd upload` (cli.oneshot). Pure apart from reading the sidecar:
each caller reports the verdicts its own way (events and the ledger, or the terminal)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..core.filters import kind_of
from ..core.model import FileIdentity, Metadata
from ..core.safe_open import file_type
from ..providers.base import Provider
from ..providers.features import features
from .companions import video_for
from .sidecar import SidecarError, read_metadata


@dataclass(frozen=True)
class Examined:
    """The verdicts on one file version for the targets it was meant for."""

    path: Path
    identity: FileIdentity
    kind: str | None  # None: not media by its extension
    not_regular: str | None = None  # "a FIFO", "a directory", ...: nothing else was looked at
    wanted: tuple[tuple[str, str], ...] = ()  # (target, kind) to queue
    unwanted: tuple[tuple[str, str], ...] = ()  # (target, why not): the target does not take it
    metadata: Metadata | None = None  # from the sidecar, when something is wanted
    sidecar_error: SidecarError | None = None  # the sidecar is unusable: queue nothing

    @property
    def refusal(self) -> str | None:
        """Why the file is refused as a whole, if it is."""
        if self.not_regular is not None:
            return f"is {self.not_regular}, not a regular file"
        return str(self.sidecar_error) if self.sidecar_error is not None else None


def examine(path: Path, st: os.stat_result, watch_kind: str, providers: Mapping[str, Provider], *,
            covers_travel_with_videos: bool = True) -> Examined:
    """The kind of `path`, which of `providers` (target -> provider) take it, and its
    metadata. With `covers_travel_with_videos`, an image beside a same-stem video is
    neither wanted nor unwanted by a provider that takes covers: it goes with the video."""
    identity = FileIdentity.of(st)
    what = file_type(st.st_mode)
    if what is not None:  # the ledger's door: a FIFO queued would block a worker in open()
        return Examined(path, identity, None, not_regular=what)
    kind = kind_of(path, watch_kind)
    wanted: list[tuple[str, str]] = []
    unwanted: list[tuple[str, str]] = []
    for target, provider in providers.items():
        if covers_travel_with_videos and kind == "image" and features(provider).cover and video_for(path) is not None:
            continue  # sent as the video's cover, within the video's job
        if kind is None:
            unwanted.append((target, "not a media file (unknown extension); set kind on the watch to send it anyway"))
        elif kind not in provider.kinds:
            unwanted.append((target, f"{provider.name} does not take {kind} files"))
        else:
            wanted.append((target, kind))
    if not wanted:
        return Examined(path, identity, kind, unwanted=tuple(unwanted))
    try:
        metadata = read_metadata(path)
    except SidecarError as e:
        return Examined(path, identity, kind, wanted=tuple(wanted), unwanted=tuple(unwanted), sidecar_error=e)
    return Examined(path, identity, kind, wanted=tuple(wanted), unwanted=tuple(unwanted), metadata=metadata)

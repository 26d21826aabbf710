"""From 'this file is stable' to ledger jobs: kind, sidecar metadata, one job per target."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Mapping

from . import events
from .config import TargetConfig, WatchConfig
from .filters import kind_of
from .ledger import Ledger
from .providers.base import FileIdentity, Provider
from .sidecar import SidecarError, read_metadata, sidecar_paths


class Intake:
    def __init__(self, ledger: Ledger, targets: Callable[[], Mapping[str, TargetConfig]],
                 providers: Callable[[], Mapping[str, Provider]], wake: Callable[[], None]):
        self._ledger = ledger
        self._targets = targets
        self._providers = providers
        self._wake = wake
        self._reported: set[tuple] = set()
        self._lock = threading.Lock()

    def _once(self, key: tuple) -> bool:
        with self._lock:
            if key in self._reported:
                return False
            self._reported.add(key)
            return True

    def file_ready(self, path: Path, watch: WatchConfig, st: os.stat_result) -> None:
        identity = FileIdentity.of(st)
        fields = dict(path=str(path), size=identity.size)
        kind = kind_of(path, watch.kind)
        providers = self._providers()
        wanted: list[tuple[str, str]] = []
        for target in watch.targets:
            provider = providers.get(target)
            if provider is None:
                continue
            reason = None
            if kind is None:
                reason = "not a media file (unknown extension); set kind on the watch to send it anyway"
            elif kind not in provider.kinds:
                reason = f"{provider.name} does not take {kind} files"
            if reason:
                job_id = self._ledger.skip_new(path, str(watch.path), target, kind or "unknown", identity, reason)
                if job_id is not None:
                    events.emit("upload.skipped", f"{path.name}: not sent to {target}: {reason}", reason=reason,
                                target=target, provider=provider.name, job_id=job_id, **fields)
                continue
            wanted.append((target, kind))
        if not wanted:
            return
        try:
            metadata = read_metadata(path)
        except SidecarError as e:
            sidecar_state = tuple(_mtime(p) for p in sidecar_paths(path))
            if self._once((path, identity, sidecar_state)):
                events.emit("file.rejected", f"{path.name}: sidecar metadata unusable: {e}", level="error",
                            outcome="failure", error=str(e), reason="bad sidecar", **fields)
            return
        queued = False
        for offer in self._ledger.offer(path, str(watch.path), wanted, identity, metadata):
            target = self._targets().get(offer.target)
            tf = dict(target=offer.target, provider=target.provider if target else None, job_id=offer.job_id, **fields)
            if offer.outcome in ("queued", "requeued"):
                queued = True
                events.emit("upload.queued", f"{path.name}: queued for {offer.target}", kind=kind,
                            title=metadata.title, **tf)
            elif offer.outcome == "renamed":
                events.emit("file.renamed", f"{path.name}: renamed within the watched folder; already handled "
                            f"for {offer.target}", **tf)
        if queued:
            self._wake()

    def refused(self, path: Path, reason: str) -> None:
        events.emit("file.rejected", f"{path.name}: refused: {reason}", level="error", outcome="failure",
                    path=str(path), reason=reason)


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return 0

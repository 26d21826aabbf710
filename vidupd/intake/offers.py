"""From 'these files are stable' to ledger jobs: kind, sidecar metadata, one job per target."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Mapping

from ..config import TargetConfig, WatchConfig
from ..core import events
from ..core.model import FileIdentity
from ..ledger import Intent, Ledger, Offer, ledger_failure
from ..providers.base import Provider
from .examine import examine
from .sidecar import sidecar_paths


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

    def files_ready(self, batch: list[tuple[Path, WatchConfig, os.stat_result]]) -> None:
        """Stable files from the watcher: one ledger transaction for the whole batch.
        One file's problem stays that file's: it is rejected (once) and the rest is queued."""
        intents: list[Intent] = []
        for path, watch, st in batch:
            try:
                intent = self._intent(path, watch, st)
            except Exception as e:  # unforeseen (a name the file system or the ledger cannot take...)
                self._reject_once(path, FileIdentity.of(st), e)
                continue
            if intent is not None:
                intents.append(intent)
        if not intents:
            return
        try:
            offers = self._ledger.offer_many(intents)
        except Exception as e:
            if ledger_failure(e):
                raise  # the ledger itself (disk full, locked): the watcher offers the whole batch again
            offers = []  # one file's values broke the batch: offer each alone, so the others go in
            for intent in intents:
                try:
                    offers += self._ledger.offer_many([intent])
                except Exception as e:
                    if ledger_failure(e):
                        raise
                    self._reject_once(intent.path, intent.identity, e)
        self._announce(offers, {it.path: it for it in intents})

    def _announce(self, offers: list[Offer], intents: Mapping[Path, Intent]) -> None:
        queued = False
        targets = self._targets()
        for offer in offers:
            assert offer.path is not None
            target = targets.get(offer.target)
            intent = intents[offer.path]
            kind = intent.targets[0][1]
            tf = dict(target=offer.target, provider=target.provider if target else None, job_id=offer.job_id,
                      path=str(offer.path), size=intent.identity.size)
            if offer.outcome in ("queued", "requeued"):
                queued = True
                events.emit("upload.queued", f"{offer.path.name}: queued for {offer.target}", kind=kind,
                            title=intent.metadata.title, **tf)
            elif offer.outcome == "renamed":
                events.emit("file.renamed", f"{offer.path.name}: renamed within the watched folder; already "
                            f"handled for {offer.target}", **tf)
        if queued:
            self._wake()

    def _reject_once(self, path: Path, identity: FileIdentity, error: Exception) -> None:
        """`file.rejected` for a file whose intake failed unexpectedly, once per file version."""
        if self._once((path, identity, "intake")):
            message = f"{type(error).__name__}: {error}"
            events.emit("file.rejected", f"{path.name}: refused: {message}", level="error", outcome="failure",
                        error=message, reason="intake failed", path=str(path), size=identity.size)

    def _intent(self, path: Path, watch: WatchConfig, st: os.stat_result) -> Intent | None:
        providers = self._providers()
        seen = examine(path, st, watch.kind, {t: providers[t] for t in watch.targets if t in providers})
        identity = seen.identity
        fields = dict(path=str(path), size=identity.size)
        if seen.not_regular is not None:
            if self._once((path, identity, seen.not_regular)):
                self.refused(path, seen.refusal or "")
            return None
        for target, reason in seen.unwanted:
            job_id = self._ledger.skip_new(path, str(watch.path), target, seen.kind or "unknown", identity, reason)
            if job_id is not None:
                events.emit("upload.skipped", f"{path.name}: not sent to {target}: {reason}", reason=reason,
                            target=target, provider=providers[target].name, job_id=job_id, **fields)
        if seen.sidecar_error is not None:
            sidecar_state = tuple(_mtime(p) for p in sidecar_paths(path))
            if self._once((path, identity, sidecar_state)):
                e = seen.sidecar_error
                events.emit("file.rejected", f"{path.name}: sidecar metadata unusable: {e}", level="error",
                            outcome="failure", error=str(e), reason="bad sidecar", **fields)
            return None
        if not seen.wanted:
            return None
        assert seen.metadata is not None
        return Intent(path, str(watch.path), seen.wanted, identity, seen.metadata, watch.priority)

    def refused(self, path: Path, reason: str) -> None:
        events.emit("file.rejected", f"{path.name}: refused: {reason}", level="error", outcome="failure",
                    path=str(path), reason=reason)


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return 0

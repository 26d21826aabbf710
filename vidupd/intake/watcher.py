"""Watched folders -> stable, complete files.

Sources of candidates: watchdog events (inotify, or polling for NFS/SMB), a full scan at
start-up, a periodic rescan, and a rescan after an inotify queue overflow. A candidate is
handed on (`on_ready`, in batches) only when it is a regular file inside its watch root whose size and
mtime have not changed for `settle_seconds` (and whose ready marker exists, in marker mode).
The watcher writes nothing anywhere; it only reads the tree.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from ..config import WatchConfig
from ..core.filters import PathFilter
from ..core.fsnames import safe_text
from ..core.safe_open import file_type

_log = logging.getLogger("vidupd.watcher")  # the name events carry since 0.1, kept

# Only what starts a settle clock: a new name (create, move in) and the end of a write.
# Not IN_MODIFY (one per write call) nor open/close-nowrite (our own reads cause them):
# the settle check compares size and mtime itself, so those events would only cost CPU.
_EVENTS = [FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent]


_RELOOK = 5.0  # seconds between looks at a file that could not be examined (it may recover)


class _HandOnFailed(Exception):
    """Stable files could not be handed on (the ledger refused the batch); names them."""


@dataclass(frozen=True)
class Refusal:
    path: Path
    watch: WatchConfig
    reason: str


class _Pending:
    """A candidate's last seen size/mtime, since when they held, and when to look next
    (so a tick stats only what is due, not every pending file)."""

    __slots__ = ("watch", "size", "mtime_ns", "since", "due")

    def __init__(self, watch: WatchConfig):
        self.watch = watch
        self.size = -1
        self.mtime_ns = -1
        self.since = 0.0
        self.due = 0.0


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher", watch: WatchConfig):
        self._watcher = watcher
        self._watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):  # a folder moved in: its files have no events
                self._watcher.request_rescan()
            return
        path = getattr(event, "dest_path", "") or event.src_path
        if event.event_type in ("created", "modified", "moved", "closed"):
            self._watcher.touch(Path(os.fsdecode(path)), self._watch)


class _OverflowFilter(logging.Filter):
    """watchdog only logs an inotify queue overflow; we turn that log line into a rescan."""

    def __init__(self, watcher: "Watcher"):
        super().__init__()
        self._watcher = watcher

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in str(record.msg).lower():
            self._watcher.request_rescan()
        return True


class Watcher:
    """Tracks candidates of all watches and reports stable ones from one settle thread."""

    def __init__(self, watches: tuple[WatchConfig, ...], rescan_interval: float,
                 on_ready: Callable[[list[tuple[Path, WatchConfig, os.stat_result]]], None],
                 on_refused: Callable[[Refusal], None], tick: float = 0.25,
                 rescan_turn: Callable[[], bool] = lambda: True,
                 ledger_failed: Callable[[BaseException], bool] = lambda e: False):
        """`rescan_turn()`: whether this host does the periodic full rescan due now (on a
        shared outbox one host per round: vidupd.intake.rescan_turn); requested ones always run.
        `ledger_failed(e)`: whether the error that stopped a hand-on is the ledger failing and
        already reported (once per outage, by the pool's lease guard): then it is not logged
        again on every retry (a full disk made an error line per second)."""
        self._ledger_failed = ledger_failed
        self.watches = watches
        self._rescan_turn = rescan_turn
        self.rescan_interval = rescan_interval
        self._on_ready = on_ready
        self._on_refused = on_refused
        self._tick = tick
        self._filters = {w.path: PathFilter(w) for w in watches}
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rescan = threading.Event()
        self._observers: list = []
        self._observed: dict[Path, object] = {}  # watch root -> its observer (for reload)
        self._thread: threading.Thread | None = None
        self._refused: set[tuple[Path, str]] = set()
        self._overflow_filter = _OverflowFilter(self)
        self.scans = 0

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start observers and the settle thread; the first full scan runs right away."""
        logging.getLogger("watchdog.observers.inotify_c").addFilter(self._overflow_filter)
        for w in self.watches:
            self._observe(w)
        self.scan()
        self._thread = threading.Thread(target=self._run, name="vidupd-watcher", daemon=True)
        self._thread.start()

    def _observe(self, w: WatchConfig) -> None:
        observer = PollingObserver(timeout=w.poll_interval) if w.poll else Observer()
        observer.schedule(_Handler(self, w), str(w.path), recursive=w.recursive, event_filter=_EVENTS)
        observer.daemon = True
        observer.start()
        self._observers.append(observer)
        self._observed[w.path] = observer

    def set_watches(self, watches: tuple[WatchConfig, ...]) -> list[tuple[Path, str]]:
        """Reload: observe new and changed watches, stop observing removed ones, move pending
        candidates to their current watch (or drop them), then rescan everything.
        Returns the watches whose observer could not start (they are still scanned)."""
        failed: list[tuple[Path, str]] = []
        old = {w.path: w for w in self.watches}
        new = {w.path: w for w in watches}
        self._filters = {**self._filters, **{w.path: PathFilter(w) for w in watches}}
        self.watches = tuple(watches)
        for path, w in old.items():
            if new.get(path) != w:
                observer = self._observed.pop(path, None)
                if observer is not None:
                    observer.stop()
                    observer.join(timeout=5)
                    self._observers.remove(observer)
        for path, w in new.items():
            if old.get(path) != w:
                try:
                    self._observe(w)
                except OSError as e:  # vanished folder, inotify watch limit: the rescan still sees it
                    failed.append((path, e.strerror or str(e)))
        with self._lock:
            for path, entry in list(self._pending.items()):
                current = self._watch_for(path)
                if current is None:
                    del self._pending[path]
                else:
                    entry.watch = current
        self._filters = {w.path: PathFilter(w) for w in watches}
        self.request_rescan()
        return failed

    @property
    def alive(self) -> bool:
        """The settle thread runs (health check for the systemd watchdog)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        logging.getLogger("watchdog.observers.inotify_c").removeFilter(self._overflow_filter)
        for o in self._observers:
            o.stop()
        for o in self._observers:
            o.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- candidates ------------------------------------------------------------------------
    def _watch_for(self, path: Path) -> WatchConfig | None:
        for w in self.watches:
            if path.parent == w.path or (w.recursive and w.path in path.parents):
                return w
        return None

    def touch(self, path: Path, watch: WatchConfig | None = None) -> None:
        """Something happened to `path`: (re)start its settle clock if it is a candidate."""
        if watch is None or watch not in self.watches:  # none given, or one a reload replaced
            watch = self._watch_for(path)
        if watch is None:
            return
        if watch.ready_marker and path.name.endswith(watch.ready_marker):
            path = path.with_name(path.name[: -len(watch.ready_marker)])  # the marker speaks for its file
        try:
            rel = path.relative_to(watch.path)
        except ValueError:
            return
        filt = self._filters.get(watch.path)
        if filt is None or not filt.accepts(rel):
            return
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                self._pending[path] = _Pending(watch)
            else:
                entry.due = 0.0  # look again soon; its clock restarts only if size or mtime moved

    def request_rescan(self) -> None:
        self._rescan.set()

    def scan(self) -> int:
        """Walk every watch once and touch every candidate; returns how many were seen."""
        seen = 0
        for w in self.watches:
            filt = self._filters.get(w.path)
            if filt is None:  # removed by a reload during this scan
                continue
            for dirpath, dirnames, filenames in os.walk(w.path, followlinks=False):
                base = Path(dirpath)
                if w.recursive:
                    dirnames[:] = [d for d in dirnames if filt.enters((base / d).relative_to(w.path))]
                else:
                    dirnames[:] = []
                for name in filenames:
                    self.touch(base / name, w)
                    seen += 1
        self.scans += 1
        return seen

    # -- settling --------------------------------------------------------------------------
    def _run(self) -> None:
        last_scan = time.monotonic()
        while not self._stop.wait(self._tick):
            try:
                if self._rescan.is_set() or time.monotonic() - last_scan >= self.rescan_interval:
                    requested = self._rescan.is_set()  # an overflow or a reload: this host's own need
                    self._rescan.clear()
                    last_scan = time.monotonic()
                    if requested or self._rescan_turn():
                        self.scan()
                self.settle_once()
            except _HandOnFailed as e:  # the ledger's disk is full...: keep watching (intake waits)
                if e.__cause__ is None or not self._ledger_failed(e.__cause__):
                    _log.error("watcher: %s; trying again", e, exc_info=e.__cause__)
                self._stop.wait(1.0)
            except Exception:  # a folder vanished...: keep watching
                _log.exception("watcher: a scan or settle step failed; trying again")
                self._stop.wait(1.0)

    def settle_once(self, now: float | None = None) -> int:
        """Look at every candidate that is due; report the stable ones. Returns how many.
        A problem with one file (its name, a link loop, an error while looking at it) is
        that file's alone: it is refused or looked at again later, and the others go on."""
        now = time.monotonic() if now is None else now
        with self._lock:
            items = [(p, e) for p, e in self._pending.items() if e.due <= now]
        ready: list[tuple[Path, WatchConfig, os.stat_result]] = []
        for path, entry in items:
            try:
                st = self._settled(path, entry, now)
            except Exception as e:  # unforeseen, and this file's problem only: refuse it (once)
                self._drop(path)
                self._refuse(path, entry.watch, f"cannot be examined: {_describe(e)}")
                continue
            if st is not None:
                ready.append((path, entry.watch, st))
        if ready:
            try:
                self._on_ready(ready)  # as one batch: one ledger transaction for a burst of files
            except Exception as e:
                with self._lock:  # not recorded: look at them again next tick
                    for path, watch, _ in ready:
                        self._pending.setdefault(path, _Pending(watch))
                names = ", ".join(safe_text(p) for p, _, _ in ready[:5]) + (", ..." if len(ready) > 5 else "")
                raise _HandOnFailed(f"could not hand on {len(ready)} stable file(s) ({names})") from e
        return len(ready)

    def _settled(self, path: Path, entry: _Pending, now: float) -> os.stat_result | None:
        """The file's stat if it is stable and acceptable now; None if not (yet), after
        scheduling the next look, dropping it (gone) or refusing it (once)."""
        settle = entry.watch.settle_seconds
        broken = None  # a symbolic link that cannot be followed: settles as a link, then is refused
        try:
            st = os.stat(path)
        except OSError as e:
            broken = _broken_link(e)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self._drop(path)  # gone (or never there): nothing to say
                return None
            if broken is None or not stat.S_ISLNK(st.st_mode):
                if not isinstance(e, FileNotFoundError):  # EIO, EACCES...: say so once, keep looking
                    self._refuse(path, entry.watch, f"cannot be examined: {e.strerror or e}")
                entry.due = now + (0.0 if isinstance(e, FileNotFoundError) else _RELOOK)
                return None
        if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns) or entry.since == 0.0:
            entry.size, entry.mtime_ns, entry.since = st.st_size, st.st_mtime_ns, now
            if settle > 0:
                entry.due = now + settle
                return None
        if now - entry.since < settle:
            entry.due = entry.since + settle
            return None
        if broken is None and entry.watch.ready_marker:
            marker = path.with_name(path.name + entry.watch.ready_marker)
            try:
                present = marker.exists()
            except OSError as e:
                if e.errno != errno.ENAMETOOLONG:
                    raise
                self._drop(path)
                self._refuse(path, entry.watch, f"name too long to have a ready marker ({entry.watch.ready_marker})")
                return None
            if not present:
                entry.due = now + 1.0  # the marker's own event wakes it sooner
                return None
        self._drop(path)
        reason = broken or self._refusal(path, entry.watch, st)
        if reason:
            self._refuse(path, entry.watch, reason)
            return None
        return st

    def _refuse(self, path: Path, watch: WatchConfig, reason: str) -> None:
        """Report a refused file once per reason (rescans find it again and stay quiet)."""
        key = (path, reason)
        if key not in self._refused:
            self._refused.add(key)
            self._on_refused(Refusal(path, watch, reason))

    def _drop(self, path: Path) -> None:
        with self._lock:
            self._pending.pop(path, None)

    @staticmethod
    def _refusal(path: Path, watch: WatchConfig, st: os.stat_result) -> str | None:
        what = file_type(st.st_mode)
        if what is not None:
            return f"is {what}, not a regular file"
        if not os.path.islink(path):  # scans and inotify never enter linked folders: only the file can lead out
            return None
        real = Path(os.path.realpath(path))
        root = Path(os.path.realpath(watch.path))
        if real != root and root not in real.parents:
            return f"symbolic link leads out of the watched folder (to {real})"
        return None


def _broken_link(e: OSError) -> str | None:
    """Why a path cannot be followed, if that is a symbolic link's fault (checked by the
    caller with lstat): a loop, or a target that does not exist (yet)."""
    if e.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if e.errno == errno.ENOENT:
        return "symbolic link to a file that does not exist"
    return None


def _describe(e: BaseException) -> str:
    return safe_text(f"{type(e).__name__}: {e}")

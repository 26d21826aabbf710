"""`vidupd status`: the jobs as a table sized to the terminal, as JSON, or live (`--watch`).

Finished jobs (done, skipped, cancelled) are hidden unless `--all` or `--since 1h` asks for them; the
header counts every job by state. Rates are SI (kB/s, MB/s: 1 MB = 10^6 bytes), as in
`systemctl status` and the events' `bytes_per_second`. An error is shown while it is
current: the ledger clears it once the job's next attempt makes progress, and a finished
job shows none. Read-only: it opens the ledger read-only and needs no platform credentials.

The fleet: an uploading job's HOST is the host name of its lease holder, and a line under
the header lists the hosts heard from within the last minutes (their heartbeats,
vidupd.ledger.hosts; `vidupd hosts` lists them all).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..core.fsnames import safe_text
from ..core.rate_schedule import RateSchedule
from ..core.units import human_rate, parse_duration
from ..ledger import CLOSED, HELD, STATES, Host, Job, LedgerError, LedgerShared, open_ledger, owner_parts
from ..ledger.hosts import RECENT
from ..service.bandwidth import InForce, in_force
from ..service.controls import PauseSet, load_pause
from ..service.rate_override import load_rate_override


def since_seconds(text: str) -> float:
    """`--since` value: 90, 90s, 15m, 1h, 2d, 1w, 1h30m -> seconds (core.units.parse_duration,
    the config's durations; argparse type: exit 2 otherwise)."""
    try:
        return parse_duration(text)  # a string: never negative
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def iso(ts: float | None) -> str | None:
    """UTC ISO-8601 with milliseconds and Z, as the event log's @timestamp."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_duration(seconds: float) -> str:
    """5s, 1m05s, 3h12m, 2d04h: short and exact enough to act on."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def open_readonly(config: Any) -> Any:
    """The configured ledger opened read-only (status, hosts), or None if there is none yet."""
    try:
        return open_ledger(config, config.state_dir, readonly=True)
    except LedgerError as e:
        if "no ledger yet" in str(e):
            return None
        raise


def host_json(h: Host) -> dict[str, Any]:
    """One host as `hosts --json` and `status --json` give it."""
    return {"hostname": safe_text(h.hostname), "pid": h.pid, "owner": safe_text(h.owner), "state": h.status,
            "running": h.running, "version": h.version, "started": iso(h.started), "last_seen": iso(h.last_seen),
            "last_seen_seconds": round(h.age, 1)}


def describe_host(h: Host) -> str:
    """alpha (2 uploading), beta (silent for 45s), gamma (stopped 2m05s ago)."""
    name = safe_text(h.hostname)
    if h.status == "silent":
        return f"{name} (silent for {human_duration(h.age)})"
    if h.status == "stopped":
        return f"{name} (stopped {human_duration(h.age)} ago)"
    return f"{name} ({h.running} uploading)"


def holder(job: Job) -> str | None:
    """The host name of the process uploading `job` (its lease owner host:pid:start)."""
    if job.state != "uploading" or not job.lease_owner:
        return None
    return owner_parts(job.lease_owner)[0] or None


@dataclass(frozen=True)
class JobView:
    """One job as `status` shows it, at one moment (`now`)."""

    job: Job
    rate: float  # bytes/s, only while uploading
    eta: float | None  # seconds until the upload is sent, at the current rate
    next_try: float | None  # epoch s: a queued job's retry, a committed job's next status poll
    error: str | None  # the current error (None once the job moved on or finished)
    age: float  # seconds since the job was queued
    max_attempts: int

    @classmethod
    def of(cls, job: Job, now: float, max_attempts: int) -> "JobView":
        uploading = job.state == "uploading"
        rate = job.rate if uploading and job.rate > 0 else 0.0
        eta = (max(0, job.size - job.bytes_done) / rate) if rate else None
        waiting = job.state in ("queued", "committed") and now < job.not_before < HELD
        error = None if job.state in CLOSED else job.last_error
        return cls(job, rate, eta, job.not_before if waiting else None, error,
                   max(0.0, now - (job.created or job.updated)), max_attempts)

    def to_json(self, now: float) -> dict[str, Any]:
        j = self.job
        return {
            "id": j.id, "file": safe_text(j.path), "target": j.target, "kind": j.kind, "state": j.state,
            "size": j.size, "bytes_done": j.bytes_done, "percent": j.percent, "bytes_per_second": round(self.rate),
            "eta_seconds": None if self.eta is None else round(self.eta, 1),
            "eta": iso(now + self.eta) if self.eta is not None else None,
            "remote_id": j.remote_id, "remote_kind": j.remote_kind, "media_ids": list(j.media_ids),
            "attempts": j.attempts, "max_attempts": self.max_attempts,
            "next_retry": iso(self.next_try) if j.state == "queued" else None,
            "next_retry_in_seconds": (round(self.next_try - now, 1)
                                      if self.next_try is not None and j.state == "queued" else None),
            "next_poll": iso(self.next_try) if j.state == "committed" else None,
            "held_for_change": j.not_before >= HELD,
            "last_error": self.error, "created": iso(j.created or None), "updated": iso(j.updated),
            "age_seconds": round(self.age, 1), "priority": j.priority, "host": holder(j),
        }


@dataclass(frozen=True)
class Snapshot:
    """What one look at the ledger found: counts of every state and the jobs to show."""

    counts: dict[str, int]
    views: list[JobView]
    hidden: int  # finished jobs not shown (no --all / --since)
    taken: float
    paused: PauseSet = PauseSet()  # what `vidupd pause` holds (vidupd.service.controls)
    max_rate: InForce | None = None  # the bandwidth cap in force and where it comes from
    hosts: tuple[Host, ...] = ()  # heard from within RECENT seconds (vidupd.ledger.hosts)


def take(ledger: Any, args: argparse.Namespace, max_attempts: int, now: float | None = None,
         schedule: RateSchedule | None = None) -> Snapshot:
    """Read the ledger once (read-only) for the given command-line filters; `schedule` is the
    configured max_rate (the cap in force also depends on `vidupd limit`, kept in the ledger)."""
    now = time.time() if now is None else now
    rate = in_force(schedule, load_rate_override(LedgerShared(ledger)), now)
    counts = ledger.counts()
    states = list(args.state or [])
    since = None if args.since is None else now - args.since
    if states or args.all:
        jobs = ledger.jobs(states or None, updated_since=since)
    else:  # unfinished jobs always; finished ones only within --since
        unfinished = [s for s in STATES if s not in CLOSED]
        jobs = ledger.jobs(unfinished)
        if since is not None:
            jobs = sorted(jobs + ledger.jobs(list(CLOSED), updated_since=since), key=lambda j: j.id)
    shown_finished = sum(1 for j in jobs if j.state in CLOSED)
    hidden = 0 if (states or args.all) else sum(counts.get(s, 0) for s in CLOSED) - shown_finished
    return Snapshot(counts, [JobView.of(j, now, max_attempts) for j in jobs], hidden, now,
                    load_pause(LedgerShared(ledger)), rate, tuple(ledger.hosts(within=RECENT)))


def as_json(snap: Snapshot) -> str:
    paused = [dict(e.to_json(), since=iso(e.since)) for e in snap.paused.entries]
    rate = snap.max_rate
    limit = {} if rate is None else {
        "max_rate": rate.rate, "max_rate_source": {"reason": rate.reason, "text": rate.source, "until": iso(rate.until)}}
    return json.dumps({"generated": iso(snap.taken), "counts": snap.counts, "hidden_finished": snap.hidden,
                       "paused": paused, **limit, "hosts": [host_json(h) for h in snap.hosts],
                       "jobs": [v.to_json(snap.taken) for v in snap.views]},
                      ensure_ascii=False, indent=1)


def summary(snap: Snapshot) -> str:
    """The header line: every state's count, what is moving, what is hidden."""
    c = snap.counts
    parts = [f"paused: {snap.paused.describe()}"] if snap.paused.entries else []
    parts += [f"{c[s]} {s}" for s in STATES if c.get(s)]
    moving = [v for v in snap.views if v.job.state == "uploading"]
    if moving:
        done = sum(v.job.bytes_done for v in moving)
        size = sum(v.job.size for v in moving) or 1
        parts.append(f"sending {100 * done // size}% at {human_rate(sum(v.rate for v in moving))}")
    if snap.hidden:
        parts.append(f"{snap.hidden} finished not shown (--all)")
    rate = snap.max_rate
    if rate is not None and (rate.rate or rate.reason != "config"):
        parts.append(f"max_rate {rate.describe()}")
    return "; ".join(parts) or "no jobs yet"


_COLUMNS = ("ID", "STATE", "DONE", "RATE", "ETA", "TRY", "NEXT", "TARGET", "HOST", "REMOTE ID", "AGE", "FILE",
            "ERROR")
_RIGHT = {"ID", "DONE", "RATE", "ETA", "TRY", "AGE"}
_CAPS = {"TARGET": 16, "HOST": 16, "REMOTE ID": 34}
_STATE_STYLES = {"failed": "bold red", "attention": "bold magenta", "uploading": "bold cyan", "done": "green",
                 "committed": "blue", "skipped": "dim", "cancelled": "dim yellow"}


def _cells(v: JobView, now: float) -> list[str]:
    j = v.job
    nxt = ""
    if v.next_try is not None:
        nxt = f"in {human_duration(v.next_try - now)}"  # a queued job's retry, a committed one's poll
    elif j.not_before >= HELD:
        nxt = "file changing"
    tries = f"{j.attempts}/{v.max_attempts}" if j.attempts and j.state not in CLOSED else ""
    remote = ",".join(j.media_ids) if j.media_ids else (j.remote_id or "")
    return [str(j.id), j.state, f"{j.percent:.1f}%", human_rate(v.rate) if v.rate else "",
            human_duration(v.eta) if v.eta is not None else "", tries, nxt, j.target, safe_text(holder(j) or ""),
            remote,
            human_duration(v.age), safe_text(j.path.name), " ".join((v.error or "").split())]


def render(snap: Snapshot, width: int | None, title: str | None = None) -> Any:
    """The summary line (after `title`, if any) above a table exactly `width` columns wide at
    most: every column as wide as its content, except that the file name and the error
    (2:3) share what is left and are cut with an ellipsis; nothing wraps. `width` None (a
    pipe): every cell whole, for grep."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(no_wrap=True, overflow="ellipsis")
    if title:
        head.append(title + "  ", style="bold")
    head.append(summary(snap))
    if snap.hosts:
        head.append("\nhosts: " + ", ".join(map(describe_host, snap.hosts)))
    if not snap.views:
        return head
    rows = [_cells(v, snap.taken) for v in snap.views]
    widths = [max(len(name), *(len(r[n]) for r in rows)) for n, name in enumerate(_COLUMNS)]
    for n, name in enumerate(_COLUMNS):
        widths[n] = min(widths[n], _CAPS.get(name, widths[n]))
    if width is not None:
        left = width - sum(widths[:-2]) - (len(_COLUMNS) - 1)  # one space between columns
        want_file, want_error = widths[-2], widths[-1]
        file_w = max(4, min(want_file, max(left * 2 // 5, left - want_error)))
        widths[-2], widths[-1] = file_w, max(5, min(want_error, left - file_w))
    t = Table(expand=False, box=None, header_style="bold", pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for n, name in enumerate(_COLUMNS):
        t.add_column(name, justify="right" if name in _RIGHT else "left", width=widths[n], no_wrap=True,
                     overflow="ellipsis", style={"ID": "cyan", "REMOTE ID": "green", "ERROR": "red"}.get(name, ""))
    for r in rows:
        t.add_row(*r[:1], Text(r[1], style=_STATE_STYLES.get(r[1], "")), *r[2:])
    return Group(head, t)


def show(snap: Snapshot, console: Any) -> None:
    console.print(render(snap, console.width if console.is_terminal else None))


def watch(open_ledger: Any, args: argparse.Namespace, max_attempts: int, console: Any,
          schedule: RateSchedule | None = None) -> int:
    """Refresh the table in place every `--interval` s until Ctrl-C (rich.live: redraws only
    the lines it owns, no screen clearing, so no flicker)."""
    from rich.live import Live

    def look() -> Any:
        ledger = open_ledger()
        if ledger is None:
            return "no jobs yet"
        try:
            snap = take(ledger, args, max_attempts, schedule=schedule)
        finally:
            ledger.close()
        return render(snap, console.width, title=f"vidupd status {time.strftime('%H:%M:%S')} (Ctrl-C to stop):")

    try:
        with Live(look(), console=console, auto_refresh=False, transient=False, redirect_stdout=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(look(), refresh=True)
    except KeyboardInterrupt:
        return 0


def console_for_stdout() -> Any:
    from rich.console import Console

    tty = sys.stdout.isatty()  # a pipe gets whole lines, a terminal its width
    return Console(file=sys.stdout, highlight=False, markup=False, emoji=False, width=None if tty else 100_000)

"""The hosts of one ledger: every daemon writes a heartbeat row (the `hosts` table, one row
per daemon process, keyed by its lease owner id host:pid:start), so `vidupd hosts` and
`vidupd status` can say which hosts work on a shared outbox, when each was last heard of,
and how many uploads it runs. On SQLite that is the one host; on PostgreSQL the fleet.

Times are the ledger's clock (`_now()`: the server's on PostgreSQL), so hosts whose clocks
disagree still agree on how old a heartbeat is. A beat is one upsert of the process's own
row, nothing else (two hosts' beats never wait for each other); rows not beaten for `KEPT`
(a host retired, a daemon long gone) are deleted by the hourly housekeeping
(`prune_hosts`), so the table holds about one row per daemon start of the last week.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LedgerBase

BEAT_EVERY = 5.0  # seconds between a daemon's heartbeats (vidupd.service.daemon)
SILENT_AFTER = 30.0  # a running host not heard from this long is shown as silent (6 beats missed)
KEPT = 7 * 86400.0  # a host row not beaten this long is deleted (prune_hosts)
RECENT = 300.0  # `vidupd status` lists the hosts heard from within this many seconds
STATES = ("running", "stopped")  # what a host row says of itself; `silent` is derived (Host.status)


@dataclass(frozen=True)
class Host:
    """One daemon process as its heartbeats describe it, read at one moment."""

    owner: str  # host:pid:start, the lease owner of its jobs
    hostname: str
    pid: int
    version: str
    started: float  # epoch s (ledger clock): its first beat
    last_seen: float  # epoch s (ledger clock): its last beat
    running: int  # uploads it ran at its last beat
    state: str  # "running" or "stopped" (a clean stop said so)
    age: float  # seconds since its last beat, by the ledger's clock when read

    @property
    def status(self) -> str:
        """running, stopped, or silent: running by its last word but not heard from for
        SILENT_AFTER (killed, frozen, cut off from the ledger; its leases run out)."""
        if self.state == "running" and self.age > SILENT_AFTER:
            return "silent"
        return self.state


def owner_parts(owner: str) -> tuple[str, int]:
    """(hostname, pid) of a lease owner id host:pid:start; pid 0 if it has none."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host, int(pid) if pid.isdigit() else 0


class LedgerHosts(LedgerBase):
    """Heartbeats: `beat`, `host_stopped`, `hosts`, `prune_hosts`."""

    def beat(self, owner: str, *, running: int = 0, version: str = "") -> None:
        """`owner` is alive now, running `running` uploads: one upsert of its row (the first
        beat also records when it started)."""
        hostname, pid = owner_parts(owner)
        now = self._now()
        with self._tx() as db:
            db.execute("INSERT INTO hosts(owner, hostname, pid, version, started, last_seen, running, state) "
                       "VALUES(?,?,?,?,?,?,?,'running') ON CONFLICT(owner) DO UPDATE SET "
                       "last_seen=excluded.last_seen, running=excluded.running, version=excluded.version, "
                       "state='running'", (owner, hostname, pid, version, now, now, running))

    def host_stopped(self, owner: str) -> None:
        """A clean stop: `owner` runs nothing any more (its leases are given back)."""
        with self._tx() as db:
            db.execute("UPDATE hosts SET state='stopped', running=0, last_seen=? WHERE owner=?", (self._now(), owner))

    def prune_hosts(self, older_than: float = KEPT) -> int:
        """Delete the rows not beaten for `older_than` seconds; how many went (housekeeping)."""
        with self._tx() as db:
            return db.execute("DELETE FROM hosts WHERE last_seen<?", (self._now() - older_than,)).rowcount

    def hosts(self, within: float | None = None) -> list[Host]:
        """Every host row, or those beaten within the last `within` seconds, by hostname
        then start. Read-only."""
        now = self._now()
        sql, args = "SELECT * FROM hosts", []
        if within is not None:
            sql += " WHERE last_seen>=?"
            args.append(now - within)
        rows = self._all(sql + " ORDER BY hostname, started, owner", args)
        return [Host(r["owner"], r["hostname"], int(r["pid"]), r["version"], r["started"], r["last_seen"],
                     int(r["running"]), r["state"], max(0.0, now - r["last_seen"])) for r in rows]

"""The ledger's SQLite schema, as the migrations that build it: version N is the first N
scripts. A ledger records its version in `meta`; opening runs the scripts it lacks, in one
transaction, and refuses a ledger newer than this vidupd."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .model import LedgerError

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE jobs(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        watch TEXT,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        dev INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        md5 TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        remote_id TEXT, remote_kind TEXT, details TEXT,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        rate REAL NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        lease_owner TEXT, lease_until REAL,
        after_done INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL, updated REAL NOT NULL
    );
    CREATE INDEX jobs_ready ON jobs(state, not_before);
    CREATE INDEX jobs_path ON jobs(path, target);
    CREATE INDEX jobs_identity ON jobs(dev, inode, size, mtime_ns);
    CREATE INDEX jobs_content ON jobs(target, md5, size);
    CREATE INDEX jobs_remote ON jobs(target, remote_id);
    CREATE TABLE checkpoints(
        job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
        data TEXT NOT NULL,
        updated REAL NOT NULL
    );
    """,
    # 2: when the platform acknowledged the upload (bounds the wait for "ready"); claim order
    """
    ALTER TABLE jobs ADD COLUMN committed_at REAL;
    CREATE INDEX jobs_claim ON jobs(state, id)
    """,
    # 3: values every process of this ledger shares (rotating OAuth tokens), apart from jobs
    """
    CREATE TABLE shared(
        key TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        data TEXT NOT NULL,
        updated REAL NOT NULL
    )
    """,
    # 4: fencing: every claim bumps the job's lease generation; a worker's transitions
    # name the generation it claimed, so a worker whose lease was taken over is refused
    """
    ALTER TABLE jobs ADD COLUMN lease_gen INTEGER NOT NULL DEFAULT 0
    """,
    # 5: possible twins (another job of the same size for the target) are looked up before
    # every unhashed send: without this, each scans the target. No state in it: target and
    # size never change, so a transition does not rewrite this index
    """
    CREATE INDEX jobs_twins ON jobs(target, size)
    """,
    # 6: order and priority: a job's priority (from its watch when queued; `vidupd prioritize`)
    # and one index per `order`, grouped by (target, watch) so a claim that skips a full
    # target or a paused watch still walks only the rows it takes (see ledger.claim_order)
    """
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_queue_oldest ON jobs(state, target, watch, priority DESC, id);
    CREATE INDEX jobs_queue_smallest ON jobs(state, target, watch, priority DESC, size, id);
    CREATE INDEX jobs_queue_largest ON jobs(state, target, watch, priority DESC, size DESC, id);
    CREATE INDEX jobs_queue_name ON jobs(state, target, watch, priority DESC, path, id)
    """,
    # 7: `vidupd cancel` marks a job here (epoch s); the lease holder sees it at its next check
    # and cancels the transfer, or the command claims a job nobody holds and cancels it itself
    """
    ALTER TABLE jobs ADD COLUMN cancel_requested REAL
    """,
    # 8: a file version is path, inode, size and mtime_ns, the same on every host of a shared
    # outbox; the device number (the client's, different per host) is kept but never matched
    # (core.model.FileIdentity). Inode first: rename detection looks a version up by inode,
    # size and mtime at any path; the other matches add the path
    """
    DROP INDEX jobs_identity;
    CREATE INDEX jobs_version ON jobs(inode, size, mtime_ns, path)
    """,
    # 9: the hosts of this ledger (vidupd.ledger.hosts): one heartbeat row per daemon process
    """
    CREATE TABLE hosts(
        owner TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        started REAL NOT NULL,
        last_seen REAL NOT NULL,
        running INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'running'
    );
    CREATE INDEX hosts_seen ON hosts(last_seen)
    """,
)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to the newest version, inside the caller's transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise LedgerError(f"{path}: schema version {version} is newer than this vidupd "
                          f"understands ({len(MIGRATIONS)}); upgrade vidupd")
    for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for stmt in filter(str.strip, script.split(";")):
            db.execute(stmt)
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(n),))

"""The ledger: the single source of truth and the work queue.

One job per (file version, target); a version is its path, inode, size and mtime_ns, the
same on every host of a shared outbox (never the device number: core.model.FileIdentity).
States:
  queued -> uploading -> committed (remote id known, waiting for the platform) -> done
                      \\-> failed | attention (duplicate remote id) ; skipped (not uploaded)
  queued | uploading | failed | attention -> cancelled (`vidupd cancel`, fenced: see sqlite_control)
The in-memory work queue is a bounded window onto these rows, so 100,000 waiting files cost
rows on disk, not objects in RAM. Modules: `model` (states, Job, Intent, Offer,
LedgerError), `schema` (the migrations), `outcomes` (what a worker reports, and the event
each report implies), `sqlite` (the Ledger: the transitions, written once for every store;
its claims in `sqlite_claim`), `claim_order` (priority, then `order`: the order claims take
waiting jobs in), `store` (what a store provides: connection, transactions, dialect), `sqlite_store` and
`postgresql` (the two stores; `pg_schema` the latter's migrations), `location` (`[ledger]`
and `open_ledger`, which every command uses), `shared` (values every process of one
ledger shares, such as rotating OAuth tokens), `hosts` (each daemon's heartbeat: `vidupd
hosts`, the fleet in `vidupd status`).

Fencing: every claim bumps the job's lease generation. Each transition a worker makes names
the lease it holds (`owner=`, `generation=`) and runs only if the row still carries that
lease; otherwise it raises LeaseLost and writes nothing, so a worker whose lease expired and
was taken over (a paused one-shot beside the daemon, another host on a shared ledger)
cannot overwrite the new holder. Without `owner` a write is unfenced (operator commands,
tests).

Outcomes: a worker's state change is one call, `Ledger.apply(job_id, outcome, owner=...,
generation=...)`, with a frozen outcome value (Completed, RetryLater, Failed, Skipped,
Interrupted, HeldForChange, ContentReset, WaitForTwin, RemoteIdRecorded, PollLater, Ready,
MediaFailed, Unconfigured, Cancelled). In one fenced transaction the ledger reads the row, lets the
outcome decide the new columns and the event they imply, writes them (ending the lease in
one place), commits, and returns the event as a value (`Event`); the caller emits it, so
an event is never logged for a state that was not stored. This package never imports the
event log.

Content and twins: a job's content (the `md5` column: an MD5, or "crc64:HEX") is taken
before sending only when the provider needs an MD5 or `twin_possible` finds another job of
the same size for the target; otherwise the provider reports the content id it computed
while sending, stored by `Completed`. `record_content` decides skip / wait / go in one
transaction, so of identical files exactly one is sent.
"""

from ..core.errors import LeaseLost
from .base import LedgerCheckpoint
from .hosts import Host, owner_parts
from .location import LedgerSettings, open_ledger, scrub_url
from .model import (CANCELLABLE, CLOSED, FINISHED, FORGETTABLE, HELD, STATES, Intent, Job, LedgerError,
                    LedgerUnavailable, Offer, ledger_failure, metadata_json)
from .outcomes import (DUPLICATE_REMOTE_ID, Cancelled, Completed, ContentReset, Event, Failed, HeldForChange,
                       Interrupted, MediaFailed, Outcome, PollLater, Ready, RemoteIdRecorded, RetryLater, Skipped,
                       Unconfigured, WaitForTwin)
from .schema import MIGRATIONS
from .shared import LedgerShared
from .sqlite import Ledger, lease_owner_id

__all__ = ["CANCELLABLE", "CLOSED", "DUPLICATE_REMOTE_ID", "FINISHED", "FORGETTABLE", "Cancelled", "HELD", "Host",
           "MIGRATIONS", "STATES", "Completed", "ContentReset", "Event",
           "Failed", "HeldForChange", "Interrupted", "Intent", "Job", "Ledger", "LedgerCheckpoint", "LedgerError",
           "LedgerSettings", "LedgerShared", "LedgerUnavailable", "LeaseLost", "MediaFailed", "Offer", "Outcome",
           "PollLater", "Ready", "RemoteIdRecorded", "RetryLater", "Skipped", "Unconfigured", "WaitForTwin",
           "lease_owner_id", "ledger_failure", "metadata_json", "open_ledger", "owner_parts", "scrub_url"]

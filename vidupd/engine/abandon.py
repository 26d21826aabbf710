"""Giving an upload up for good: a job whose file vanished before its upload finished, or
one the operator cancelled (`vidupd cancel`, see `cancel_job`), can never resume, so what
its checkpoint holds on the platform (an upload token, a multipart upload on OSS) is
cancelled now instead of lingering until it expires.

Only for providers that declare `Abandons`; best effort: one try (the provider's request
timeout bounds it), an event either way (`upload.abandoned`, else `upload.cancel_failed`),
and the checkpoint is dropped only once the platform let go of it.
"""

from __future__ import annotations

from ..core import events
from ..core.errors import LeaseLost
from ..ledger import Cancelled, Event, Job, Ledger
from ..providers.base import Provider
from ..providers.features import Abandons
from .poll import describe


def abandon_upload(job: Job, provider: Provider, ledger: Ledger, lease: dict, fields: dict,
                   reason: str) -> str | None:
    """Abandon `job`'s checkpointed upload on the platform, if it has one (see the module).
    Returns what was done or what failed (for a command's result line), None for nothing."""
    if not isinstance(provider, Abandons):
        return None
    store = ledger.checkpoint(job.id, lease["owner"], lease["generation"])
    state = store.load()
    if not state:
        return None
    store.ensure_held()  # LeaseLost: the job is another host's now, and so is its platform upload
    try:
        done = provider.abandon(state)
    except LeaseLost:
        raise
    except Exception as e:  # a provider error, or a bug: the job's outcome must still be recorded
        events.emit("upload.cancel_failed", f"{job.path.name}: could not give the upload up on {job.target} "
                    f"({reason}): {describe(e)}", level="warning", reason=reason, error=describe(e), **fields)
        return f"not cleaned up on {job.target}: {describe(e)}"
    if done:
        events.emit("upload.abandoned", f"{job.path.name}: {reason}; {done}", reason=reason, **fields)
    store.clear()
    return done


def cancel_job(job: Job, provider: Provider | None, ledger: Ledger, lease: dict,
               fields: dict) -> tuple[Event | None, str | None]:
    """`vidupd cancel`, by whoever holds the job's lease (the pool, or the command itself):
    abandon the platform upload, then apply Cancelled under the same lease (LeaseLost if it
    was taken over meanwhile). Returns the event (emitted here) and what the clean-up did."""
    done = None if provider is None else abandon_upload(job, provider, ledger, lease, fields,
                                                        "cancelled by the operator")
    event = ledger.apply(job.id, Cancelled(), **lease)
    if event is not None:
        events.emit(event.action, event.message, level=event.level, **{**event.fields, **fields})
    return event, done

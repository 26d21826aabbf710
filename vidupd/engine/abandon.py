"""Giving an upload up for good: a job whose file vanished before its upload finished can
never resume, so what its checkpoint holds on the platform (an upload token, a multipart
upload on OSS) is cancelled now instead of lingering until it expires.

Only for providers that declare `Abandons`; best effort: one try (the provider's request
timeout bounds it), an event either way (`upload.abandoned`, else `upload.cancel_failed`),
and the checkpoint is dropped only once the platform let go of it.
"""

from __future__ import annotations

from ..core import events
from ..core.errors import LeaseLost
from ..ledger import Job, Ledger
from ..providers.base import Provider
from ..providers.features import Abandons
from .poll import describe


def abandon_upload(job: Job, provider: Provider, ledger: Ledger, lease: dict, fields: dict, reason: str) -> None:
    """Abandon `job`'s checkpointed upload on the platform, if it has one (see the module)."""
    if not isinstance(provider, Abandons):
        return
    store = ledger.checkpoint(job.id, lease["owner"], lease["generation"])
    state = store.load()
    if not state:
        return
    try:
        done = provider.abandon(state)
    except LeaseLost:
        raise
    except Exception as e:  # a provider error, or a bug: the job's outcome must still be recorded
        events.emit("upload.cancel_failed", f"{job.path.name}: could not give the upload up on {job.target} "
                    f"({reason}): {describe(e)}", level="warning", reason=reason, error=describe(e), **fields)
        return
    if done:
        events.emit("upload.abandoned", f"{job.path.name}: {reason}; {done}", reason=reason, **fields)
    store.clear()

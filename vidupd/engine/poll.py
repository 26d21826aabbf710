"""One status poll of a committed upload: is the platform done processing it?

A poll never sends the file again: errors only move the next poll (with backoff) or, when
permanent, fail it. Every result is one outcome for `Ledger.apply` (via `apply`).
"""

from __future__ import annotations

import time
from typing import Callable

from ..config import TargetConfig
from ..core.errors import LeaseLost, PermanentError, ProviderError
from ..ledger import Job, MediaFailed, Outcome, PollLater, Ready
from ..providers.base import Provider
from .after_upload import AfterUpload


def poll_safely(job: Job, provider: Provider, target: TargetConfig, first: float, maximum: float,
                apply: Callable[[Outcome], object], after: AfterUpload) -> None:
    """Poll once and apply what it found; `first`/`maximum`: the poll interval's bounds."""
    delay = min(maximum, first * (1.5 ** job.attempts))
    try:
        _poll(job, provider, target, delay, apply, after)
    except LeaseLost:
        raise
    except PermanentError as e:
        apply(MediaFailed(f"status check failed: {e}"))
    except Exception as e:  # transient or unexpected: poll again later, with backoff
        apply(PollLater(delay, job.attempts + 1, f"status check failed: {describe(e)}"))


def _poll(job: Job, provider: Provider, target: TargetConfig, delay: float, apply: Callable[[Outcome], object],
          after: AfterUpload) -> None:
    assert job.remote_id is not None and job.remote_kind is not None
    status = provider.media_status(job.remote_id, job.remote_kind)
    if status.state == "ready":
        apply(Ready(tuple(status.remote_ids), status.detail))
        after.maybe_run(job)
        return
    if status.state == "failed":
        apply(MediaFailed(f"platform reports processing failed: {status.detail}"))
        return
    waited = time.time() - (job.committed_at or time.time())
    if waited > target.ready_timeout:
        apply(MediaFailed(f"not ready after {int(waited)}s (ready_timeout); last state {status.detail}"))
        return
    apply(PollLater(delay, job.attempts + 1, f"processing: {status.detail}"))


def describe(e: BaseException) -> str:
    """An error as one line for events and last_error (an OSError as its strerror and file)."""
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and not isinstance(e, ProviderError) and e.strerror:
        text = f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return text

"""The worker pool's settings (the lease time among them) and constants (the poll lanes), the fields
every job event carries, and the workers a stop gave up on."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..config import Config
from ..core.retry import RetryPolicy
from ..ledger import Job, outcomes
from ..ledger.location import DEFAULT_LEASE

REQUEST_RETRY = RetryPolicy(attempts=6, initial=1.0, maximum=30.0)  # per HTTP call, inside a job
POLL_FIRST, POLL_MAX = 5.0, 120.0
POLL_WORKERS = 2  # threads for status polls, besides the `workers` upload threads

# Worker threads a stop gave up on (see Pool.stop), in this process.
_left_behind: list[threading.Thread] = []


def workers_left_behind() -> int:
    """How many workers a stop gave up on are still running. Interpreter exit joins every
    ThreadPoolExecutor thread (concurrent.futures' atexit hook), so while one is stuck in a
    system call a normal exit never ends: the CLI then leaves with os._exit."""
    return sum(t.is_alive() for t in _left_behind)


@dataclass(frozen=True)
class PoolSettings:
    workers: int
    retry: RetryPolicy
    skip_duplicates: bool
    request_retry: RetryPolicy = REQUEST_RETRY
    poll_first: float = POLL_FIRST
    poll_max: float = POLL_MAX
    order: str = "oldest"  # jobs of equal priority (vidupd.ledger.claim_order)
    target_workers: tuple[tuple[str, int], ...] = ()  # (target, its cap) for targets capped below `workers`
    lease: float = DEFAULT_LEASE  # `[ledger] lease`: seconds a claim lasts unrenewed (vidupd.engine.lease_guard)


def settings_from(config: Config) -> PoolSettings:
    return PoolSettings(workers=config.workers, retry=config.retry, skip_duplicates=config.skip_duplicates,
                        order=config.order, target_workers=config.target_caps(), lease=config.ledger.lease)


def job_fields(job: Job, provider: str | None = None) -> dict:
    return dict(outcomes.job_fields(job), provider=provider)

"""Retry pacing written once, for the pool and for providers' per-request retries.

Built on tenacity (exponential backoff with full jitter, a bounded number of attempts);
sleeps wake early when the daemon stops.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, TypeVar

import tenacity

from .errors import TransientError, UploadCancelled

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing step is tried again."""

    attempts: int = 5  # total tries, the first included
    initial: float = 1.0  # seconds before the first retry (before jitter)
    maximum: float = 60.0  # cap on a single wait

    def wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_random_exponential(multiplier=self.initial, max=self.maximum)

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1-based), honouring jitter and the cap."""
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self.wait()(state))


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    cancel: threading.Event,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    retry_on: tuple[type[BaseException], ...] = (TransientError,),
) -> T:
    """Call `fn` until it succeeds, a non-retryable error escapes, or attempts run out.

    `on_retry(attempt, error, wait_seconds)` is told before each wait. A platform's
    `retry_after` hint lengthens the wait. Raises UploadCancelled if `cancel` is set.
    """
    base_wait = policy.wait()

    def _wait(state: tenacity.RetryCallState) -> float:
        w = float(base_wait(state))
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        return max(w, min(float(hint), policy.maximum)) if hint else w

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    def _sleep(seconds: float) -> None:
        if cancel.wait(seconds):
            raise UploadCancelled("stopping during a retry wait")

    retryer = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=_wait,
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=_before_sleep,
        sleep=_sleep,
        reraise=True,
    )
    return retryer(fn)

"""How one protocol step of either Youku flow is tried: with the job's retry policy and
cancel signal (an `upload.retrying` event per failed try), and with the current access token
(refreshed once when Youku refuses it)."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from ...core.retry import call_with_retry
from ..base import UploadContext
from .tokens import TokenKeeper

T = TypeVar("T")


def retry_step(ctx: UploadContext, step: str, fn: Callable[[], T], cancel: threading.Event | None = None) -> T:
    """`fn()` with the job's retries, each failed try reported."""
    def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
        ctx.note("upload.retrying", f"youku {step} failed; retrying", step=step, attempt=attempt,
                 wait_seconds=round(wait_s, 3), error=str(error))

    return call_with_retry(fn, ctx.retry, cancel or ctx.cancel, on_retry=on_retry)


def with_token(tokens: TokenKeeper, ctx: UploadContext, step: str, fn: Callable[[str], T]) -> T:
    """`fn(access_token)` with the job's retries; a refused token is refreshed (once for all)."""
    def refreshed() -> None:
        ctx.note("auth.refreshed", "Youku access token refreshed")

    return retry_step(ctx, step, lambda: tokens.call(fn, refreshed))

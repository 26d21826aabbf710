"""`[[notify]]` webhooks: chosen events POSTed as their JSON line, signed, never in the way.

Each webhook has its own bounded queue and one sending thread. The event pipeline only puts
the line in the queue (never waits: a full queue drops the notification and counts it), so
a slow or dead receiver cannot slow an upload. Delivery:

    POST <url>
    Content-Type: application/json
    X-Vidupd-Event: upload.completed
    X-Vidupd-Delivery: <event.id>          (the same for every retry of one notification)
    X-Vidupd-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>   (with a secret)

    {"@timestamp": ..., "event.action": "upload.completed", ...}   (the event log's line, byte for byte)

A 2xx is delivered; a 5xx, 408, 429, a timeout or a refused connection is tried again with
backoff (core.retry), up to `attempts`; any other answer, or the last failure, gives a
`notify.failed` warning event (the URL without its query, which may hold a token; never the
secret). Notifications still queued at stop are dropped (the event log has them all).
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from .. import __version__
from ..config.model import NotifyConfig
from ..core import events
from ..core.errors import PermanentError, TransientError, UploadCancelled
from ..core.retry import RetryPolicy, call_with_retry

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def signature(secret: str, body: bytes) -> str:
    """The X-Vidupd-Signature-256 value: what a receiver recomputes to trust the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Webhook:
    """One receiver: its queue, its thread, its session."""

    def __init__(self, config: NotifyConfig, retry: RetryPolicy | None = None):
        self.config = config
        self.dropped = 0  # notifications the full queue refused since the last report
        self._wanted = frozenset(config.events)
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=config.queue)
        self._retry = retry or RetryPolicy(attempts=config.attempts, initial=1.0, maximum=60.0)
        self._stop = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="vidupd-notify", daemon=True)

    def start(self) -> "Webhook":
        self._thread.start()
        return self

    def offer(self, line: dict[str, Any]) -> None:
        """From the event pipeline: queue the line if this webhook wants it; never blocks."""
        action = str(line.get("event.action", ""))
        if action not in self._wanted:
            return
        body = events.as_json(line).encode("utf-8")
        try:
            self._queue.put_nowait((action, str(line.get("event.id", "")), body))
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._session.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.dropped:
                n, self.dropped = self.dropped, 0
                self._failed("(queue full)", f"{n} notification(s) dropped: the queue of {self.config.queue} "
                             "was full", dropped=n)
            try:
                action, delivery, body = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                call_with_retry(lambda: self._post(action, delivery, body), self._retry, self._stop)
            except UploadCancelled:
                return
            except (TransientError, PermanentError) as e:
                self._failed(action, str(e), delivery=delivery)
            except Exception as e:  # a bug here must not end the thread: the next ones still go
                self._failed(action, f"{type(e).__name__}: {e}", delivery=delivery)

    def _post(self, action: str, delivery: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": f"vidupd/{__version__}",
                   "X-Vidupd-Event": action, "X-Vidupd-Delivery": delivery}
        if self.config.secret is not None:
            headers["X-Vidupd-Signature-256"] = signature(self.config.secret.reveal(), body)
        try:
            r = self._session.post(self.config.url, data=body, headers=headers, timeout=self.config.timeout,
                                   allow_redirects=False)
        except requests.RequestException as e:
            raise TransientError(f"{type(e).__name__}") from None  # the text may quote the URL's query
        r.close()
        if 200 <= r.status_code < 300:
            return
        if r.status_code in RETRYABLE:
            raise TransientError(f"HTTP {r.status_code}")
        raise PermanentError(f"HTTP {r.status_code}")

    def _failed(self, action: str, why: str, **fields: Any) -> None:
        events.emit("notify.failed", f"webhook {_shown(self.config.url)}: {action} not delivered: {why}",
                    level="warning", outcome="failure", url=_shown(self.config.url), notified_action=action,
                    reason=why, **fields)


class Webhooks:
    """Every configured webhook, fed by the event pipeline (events.observe_lines)."""

    def __init__(self, configs: tuple[NotifyConfig, ...], make: Callable[[NotifyConfig], Webhook] = Webhook):
        self.hooks = [make(c) for c in configs]
        self._undo: Callable[[], None] | None = None

    def start(self) -> "Webhooks":
        for h in self.hooks:
            h.start()
        if self.hooks:
            self._undo = events.observe_lines(self._offer)
        return self

    def _offer(self, line: dict[str, Any]) -> None:
        for h in self.hooks:
            h.offer(line)

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
        for h in self.hooks:
            h.stop()

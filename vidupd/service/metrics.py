"""Prometheus metrics and the health endpoint of the daemon (`[metrics] listen`, off by default).

The counters are driven by the events themselves (vidupd.core.events.observe), whatever the
log level: `vidupd_uploads_total{outcome="completed"}` is the number of `upload.completed`
events, so a dashboard and the event log never disagree. Gauges that describe the present
(jobs by state, uploads in progress, free space) are read when Prometheus scrapes.

    GET /metrics   Prometheus text format
    GET /healthz   200 "ok" while the daemon is healthy (the same test that feeds the systemd
                   watchdog, plus: the ledger takes a write); else 503 with the reasons as JSON

Served by a small threaded WSGI server on a daemon thread; every request has a timeout, and
a slow scraper never holds up uploads (the counters are lock-free for the emitters beyond
prometheus-client's own per-metric locks).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import __version__
from ..config.model import parse_listen
from ..core import events
from ..ledger import STATES

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
HEALTH_CACHE = 2.0  # seconds a health verdict is reused (a scrape storm costs one ledger write)
REQUEST_TIMEOUT = 10.0


class Metrics:
    """The metric families, fed by events (`observe`) and read at scrape time (`collect`)."""

    def __init__(self, present: Callable[[], dict[str, Any]], targets: Iterable[str] = ()):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.uploads = Counter("vidupd_uploads", "Uploads that ended, by target and outcome "
                               "(completed, failed, skipped, attention)", ["target", "outcome"], registry=r)
        self.bytes = Counter("vidupd_upload_bytes", "Bytes of completed uploads, by target", ["target"], registry=r)
        self.retries = Counter("vidupd_retries", "Retries (upload.retrying events), by target and reason: the "
                               "error's type for a whole attempt tried again later, the protocol step (UploadPart, "
                               "CreateUploadVideo, ...) for one request tried again within an attempt",
                               ["target", "reason"], registry=r)
        self.errors = Counter("vidupd_errors", "Error-level events, by kind (event action)", ["kind"], registry=r)
        self.duration = Histogram("vidupd_upload_duration_seconds", "Time a completed upload took (one attempt)",
                                  ["target"], buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge("vidupd_last_success_timestamp_seconds", "When an upload last completed "
                                  "(Unix time), by target", ["target"], registry=r)
        self.token_failures = Counter("vidupd_token_refresh_failures", "Uploads held up by refused or "
                                      "expired platform credentials, by target", ["target"], registry=r)
        self.watch_errors = Counter("vidupd_watch_errors", "Watched folders that could not be watched, and "
                                    "files refused by the intake", ["kind"], registry=r)
        self.media = Counter("vidupd_media", "Platform processing that ended (ready, failed), by target",
                             ["target", "outcome"], registry=r)
        ProcessCollector(registry=r)  # process_* (CPU, RSS, open files, start time), as any exporter
        info = Gauge("vidupd_build_info", "vidupd's version (always 1)", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        self._present = present
        r.register(_Present(present))
        for target in targets:  # every series exists from the start at 0, so rate() and alerts see the first one
            for outcome in ("completed", "failed", "skipped", "attention", "cancelled"):
                self.uploads.labels(target, outcome)
            for reason in ("TransientError", "CredentialsExpired"):
                self.retries.labels(target, reason)
            for outcome in ("ready", "failed"):
                self.media.labels(target, outcome)
            self.bytes.labels(target)
            self.token_failures.labels(target)
        for kind in ("watch", "file"):
            self.watch_errors.labels(kind)

    def observe(self, action: str, level: str, fields: dict[str, Any]) -> None:
        """One event (events.observe hook): quick, never raises into the emitter."""
        target = str(fields.get("target", ""))
        if action == "upload.completed":
            self.uploads.labels(target, "completed").inc()
            size = fields.get("size")
            if isinstance(size, int):
                self.bytes.labels(target).inc(size)
            took = fields.get("duration_seconds")
            if isinstance(took, (int, float)):
                self.duration.labels(target).observe(took)
            self.last_success.labels(target).set(time.time())
        elif action == "upload.failed":
            self.uploads.labels(target, "failed").inc()
        elif action == "upload.skipped":
            self.uploads.labels(target, "skipped").inc()
        elif action == "upload.duplicate_remote_id":
            self.uploads.labels(target, "attention").inc()
        elif action == "upload.cancelled":  # by the daemon's pool (a job it held); the command's own are not seen
            self.uploads.labels(target, "cancelled").inc()
        elif action == "upload.retrying":
            self.retries.labels(target, str(fields.get("error_type") or fields.get("step") or "unknown")).inc()
        elif action in ("media.ready", "media.failed"):
            self.media.labels(target, action.split(".")[1]).inc()
        elif action == "watch.failed":
            self.watch_errors.labels("watch").inc()
        elif action == "file.rejected":
            self.watch_errors.labels("file").inc()
        kind = fields.get("error_type")
        if action.startswith(("upload.", "media.")) and kind == "CredentialsExpired":
            self.token_failures.labels(target).inc()
        if level in ("error", "critical"):
            self.errors.labels(action).inc()


class _Present:
    """Gauges of the present, read at scrape time from the running daemon."""

    def __init__(self, present: Callable[[], dict[str, Any]]):
        self._present = present

    def describe(self) -> Iterable[Any]:
        return []  # unchecked collector: its families are known only when collected

    def collect(self) -> Iterable[Any]:
        now = self._present()
        jobs = GaugeMetricFamily("vidupd_jobs", "Jobs in the ledger, by state", labels=["state"])
        for state in STATES:
            jobs.add_metric([state], now["counts"].get(state, 0))
        yield jobs
        yield GaugeMetricFamily("vidupd_uploads_in_progress", "Uploads being sent right now",
                                value=now["in_progress"])
        yield GaugeMetricFamily("vidupd_queue_depth", "Jobs waiting to be sent (queued, retries included)",
                                value=now["counts"].get("queued", 0))
        yield CounterMetricFamily("vidupd_event_log_lines_lost", "Event lines dropped for good: a full or broken "
                                  "log disk held back more than its backlog keeps (lines written late not counted)", value=events.lines_lost())
        yield GaugeMetricFamily("vidupd_healthy", "1 while /healthz answers 200", value=1 if now["healthy"] else 0)
        if now.get("free_bytes") is not None:
            yield GaugeMetricFamily("vidupd_state_dir_free_bytes", "Free space under state_dir, for the "
                                    "vidupd user", value=now["free_bytes"])


class _Quiet(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class MetricsServer:
    """/metrics and /healthz on `listen`, on a daemon thread."""

    def __init__(self, listen: str, metrics: Metrics, health: Callable[[], list[str]]):
        self.metrics = metrics
        self._health = health
        self._verdict: tuple[float, list[str]] = (0.0, [])
        self._lock = threading.Lock()
        self._prom = make_wsgi_app(metrics.registry)
        host, port = parse_listen(listen)
        self._server = make_server(host, port, self._app, server_class=_Server, handler_class=_Quiet)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="vidupd-metrics", daemon=True)
        self._undo: Callable[[], Any] | None = None

    def start(self) -> "MetricsServer":
        self._undo = events.observe(self.metrics.observe)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
        self._server.shutdown()
        self._server.server_close()

    def problems(self) -> list[str]:
        """Why the daemon is unhealthy (empty: healthy), at most HEALTH_CACHE seconds old."""
        with self._lock:
            at, found = self._verdict
            if time.monotonic() - at >= HEALTH_CACHE:
                try:
                    found = self._health()
                except Exception as e:  # a check that breaks is a finding, not a crash
                    found = [f"health check failed: {type(e).__name__}: {e}"]
                self._verdict = (time.monotonic(), found)
            return found

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/health"):
            problems = self.problems()
            body = (json.dumps({"healthy": False, "problems": problems}) + "\n").encode() if problems else b"ok\n"
            start_response("503 Service Unavailable" if problems else "200 OK",
                           [("Content-Type", "application/json" if problems else "text/plain"),
                            ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
            return [body]
        if path in ("/metrics", "/"):
            return self._prom(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]


def free_bytes(path: os.PathLike[str] | str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def serve(listen: str, ledger: Any, in_progress: Callable[[], int], liveness: Callable[[], str | None],
          state_dir: os.PathLike[str] | str, targets: Iterable[str] = ()) -> MetricsServer | None:
    """The daemon's endpoint; None (with a `metrics.failed` error event) if `listen` cannot
    be bound: uploads go on without metrics, and Prometheus' `up == 0` says so."""
    holder: list[MetricsServer] = []

    def health() -> list[str]:
        problems = [p for p in (liveness(),) if p]
        try:
            ledger.check_writable()
        except Exception as e:
            problems.append(str(e))
        return problems

    def present() -> dict[str, Any]:
        return {"counts": ledger.counts(), "in_progress": in_progress(), "free_bytes": free_bytes(state_dir),
                "healthy": not (holder[0].problems() if holder else ["starting"])}

    try:
        server = MetricsServer(listen, Metrics(present, targets), health)
    except OSError as e:
        events.emit("metrics.failed", f"metrics: cannot listen on {listen} ({e.strerror or e}); running without "
                    "/metrics and /healthz", level="error", outcome="failure", listen=listen, error=str(e),
                    error_type=type(e).__name__)
        return None
    holder.append(server)
    server.start()
    events.emit("metrics.listening", f"metrics on http://{listen}/metrics, health on /healthz", listen=listen,
                port=server.port)
    return server

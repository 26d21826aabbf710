"""The background worker behind UploadMediaByURL: fetch each URL, store it in OSS.

Only loopback sources (127.0.0.0/8 or `localhost`) are fetched, straight with
http.client (no proxy, no redirects): the sandbox must never reach the network.
"""

from __future__ import annotations

import http.client
import ipaddress
import queue
import threading
import time
from typing import Callable
from urllib.parse import quote, urlsplit

from .oss import OssSandbox
from .vod_state import UrlJob, VodState

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_FETCH_TIMEOUT = 30.0


class PullFailed(Exception):
    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def loopback_address(url: str) -> tuple[str, int, str]:
    """(ip, port, path?query) of an http URL on loopback; PullFailed otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise PullFailed("DOWNLOAD_FAIL", "InvalidURL.Scheme", f"the sandbox only pulls http:// URLs, not {url!r}")
    host = parts.hostname or ""
    try:
        ip = "127.0.0.1" if host == "localhost" else str(ipaddress.ip_address(host))
        allowed = ipaddress.ip_address(ip) in _LOOPBACK
        port = parts.port or 80
    except ValueError:
        allowed = False
    if not allowed:
        raise PullFailed("DOWNLOAD_FAIL", "InvalidURL.NotLoopback",
                         f"the sandbox only pulls from 127.0.0.0/8 or localhost, not {host!r}")
    # The client percent-encoded the URL for the API and we decoded it: encode what a URL may not hold.
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=~?")
    return ip, port, target


class UrlPuller:
    """One thread working through URL jobs in submission order; survives restarts via VodState."""

    def __init__(self, state: VodState, oss: OssSandbox, prepare: Callable[[UrlJob], str], step_delay: float = 0.0):
        self._state = state
        self._oss = oss
        self._prepare = prepare  # creates the job's media record, returns its object key
        self._step_delay = step_delay
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for job in self._state.unfinished_jobs():  # interrupted by a stop: start them over
            self._state.update_job(job.job_id, status="PENDING")
            self._queue.put(job.job_id)
        self._thread = threading.Thread(target=self._run, name="vod-url-pull", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self._state.job(job_id)
            if job is None:
                continue
            try:
                self._pull(job)
            except PullFailed as e:
                self._state.update_job(job_id, status=e.status, error_code=e.code, error_message=e.message,
                                       completed_at=time.time())
            except Exception as e:  # noqa: BLE001 - any fetch problem is the job's failure, not the worker's
                self._state.update_job(job_id, status="DOWNLOAD_FAIL", error_code="DownloadFailed",
                                       error_message=repr(e), completed_at=time.time())

    def _step(self, job_id: str, status: str) -> None:
        self._state.update_job(job_id, status=status)
        if self._step_delay:
            time.sleep(self._step_delay)

    def _pull(self, job: UrlJob) -> None:
        self._step(job.job_id, "PROCESSING")
        ip, port, target = loopback_address(job.url)
        self._step(job.job_id, "DOWNLOADING")
        conn = http.client.HTTPConnection(ip, port, timeout=_FETCH_TIMEOUT)
        try:
            conn.request("GET", target, headers={"Host": urlsplit(job.url).netloc, "User-Agent": "vidupd-sandbox"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise PullFailed("DOWNLOAD_FAIL", "DownloadFailed", f"HTTP {resp.status} {resp.reason} from source")
            key = self._prepare(job)
            try:
                info = self._oss.put_object_stream(key, resp, resp.getheader("Content-Type") or "video/mp4")
            except (OSError, http.client.HTTPException) as e:
                raise PullFailed("DOWNLOAD_FAIL", "DownloadFailed", f"reading the source failed: {e!r}") from None
        finally:
            conn.close()
        self._step(job.job_id, "DOWNLOAD_SUCCESS")
        self._step(job.job_id, "UPLOADING")
        self._step(job.job_id, "UPLOAD_SUCCESS")
        self._state.update_job(job.job_id, status="SUCCESS", file_size=info.size, completed_at=time.time())

"""UploadMediaByURL without double submissions.

A group of URLs (at most 20) is one UploadMediaByURL call. When an earlier try of the same
group may have reached VOD (a lost answer, a crash before the JobIds were saved), the
group is first looked up with GetURLUploadInfos by URL: jobs created for those URLs since
the first try are adopted instead of submitting the URLs again.
"""

from __future__ import annotations

import calendar
import json
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from aliyunsdkvod.request.v20170321 import GetURLUploadInfosRequest, UploadMediaByURLRequest

from ...core.errors import TransientError
from ...core.retry import RetryPolicy, call_with_retry
from .media import INFO_GROUP, PULL_GROUP, chunks, decode_url, encode_url
from .rpc import VodRpc

CLOCK_SLACK = 120.0  # seconds of clock difference tolerated when adopting earlier jobs


def _epoch(text: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


class PullSubmitter:
    """Submits URL groups with the caller's retry policy, cancel event and note hook."""

    def __init__(self, rpc: VodRpc, retry: RetryPolicy, cancel: threading.Event, note: Callable[..., None],
                 extra: Mapping[str, Any]):
        self._rpc = rpc
        self._retry = retry
        self._cancel = cancel
        self._note = note
        self._extra = {k: v for k, v in extra.items() if v}  # TemplateGroupId, StorageLocation, ...

    @staticmethod
    def groups(urls: Sequence[str]) -> Iterator[list[str]]:
        return chunks(urls, PULL_GROUP)

    def submit(self, urls: list[str], titles: Sequence[str], since: float, look_first: bool) -> list[tuple[str, str]]:
        """(url, JobId) for each URL of one group, in order."""
        tries = 0

        def attempt() -> list[tuple[str, str]]:
            nonlocal tries
            tries += 1
            if look_first or tries > 1:
                found = self._find(urls, since)
                if found is not None:
                    self._note("upload.resumed", f"{len(found)} URL(s) were already submitted; keeping their jobs",
                               job_ids=",".join(j for _, j in found))
                    return found
            return self._submit(urls, titles)

        def on_retry(attempt_no: int, error: BaseException, wait_s: float) -> None:
            self._note("upload.retrying", "VOD UploadMediaByURL failed; retrying", step="UploadMediaByURL",
                       attempt=attempt_no, wait_seconds=round(wait_s, 3), error=str(error))

        return call_with_retry(attempt, self._retry, self._cancel, on_retry=on_retry)

    def _submit(self, urls: list[str], titles: Sequence[str]) -> list[tuple[str, str]]:
        encoded = [encode_url(u) for u in urls]
        metas = [{"SourceURL": e, "Title": t} for e, t in zip(encoded, titles)]
        answer = self._rpc.call(UploadMediaByURLRequest.UploadMediaByURLRequest, UploadURLs=",".join(encoded),
                                UploadMetadatas=json.dumps(metas, ensure_ascii=False), **self._extra)
        jobs = [j for j in answer.get("UploadJobs") or () if j.get("JobId")]
        by_url = {decode_url(str(j.get("SourceURL") or "")): str(j["JobId"]) for j in jobs}
        if all(u in by_url for u in urls):
            return [(u, by_url[u]) for u in urls]
        if len(jobs) == len(urls):  # SourceURL spelled differently: VOD answers in request order
            return [(u, str(j["JobId"])) for u, j in zip(urls, jobs)]
        raise TransientError(f"VOD UploadMediaByURL returned {len(jobs)} job(s) for {len(urls)} URL(s)")

    def _find(self, urls: list[str], since: float) -> list[tuple[str, str]] | None:
        """The newest job per URL created since `since`, if every URL has one."""
        newest: dict[str, tuple[float, str]] = {}
        for group in chunks(urls, INFO_GROUP):
            answer = self._rpc.call(GetURLUploadInfosRequest.GetURLUploadInfosRequest,
                                    UploadURLs=",".join(encode_url(u) for u in group))
            for info in answer.get("URLUploadInfoList") or ():
                url, created = decode_url(str(info.get("UploadURL") or "")), _epoch(str(info.get("CreationTime")))
                if created is None or created < since - CLOCK_SLACK or not info.get("JobId"):
                    continue
                if url not in newest or created >= newest[url][0]:
                    newest[url] = (created, str(info["JobId"]))
        if all(u in newest for u in urls):
            return [(u, newest[u][1]) for u in urls]
        return None

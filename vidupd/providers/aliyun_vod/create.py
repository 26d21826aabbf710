"""The Create* calls of an upload, and CreateUploadVideo made idempotent with a ReferenceId.

A CreateUploadVideo whose answer is lost (a timeout, a dropped connection, a 5xx after the
request went out) may still have made a video; creating again would make a second one. So
every video slot gets a ReferenceId (VOD's caller-chosen id, unique per account, 6-64 of
`A-Z a-z 0-9 - _`) that is saved in the checkpoint BEFORE the first Create is sent, and any
Create that follows an unclear failure, in this process or after a restart, first asks
GetVideoInfo for that ReferenceId: a video found is continued with RefreshUploadVideo
instead of creating another. A Create refused because the ReferenceId is taken (the lost
answer was a success after all) is resolved the same way.

Why `vidupd-{job id}-{slot}-{96 random bits}`: job ids are unique only within one ledger,
and two hosts (or a ledger started afresh) uploading to one account would reuse them: with
the job id alone a second job would be refused, or would adopt the other job's video. The
random part, drawn once per slot and kept in the checkpoint, makes two jobs never collide,
while every retry of the same job's Create reads the same value back. The job id and slot
are there for people reading the VOD console. A slot dropped on purpose (the content
changed, the video was deleted on VOD) draws a new ReferenceId: that is a new video by intent.

Images and attached media have no ReferenceId in the API (CreateUploadImage and
CreateUploadAttachedMedia do not take one); their Create is retried as before.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Callable, Mapping

from aliyunsdkvod.request.v20170321 import (CreateUploadAttachedMediaRequest, CreateUploadImageRequest,
                                            CreateUploadVideoRequest, GetVideoInfoRequest, RefreshUploadVideoRequest)

from ...core.fsnames import safe_text
from ...core.retry import RetryPolicy, call_with_retry
from ..base import UploadRequest
from .checkpoint import UploadState
from .media import (DESCRIPTION_MAX, TITLE_MAX, VodSettings, cate_id, clean_tags, clean_text, extension,
                    sidecar_overrides)
from .rpc import UploadTicket, VodPermanentError, VodRpc, decode_ticket

Note = Callable[..., None]


def new_reference_id(job_id: int, slot: str) -> str:
    """A fresh ReferenceId for one job's media slot (at most 64 characters, VOD's charset)."""
    return f"vidupd-{int(job_id)}-{slot}-{secrets.token_hex(12)}"[:64]


def title_of(request: UploadRequest) -> str:
    return (clean_text(request.metadata.title, TITLE_MAX) or clean_text(request.path.stem, TITLE_MAX)
            or "untitled")


def param(request: UploadRequest, name: str, configured: str | None) -> str | None:
    """A VOD parameter: the sidecar's override, else the target's option."""
    return sidecar_overrides(request.metadata.extra).get(name) or configured


class Creator:
    """Makes the media object of an upload (the Create* call for its kind) with the job's
    retry policy, cancel event and note hook."""

    def __init__(self, rpc: VodRpc, cfg: VodSettings, retry: RetryPolicy, cancel: threading.Event, note: Note):
        self._rpc = rpc
        self._cfg = cfg
        self._retry = retry
        self._cancel = cancel
        self._note = note

    def media(self, request: UploadRequest, job: UploadState, cover: Mapping[str, Any] | None) -> UploadTicket:
        """The Create* call for the request's kind, parameters from metadata and options."""
        cfg, meta = self._cfg, request.metadata
        common = dict(Title=title_of(request), Description=clean_text(meta.description, DESCRIPTION_MAX),
                      Tags=clean_tags(meta.tags) or clean_tags(cfg.tags),
                      StorageLocation=param(request, "StorageLocation", cfg.storage_location),
                      AppId=param(request, "AppId", cfg.app_id),
                      UserData=param(request, "UserData", cfg.user_data))
        category = sidecar_overrides(meta.extra).get("CateId") or cate_id(meta, cfg.cate_id)
        ext = extension(request.path.name)
        if request.kind == "image":
            return self.ticket(CreateUploadImageRequest.CreateUploadImageRequest, "ImageId",
                               dict(common, ImageType=cfg.image_type, ImageExt=ext,
                                    OriginalFileName=safe_text(request.path.name), CateId=category))
        if request.kind == "attached":
            return self.ticket(CreateUploadAttachedMediaRequest.CreateUploadAttachedMediaRequest, "MediaId",
                               dict(common, BusinessType=cfg.attached_business_type, MediaExt=ext,
                                    FileName=safe_text(request.path.name), FileSize=str(request.size),
                                    CateIds=category))
        params = dict(common, FileName=safe_text(request.path.name), FileSize=str(request.size), CateId=category,
                      TemplateGroupId=param(request, "TemplateGroupId", cfg.template_group_id),
                      WorkflowId=param(request, "WorkflowId", cfg.workflow_id),
                      CoverURL=cover["urls"]["ImageURL"] if cover else None)
        return self.video(request, job, "media", params)

    def ticket(self, request_class: type, id_field: str, params: Mapping[str, Any]) -> UploadTicket:
        """One Create* call (retried on transient errors) and its decoded answer."""
        action = request_class.__name__.removesuffix("Request")
        answer = call_with_retry(lambda: self._rpc.call(request_class, **params), self._retry, self._cancel,
                                 on_retry=self._on_retry(action))
        return decode_ticket(answer, id_field, force_https=self._rpc.https)

    def video(self, request: UploadRequest, job: UploadState, slot: str, params: Mapping[str, Any]) -> UploadTicket:
        """CreateUploadVideo with the slot's ReferenceId, saved before the first try; a try
        after an unclear failure (or after a restart that found the ReferenceId saved but no
        VideoId) looks the video up first and continues it if it exists."""
        saved = job.slot(slot)
        reference = str(saved.get("reference_id") or "")
        look_first = bool(reference)  # an earlier process may have sent this Create
        if not reference:
            reference = new_reference_id(request.job_id, slot)
            job.set(**{slot: {"reference_id": reference}})  # before the Create goes out
        tries = 0

        def attempt() -> UploadTicket:
            nonlocal tries
            tries += 1
            if look_first or tries > 1:
                found = self._adopt(reference)
                if found is not None:
                    return found
            try:
                answer = self._rpc.call(CreateUploadVideoRequest.CreateUploadVideoRequest, ReferenceId=reference,
                                        **params)
            except VodPermanentError as e:
                if "referenceid" not in f"{e.code} {e}".lower():
                    raise
                found = self._adopt(reference)  # taken: by our own earlier Create, whose answer was lost
                if found is None:
                    raise
                return found
            return decode_ticket(answer, "VideoId", force_https=self._rpc.https)

        return call_with_retry(attempt, self._retry, self._cancel, on_retry=self._on_retry("CreateUploadVideo"))

    def _adopt(self, reference: str) -> UploadTicket | None:
        """The video an earlier CreateUploadVideo made with `reference`, refreshed; None if none."""
        try:
            info = self._rpc.call(GetVideoInfoRequest.GetVideoInfoRequest, ReferenceId=reference)
        except VodPermanentError as e:
            if e.code == "InvalidVideo.NotFound":
                return None
            raise
        video_id = str((info.get("Video") or {}).get("VideoId") or "")
        if not video_id:
            return None
        answer = self._rpc.call(RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=video_id)
        self._note("upload.resumed", f"video {video_id} from an earlier CreateUploadVideo (its answer was lost) "
                   "exists; continuing it instead of creating another", video_id=video_id, reference_id=reference,
                   reason="create answer lost")
        return decode_ticket(answer, "VideoId", force_https=self._rpc.https)

    def _on_retry(self, action: str) -> Callable[[int, BaseException, float], None]:
        def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
            self._note("upload.retrying", f"VOD {action} failed; retrying", step=action, attempt=attempt,
                       wait_seconds=round(wait_s, 3), error=str(error))
        return on_retry

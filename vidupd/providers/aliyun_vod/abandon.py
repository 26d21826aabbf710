"""Giving a VOD upload up for good (`vidupd cancel`, a vanished file): its OSS multipart
upload is aborted, so OSS frees the parts now instead of keeping them until a lifecycle rule
(if any) removes them. The credentials come from one RefreshUploadVideo: they are never
saved in the checkpoint. The video itself stays in VOD's "Uploading" list (VOD has no
cancel for it; deleting media is the operator's decision)."""

from __future__ import annotations

from typing import Any, Mapping

import oss2
from aliyunsdkvod.request.v20170321 import RefreshUploadVideoRequest

from ..oss.abort import abort_multipart
from ..oss.credentials import StsKeeper
from .media import VodSettings
from .rpc import VodRpc, decode_ticket


def abandon_video(rpc: VodRpc, config: VodSettings, session: oss2.Session, timeout: tuple[float, float],
                  checkpoint: Mapping[str, Any]) -> str | None:
    """One try of each call; None when there is nothing to abort (no multipart upload, or
    the object is complete). An image's or attachment's credentials cannot be refreshed:
    its parts are left to OSS (they are small, usually one PutObject)."""
    slot = checkpoint.get("media") or {}
    upload_id = str((slot.get("oss") or {}).get("upload_id") or "")
    if not upload_id or slot.get("uploaded") or slot.get("kind") != "video":
        return None
    answer = rpc.call(RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=str(slot["id"]))
    ticket = decode_ticket(answer, "VideoId", force_https=rpc.https, region=config.region)
    keeper = StsKeeper(ticket.credentials, None, session, timeout, lambda *a, **k: None,
                       signature=config.oss_signature)
    return ("aborted its OSS multipart upload" if abort_multipart(keeper, upload_id)
            else "its OSS multipart upload was already gone")

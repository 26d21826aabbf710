"""Giving a VOD upload up for good (`vidupd cancel`, a vanished file): its OSS multipart
upload is aborted, so OSS frees the parts now instead of keeping them until a lifecycle rule
(if any) removes them, and the video vidupd created for it is deleted (DeleteVideo), so no
empty video is left in VOD's "Uploading" list. The credentials come from one
RefreshUploadVideo: they are never saved in the checkpoint. A video whose Create answer was
never recorded is found by the slot's ReferenceId (see create.py), so it is deleted too."""

from __future__ import annotations

from typing import Any, Mapping

import oss2
from aliyunsdkvod.request.v20170321 import DeleteVideoRequest, GetVideoInfoRequest, RefreshUploadVideoRequest

from ..oss.abort import abort_multipart
from ..oss.credentials import StsKeeper
from .media import VodSettings
from .rpc import VodPermanentError, VodRpc, decode_ticket


def abandon_video(rpc: VodRpc, config: VodSettings, session: oss2.Session, timeout: tuple[float, float],
                  checkpoint: Mapping[str, Any]) -> str | None:
    """One try of each call; None when there is nothing to give up (no video made, or its
    object is complete: a complete video is the platform's, not an orphan). An image's or
    attachment's credentials cannot be refreshed: its parts are left to OSS (they are small,
    usually one PutObject)."""
    slot = checkpoint.get("media") or {}
    if slot.get("uploaded") or slot.get("kind", "video") != "video":
        return None
    video_id = str(slot.get("id") or "") or _by_reference(rpc, str(slot.get("reference_id") or ""))
    if not video_id:
        return None
    done = []
    upload_id = str((slot.get("oss") or {}).get("upload_id") or "")
    if upload_id:
        answer = rpc.call(RefreshUploadVideoRequest.RefreshUploadVideoRequest, VideoId=video_id)
        ticket = decode_ticket(answer, "VideoId", force_https=rpc.https, region=config.region)
        keeper = StsKeeper(ticket.credentials, None, session, timeout, lambda *a, **k: None,
                           signature=config.oss_signature)
        done.append("aborted its OSS multipart upload" if abort_multipart(keeper, upload_id)
                    else "its OSS multipart upload was already gone")
    gone = rpc.call(DeleteVideoRequest.DeleteVideoRequest, VideoIds=video_id).get("NonExistVideoIds") or []
    done.append(f"video {video_id} was already gone" if video_id in gone else f"deleted video {video_id}")
    return "; ".join(done)


def _by_reference(rpc: VodRpc, reference: str) -> str:
    """The video a Create with this ReferenceId made although its answer was never recorded."""
    if not reference:
        return ""
    try:
        info = rpc.call(GetVideoInfoRequest.GetVideoInfoRequest, ReferenceId=reference)
    except VodPermanentError as e:
        if e.code == "InvalidVideo.NotFound":
            return ""
        raise
    return str((info.get("Video") or {}).get("VideoId") or "")

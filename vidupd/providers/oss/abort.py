"""Aborting a multipart upload that will never be completed, so OSS frees its parts now
rather than when a lifecycle rule (if any) removes them. Used when an upload is given up for
good (its file deleted, its content refused); best effort: one try, no retries."""

from __future__ import annotations

import oss2
import requests

from .credentials import StsKeeper
from .errors import NoSuchUpload, translate_oss


def abort_multipart(keeper: StsKeeper, upload_id: str) -> bool:
    """AbortMultipartUpload of `upload_id` on the keeper's object: True if OSS aborted it,
    False if it no longer had it; any other failure raised as vidupd's own error."""
    creds, bucket = keeper.bucket()
    try:
        bucket.abort_multipart_upload(creds.key, upload_id)
    except (oss2.exceptions.OssError, requests.RequestException, OSError) as e:
        error = translate_oss(e, "AbortMultipartUpload")
        if isinstance(error, NoSuchUpload):
            return False
        raise error from None
    return True
